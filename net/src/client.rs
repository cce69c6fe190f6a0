//! The blocking client used by the CLIs and the load generator.
//!
//! One TCP connection, frames in and out through reusable buffers, pipelining
//! (`send` several, then `recv` as many), and [`Client::call`] which reconnects with
//! exponential backoff and jitter when the connection is lost, reporting every
//! retry to a callback so a CLI can show it.
//!
//! A resend is safe because every state-changing request that [`Client::call`]
//! sends carries an `idempotency_key`, fresh for each logical request and the
//! same on each resend of it: the server applies it at most once and answers a
//! resend with the first attempt's result (PROTOCOL.md, "Retries"). Which
//! operations change state comes from the operation list itself
//! ([`wire::Operation::changes_state`]), so no caller can forget the key.

use crate::tls::Tls;
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wire::frame::{self, FrameDecoder, FrameError};
use wire::request::Envelope;
use wire::{Op, Operation, RequestId, Response};

/// Reconnect policy: `attempts` tries in all, waiting `base * 2^n` (at most `max`),
/// each wait jittered to between half and all of it.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// Longest wait for a reply (or for a write to go out).
    pub io_timeout: Duration,
    pub frame_limit: usize,
    pub retry: Retry,
    /// Attach an idempotency key to every state-changing request (the default).
    /// Off only to measure what keys cost; a client without keys must not
    /// resend writes.
    pub idempotency_keys: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(30),
            frame_limit: wire::DEFAULT_FRAME_LIMIT,
            retry: Retry::default(),
            idempotency_keys: true,
        }
    }
}

/// One retry about to happen, as reported to the callback.
#[derive(Debug)]
pub struct RetryEvent<'a> {
    /// The retry's number, from 1.
    pub attempt: u32,
    /// How many retries there will be at most.
    pub of: u32,
    pub delay: Duration,
    pub error: &'a ClientError,
}

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed (including timeouts).
    Io(io::Error),
    /// The server closed the connection before answering.
    Closed,
    /// The server sent a frame header this client refuses.
    Frame(FrameError),
    /// The response frame was not a well-formed response.
    Decode(String),
    /// Every reconnect attempt failed; the last error is kept.
    GaveUp {
        attempts: u32,
        last: Box<ClientError>,
    },
    /// The retry callback asked to stop retrying (e.g. the user pressed Ctrl-C).
    Cancelled,
}

impl ClientError {
    /// Whether reconnecting and resending may help. Not for a TLS failure
    /// (an untrusted certificate, a wrong name: `InvalidData`), which would
    /// fail the same way again.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClientError::Io(e) => e.kind() != io::ErrorKind::InvalidData,
            ClientError::Closed => true,
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::Frame(e) => write!(f, "bad frame from the server: {e}"),
            ClientError::Decode(e) => write!(f, "bad response from the server: {e}"),
            ClientError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            ClientError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// Told about each retry before it waits; returns whether to go on retrying.
type RetryHook = Box<dyn FnMut(&RetryEvent<'_>) -> bool + Send>;

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection to one server.
pub struct Client {
    addr: SocketAddr,
    config: ClientConfig,
    /// TLS settings, when the server (or the proxy before it) speaks TLS.
    tls: Option<Tls>,
    stream: Option<Stream>,
    decoder: FrameDecoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    on_retry: Option<RetryHook>,
    jitter: u64,
}

impl Client {
    /// Resolves `addr` and connects, retrying per the policy.
    ///
    /// # Errors
    /// When the address does not resolve or every attempt fails.
    pub fn connect(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let mut client = Client::lazy(addr, config)?;
        client.with_retries(|c| c.ensure_connected())?;
        Ok(client)
    }

    /// Resolves `addr` without connecting: the first call connects (with the
    /// retries of the policy), so a program can start while the server is down.
    ///
    /// # Errors
    /// When the address does not resolve.
    pub fn lazy(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            ClientError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} resolves to no address"),
            ))
        })?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
        Ok(Client {
            addr,
            config,
            tls: None,
            stream: None,
            decoder: FrameDecoder::new(config.frame_limit),
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(512),
            on_retry: None,
            jitter: seed | 1,
        })
    }

    /// Sets the callback told about every retry; returning `false` stops
    /// retrying, and the call fails with [`ClientError::Cancelled`].
    pub fn on_retry(&mut self, hook: impl FnMut(&RetryEvent<'_>) -> bool + Send + 'static) {
        self.on_retry = Some(Box::new(hook));
    }

    /// Speaks TLS on every connection from now on (set it before the first
    /// call): the server must prove the name `tls` expects.
    pub fn use_tls(&mut self, tls: Tls) {
        self.tls = Some(tls);
        self.disconnect();
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.stream.is_none() {
            let tcp = TcpStream::connect_timeout(&self.addr, self.config.connect_timeout)?;
            tcp.set_nodelay(true)?;
            tcp.set_read_timeout(Some(self.config.io_timeout))?;
            tcp.set_write_timeout(Some(self.config.io_timeout))?;
            let stream = match &self.tls {
                Some(tls) => Stream::Tls(Box::new(tls.connect(tcp)?)),
                None => Stream::Plain(tcp),
            };
            self.read_buf.clear();
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// Drops the connection; the next call reconnects.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.read_buf.clear();
    }

    /// Sends one request without waiting for its reply (pipelining).
    ///
    /// # Errors
    /// When the connection is lost; the client is then disconnected.
    pub fn send<R: Serialize>(
        &mut self,
        request: &R,
        request_id: Option<&RequestId>,
    ) -> Result<(), ClientError> {
        self.send_keyed(request, request_id, None)
    }

    /// Sends one request with an `idempotency_key`, without waiting for its reply.
    ///
    /// # Errors
    /// When the connection is lost; the client is then disconnected.
    pub fn send_keyed<R: Serialize>(
        &mut self,
        request: &R,
        request_id: Option<&RequestId>,
        idempotency_key: Option<&str>,
    ) -> Result<(), ClientError> {
        self.write_buf.clear();
        frame::encode(
            &mut self.write_buf,
            &Envelope {
                request_id,
                idempotency_key,
                request,
            },
        );
        self.flush_frame()
    }

    /// Sends one frame with `body` as it is (no JSON check: for tests and tools).
    ///
    /// # Errors
    /// When the connection is lost; the client is then disconnected.
    pub fn send_raw(&mut self, body: &[u8]) -> Result<(), ClientError> {
        self.write_buf.clear();
        frame::encode_raw(&mut self.write_buf, body);
        self.flush_frame()
    }

    fn flush_frame(&mut self) -> Result<(), ClientError> {
        self.ensure_connected()?;
        let result = match &mut self.stream {
            Some(stream) => stream.write_all(&self.write_buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        result.map_err(|e| {
            self.disconnect();
            ClientError::Io(e)
        })
    }

    /// Receives the next reply frame body.
    ///
    /// # Errors
    /// When the connection is lost, times out, or the server sends a bad header; the
    /// client is then disconnected.
    pub fn recv(&mut self) -> Result<BytesMut, ClientError> {
        let result = self.read_frame();
        if result.is_err() {
            self.disconnect();
        }
        result
    }

    fn read_frame(&mut self) -> Result<BytesMut, ClientError> {
        loop {
            if let Some(body) = self
                .decoder
                .decode(&mut self.read_buf)
                .map_err(ClientError::Frame)?
            {
                return Ok(body);
            }
            let Some(stream) = &mut self.stream else {
                return Err(ClientError::Io(io::ErrorKind::NotConnected.into()));
            };
            let len = self.read_buf.len();
            self.read_buf.resize(len + 8192, 0);
            let result = stream.read(&mut self.read_buf[len..]);
            let n = *result.as_ref().unwrap_or(&0);
            self.read_buf.truncate(len + n);
            match result {
                Ok(0) => return Err(ClientError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// Sends `request` and returns the raw reply body, reconnecting and resending
    /// per the retry policy if the connection is lost on the way.
    ///
    /// A request whose connection broke after it was sent may have been carried
    /// out already. A state-changing request therefore goes out with a fresh
    /// idempotency key, and every resend of it with the same key: the server
    /// applies it once and answers the resend with the first result.
    ///
    /// # Errors
    /// [`ClientError::GaveUp`] when no attempt got a reply; other errors at once.
    pub fn call_raw<R: Operation + Serialize>(
        &mut self,
        request: &R,
        request_id: Option<&RequestId>,
    ) -> Result<BytesMut, ClientError> {
        let keyed = request.changes_state() && self.config.idempotency_keys;
        if request.changes_state() && !keyed {
            // Without a key a resend could apply the write twice: one attempt.
            self.ensure_connected()?;
            self.send_keyed(request, request_id, None)?;
            return self.recv();
        }
        let key = keyed.then(|| uuid::Uuid::new_v4().to_string());
        self.with_retries(|c| {
            c.send_keyed(request, request_id, key.as_deref())?;
            c.recv()
        })
    }

    /// Calls operation `O` with its `fields` (as [`Client::call_raw`]); the
    /// result is `O`'s own reply type.
    ///
    /// # Errors
    /// As `call_raw`, plus [`ClientError::Decode`] for a malformed reply.
    pub fn call<O: Op>(&mut self, fields: O::Fields) -> Result<Response<O::Reply>, ClientError> {
        self.call_request(&O::request(fields))
    }

    /// Like [`Client::call_raw`] for a request built by hand, decoding the
    /// reply as a response with result `B` (for tests of the protocol itself).
    ///
    /// # Errors
    /// As `call_raw`, plus [`ClientError::Decode`] for a malformed reply.
    pub fn call_request<R: Operation + Serialize, B: DeserializeOwned>(
        &mut self,
        request: &R,
    ) -> Result<Response<B>, ClientError> {
        let mut body = self.call_raw(request, None)?;
        Response::decode(&mut body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn with_retries<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let retries = self.config.retry.attempts.saturating_sub(1);
        let mut n = 0;
        loop {
            match attempt(self) {
                Ok(value) => return Ok(value),
                Err(e) if e.is_connection_lost() && n < retries => {
                    n += 1;
                    let delay = self.backoff(n);
                    if let Some(hook) = &mut self.on_retry {
                        let go_on = hook(&RetryEvent {
                            attempt: n,
                            of: retries,
                            delay,
                            error: &e,
                        });
                        if !go_on {
                            self.disconnect();
                            return Err(ClientError::Cancelled);
                        }
                    }
                    self.disconnect();
                    std::thread::sleep(delay);
                }
                Err(e) if e.is_connection_lost() => {
                    return Err(ClientError::GaveUp {
                        attempts: n + 1,
                        last: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The wait before retry `n` (from 1): exponential, capped, jittered to 50-100%.
    fn backoff(&mut self, n: u32) -> Duration {
        self.config.retry.delay(n, &mut self.jitter)
    }
}

impl Retry {
    /// The wait before retry `n` (from 1): `base * 2^(n-1)`, at most `max`,
    /// jittered to 50-100% of that by `state` (a xorshift64 state, never 0).
    pub fn delay(&self, n: u32, state: &mut u64) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(n.max(1) - 1).unwrap_or(u32::MAX))
            .min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let fraction = 0.5 + (*state % 1000) as f64 / 2000.0;
        full.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn client_for(retry: Retry) -> Client {
        Client {
            addr: "127.0.0.1:9".parse().unwrap(),
            config: ClientConfig {
                retry,
                ..ClientConfig::default()
            },
            tls: None,
            stream: None,
            decoder: FrameDecoder::default(),
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            on_retry: None,
            jitter: 12345,
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half_to_full() {
        let mut c = client_for(Retry {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        });
        for (n, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let d = c.backoff(n).as_millis() as u64;
            assert!(d >= full / 2 && d <= full, "retry {n}: {d} ms of {full}");
        }
    }

    /// A port that was just free (it refuses connections) and a policy of
    /// `attempts` quick retries.
    fn refused_port_and_fast_retries(attempts: u32) -> (u16, ClientConfig) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = ClientConfig {
            retry: Retry {
                attempts,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            ..ClientConfig::default()
        };
        (port, config)
    }

    #[test]
    fn connect_gives_up_after_the_configured_attempts_and_reports_each_retry() {
        let (port, config) = refused_port_and_fast_retries(3);
        match Client::connect(&format!("127.0.0.1:{port}"), config) {
            Err(ClientError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected to a closed port"),
        }
    }

    #[test]
    fn a_retry_hook_that_says_stop_cancels_the_call_after_its_first_retry() {
        let (port, config) = refused_port_and_fast_retries(50);
        let mut client = Client::lazy(&format!("127.0.0.1:{port}"), config).unwrap();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = asked.clone();
        client.on_retry(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            false
        });
        let ping = wire::seller::Request::Ping(wire::request::NoFields {});
        assert!(matches!(
            client.call_raw(&ping, None),
            Err(ClientError::Cancelled)
        ));
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
