//! One client's connection, asynchronous: thousands of them share the few
//! threads of a tokio runtime, so loadgen's own threads do not compete with the
//! servers for the cores at 1000x1000.
//!
//! The same rules as the blocking [`client::Client`], from the same code
//! ([`client::rules`]): a state-changing request carries a fresh idempotency
//! key, the same on each resend; a lost connection is reconnected (to the
//! next server of the list) and the request resent with [`client::Retry`]'s
//! backoff, as is one the server answered `UNAVAILABLE` or `OVERLOADED`;
//! without keys, a write is sent once.

use bytes::BytesMut;
use client::frames::{Frames, READ_CHUNK};
use client::rules::{jitter_seed, refused_or};
use client::tls::Tls;
use client::{Attempts, Call, ClientConfig, ClientError};
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wire::Operation;

/// A plain or TLS stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to one server of a list, reconnected on demand (to the
/// next of the list when a connection fails).
pub struct Conn {
    addrs: Arc<[SocketAddr]>,
    /// The one in use.
    at: usize,
    config: ClientConfig,
    /// Speak TLS (to a TLS port of the proxy).
    tls: Option<Tls>,
    stream: Option<Box<dyn Io>>,
    frames: Frames,
    jitter: u64,
}

fn timed_out(what: &str) -> ClientError {
    ClientError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

impl Conn {
    /// A connection to `addrs[start % len]` first (clients started
    /// together spread over the list).
    pub fn new(addrs: Arc<[SocketAddr]>, start: usize, config: ClientConfig) -> Conn {
        let at = start % addrs.len().max(1);
        let jitter = jitter_seed(addrs.get(at).map_or(0, |a| u64::from(a.port())) ^ start as u64);
        Conn {
            addrs,
            at,
            config,
            tls: None,
            stream: None,
            frames: Frames::new(config.frame_limit),
            jitter,
        }
    }

    /// Speaks TLS on every connection (set before the first).
    pub fn use_tls(&mut self, tls: Tls) {
        self.tls = Some(tls);
        self.stream = None;
    }

    /// Connects now, with the retries of the policy.
    ///
    /// # Errors
    /// [`ClientError::GaveUp`] when every attempt failed.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        let mut attempts = Attempts::new(self.config.retry);
        loop {
            match self.ensure_connected().await {
                Ok(()) => return Ok(()),
                Err(e) => self.after_failure(&mut attempts, e).await?,
            }
        }
    }

    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.stream.is_none() {
            let addr = self.addrs[self.at];
            let stream = timeout(self.config.connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out("connecting"))??;
            stream.set_nodelay(true)?;
            let stream: Box<dyn Io> = match &self.tls {
                Some(tls) => {
                    let connector = tokio_rustls::TlsConnector::from(tls.config());
                    Box::new(
                        timeout(
                            self.config.connect_timeout,
                            connector.connect(tls.server_name(), stream),
                        )
                        .await
                        .map_err(|_| timed_out("the TLS handshake"))??,
                    )
                }
                None => Box::new(stream),
            };
            self.frames.reconnected();
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// After a failed attempt: drops the connection (and moves to the next
    /// server) unless the server answered "retry", and waits before the
    /// next attempt when the rules allow one.
    async fn after_failure(
        &mut self,
        attempts: &mut Attempts,
        e: ClientError,
    ) -> Result<(), ClientError> {
        if e.is_connection_lost() {
            self.at = (self.at + 1) % self.addrs.len();
        }
        if !matches!(e, ClientError::Refused(_)) {
            self.stream = None;
        }
        let retry = attempts.after_failure(e, &mut self.jitter)?;
        tokio::time::sleep(retry.delay).await;
        Ok(())
    }

    /// One attempt: sends the outgoing frame and reads one reply frame.
    async fn exchange(&mut self) -> Result<BytesMut, ClientError> {
        self.ensure_connected().await?;
        let Some(stream) = &mut self.stream else {
            return Err(ClientError::Io(io::ErrorKind::NotConnected.into()));
        };
        let io_timeout = self.config.io_timeout;
        timeout(io_timeout, stream.write_all(&self.frames.outgoing))
            .await
            .map_err(|_| timed_out("sending"))??;
        loop {
            if let Some(body) = self.frames.next_reply()? {
                return Ok(body);
            }
            self.frames.incoming.reserve(READ_CHUNK);
            let n = timeout(io_timeout, stream.read_buf(&mut self.frames.incoming))
                .await
                .map_err(|_| timed_out("waiting for the reply"))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends `request` and returns the raw reply body, reconnecting and
    /// resending (with the same idempotency key) when the connection is lost,
    /// as [`client::rules`] says.
    ///
    /// # Errors
    /// [`ClientError::GaveUp`] when no attempt got a reply; other errors at once.
    pub async fn call_raw<R: Operation + Serialize>(
        &mut self,
        request: &R,
    ) -> Result<BytesMut, ClientError> {
        let Call { key, mut attempts } = Call::new(request, &self.config);
        self.frames.encode(request, None, key.as_deref());
        loop {
            match self
                .exchange()
                .await
                .and_then(|reply| refused_or(&self.config, reply))
            {
                Ok(body) => return Ok(body),
                Err(e) => {
                    if let Err(e) = self.after_failure(&mut attempts, e).await {
                        return e.into_reply();
                    }
                }
            }
        }
    }
}
