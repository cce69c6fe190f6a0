//! One client's connection, asynchronous: thousands of them share the few
//! threads of a tokio runtime, so loadgen's own threads do not compete with the
//! servers for the cores at 1000x1000.
//!
//! The same contract as the blocking [`net::Client::call_raw`]: a
//! state-changing request carries a fresh idempotency key, the same on each
//! resend; a lost connection is reconnected and the request resent with
//! [`net::Retry`]'s backoff; without keys, a write is sent once.

use bytes::BytesMut;
use net::tls::Tls;
use net::{ClientConfig, ClientError};
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wire::frame::{self, FrameDecoder};
use wire::request::Envelope;
use wire::Operation;

/// A plain or TLS stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to one server, reconnected on demand.
pub struct Conn {
    addr: SocketAddr,
    config: ClientConfig,
    /// Speak TLS (to a TLS port of the proxy).
    tls: Option<Tls>,
    stream: Option<Box<dyn Io>>,
    decoder: FrameDecoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    jitter: u64,
}

fn timed_out(what: &str) -> ClientError {
    ClientError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

impl Conn {
    pub fn new(addr: SocketAddr, config: ClientConfig) -> Conn {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
        Conn {
            addr,
            config,
            tls: None,
            stream: None,
            decoder: FrameDecoder::new(config.frame_limit),
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(512),
            jitter: (seed ^ u64::from(addr.port())) | 1,
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
        let mut n = 0;
        loop {
            match self.ensure_connected().await {
                Ok(()) => return Ok(()),
                Err(e) => n = self.after_failure(e, n).await?,
            }
        }
    }

    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.stream.is_none() {
            let stream = timeout(self.config.connect_timeout, TcpStream::connect(self.addr))
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
            self.read_buf.clear();
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// After failed attempt `n` (from 0): waits and returns `n + 1` when the
    /// error is a lost connection and the policy allows another attempt.
    async fn after_failure(&mut self, e: ClientError, n: u32) -> Result<u32, ClientError> {
        self.stream = None;
        let retries = self.config.retry.attempts.saturating_sub(1);
        if !e.is_connection_lost() {
            return Err(e);
        }
        if n >= retries {
            return Err(ClientError::GaveUp {
                attempts: n + 1,
                last: Box::new(e),
            });
        }
        tokio::time::sleep(self.config.retry.delay(n + 1, &mut self.jitter)).await;
        Ok(n + 1)
    }

    /// One attempt: sends the frame in `write_buf` and reads one reply frame.
    async fn exchange(&mut self) -> Result<BytesMut, ClientError> {
        self.ensure_connected().await?;
        let Some(stream) = &mut self.stream else {
            return Err(ClientError::Io(io::ErrorKind::NotConnected.into()));
        };
        let io_timeout = self.config.io_timeout;
        timeout(io_timeout, stream.write_all(&self.write_buf))
            .await
            .map_err(|_| timed_out("sending"))??;
        loop {
            if let Some(body) = self
                .decoder
                .decode(&mut self.read_buf)
                .map_err(ClientError::Frame)?
            {
                return Ok(body);
            }
            self.read_buf.reserve(8192);
            let n = timeout(io_timeout, stream.read_buf(&mut self.read_buf))
                .await
                .map_err(|_| timed_out("waiting for the reply"))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends `request` and returns the raw reply body, reconnecting and
    /// resending (with the same idempotency key) when the connection is lost.
    ///
    /// # Errors
    /// [`ClientError::GaveUp`] when no attempt got a reply; other errors at once.
    pub async fn call_raw<R: Operation + Serialize>(
        &mut self,
        request: &R,
    ) -> Result<BytesMut, ClientError> {
        let keyed = request.changes_state() && self.config.idempotency_keys;
        let key = keyed.then(|| uuid::Uuid::new_v4().to_string());
        self.write_buf.clear();
        frame::encode(
            &mut self.write_buf,
            &Envelope {
                request_id: None,
                idempotency_key: key.as_deref(),
                request,
            },
        );
        let mut n = 0;
        loop {
            match self.exchange().await {
                Ok(body) => return Ok(body),
                // Without a key a resend could apply the write twice: one attempt.
                Err(e) if request.changes_state() && !keyed => {
                    self.stream = None;
                    return Err(e);
                }
                Err(e) => n = self.after_failure(e, n).await?,
            }
        }
    }
}
