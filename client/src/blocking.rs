//! The blocking client of the CLIs (and of tests and tools).
//!
//! One TCP connection, frames in and out through reusable buffers, pipelining
//! (`send` several, then `recv` as many), and [`Client::call`] which reconnects
//! and resends by [`crate::rules`] when the connection is lost or the server
//! answers "retry" (`UNAVAILABLE`, `OVERLOADED`), reporting every retry to a
//! callback so a CLI can show it. Given several servers, it moves to the
//! next when a connection fails.

use crate::frames::{Frames, READ_CHUNK};
use crate::rules::{jitter_seed, refused_or, Attempts, Call, ClientConfig, ClientError, Servers};
use crate::tls::Tls;
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use wire::{Op, Operation, RequestId, Response};

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

/// A connection to one server of a list (most often a list of one).
pub struct Client {
    /// The servers it may use, and which one it uses.
    servers: Servers,
    /// The address of the one in use, as last resolved.
    addr: SocketAddr,
    config: ClientConfig,
    /// TLS settings, when the server (or the proxy before it) speaks TLS.
    tls: Option<Tls>,
    stream: Option<Stream>,
    frames: Frames,
    on_retry: Option<RetryHook>,
    jitter: u64,
    /// A connection to the server was made at least once.
    reached: bool,
}

impl Client {
    /// Resolves `addr` (`host:port`, or several separated by commas) and
    /// connects, retrying per the policy.
    ///
    /// # Errors
    /// When no address resolves or every attempt fails.
    pub fn connect(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let mut client = Client::lazy(addr, config)?;
        client.with_retries(Attempts::new(config.retry), |c| c.ensure_connected())?;
        Ok(client)
    }

    /// Resolves `addr` (`host:port`, or several separated by commas: see
    /// [`Servers`]) without connecting: the first call connects (with the
    /// retries of the policy), so a program can start while the server is
    /// down. A server whose name does not resolve now is asked again when
    /// its turn comes (a container's name resolves only while it runs).
    ///
    /// # Errors
    /// When the list is malformed, or none of its addresses resolves.
    pub fn lazy(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let invalid =
            |why: String| ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, why));
        let mut servers = Servers::parse(addr).map_err(invalid)?;
        let mut first = None;
        for _ in 0..servers.len() {
            match resolve(servers.current()) {
                Ok(resolved) => {
                    first = Some(resolved);
                    break;
                }
                Err(e) if servers.len() == 1 => return Err(ClientError::Io(e)),
                Err(_) => servers.advance(),
            }
        }
        let addr =
            first.ok_or_else(|| invalid(format!("none of {addr} resolves to an address")))?;
        Ok(Client {
            servers,
            addr,
            config,
            tls: None,
            stream: None,
            frames: Frames::new(config.frame_limit),
            on_retry: None,
            jitter: jitter_seed(0),
            reached: false,
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

    /// The address of the server in use (the last one tried).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The servers it may use.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Whether a connection to a server was ever made.
    pub fn reached(&self) -> bool {
        self.reached
    }

    /// Replaces the reconnect policy (for instance, one attempt for a
    /// last request on the way out).
    pub fn set_retry(&mut self, retry: crate::rules::Retry) {
        self.config.retry = retry;
    }

    fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.stream.is_none() {
            self.addr = resolve(self.servers.current())?;
            let tcp = TcpStream::connect_timeout(&self.addr, self.config.connect_timeout)?;
            tcp.set_nodelay(true)?;
            tcp.set_read_timeout(Some(self.config.io_timeout))?;
            tcp.set_write_timeout(Some(self.config.io_timeout))?;
            let stream = match &self.tls {
                Some(tls) => Stream::Tls(Box::new(tls.connect(tcp)?)),
                None => Stream::Plain(tcp),
            };
            self.frames.reconnected();
            self.stream = Some(stream);
            self.reached = true;
        }
        Ok(())
    }

    /// Drops the connection; the next call reconnects.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.frames.reconnected();
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
        self.frames.encode(request, request_id, idempotency_key);
        self.flush_frame()
    }

    /// Sends one frame with `body` as it is (no JSON check: for tests and tools).
    ///
    /// # Errors
    /// When the connection is lost; the client is then disconnected.
    pub fn send_raw(&mut self, body: &[u8]) -> Result<(), ClientError> {
        self.frames.encode_raw(body);
        self.flush_frame()
    }

    fn flush_frame(&mut self) -> Result<(), ClientError> {
        self.ensure_connected()?;
        let result = match &mut self.stream {
            Some(stream) => stream.write_all(&self.frames.outgoing),
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
            if let Some(body) = self.frames.next_reply()? {
                return Ok(body);
            }
            let Some(stream) = &mut self.stream else {
                return Err(ClientError::Io(io::ErrorKind::NotConnected.into()));
            };
            let incoming = &mut self.frames.incoming;
            let len = incoming.len();
            incoming.resize(len + READ_CHUNK, 0);
            let result = stream.read(&mut incoming[len..]);
            let n = *result.as_ref().unwrap_or(&0);
            incoming.truncate(len + n);
            match result {
                Ok(0) => return Err(ClientError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// Sends `request` and returns the raw reply body, reconnecting and resending
    /// when the connection is lost on the way, by [`crate::rules`]: a write
    /// carries a fresh idempotency key, the same on every resend; without keys
    /// it is sent once.
    ///
    /// # Errors
    /// [`ClientError::GaveUp`] when no attempt got a reply; other errors at once.
    pub fn call_raw<R: Operation + Serialize>(
        &mut self,
        request: &R,
        request_id: Option<&RequestId>,
    ) -> Result<BytesMut, ClientError> {
        let Call { key, attempts } = Call::new(request, &self.config);
        self.with_retries(attempts, |c| {
            c.send_keyed(request, request_id, key.as_deref())?;
            let reply = c.recv()?;
            refused_or(&c.config, reply)
        })
        .or_else(ClientError::into_reply)
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

    /// Runs `attempt` until it succeeds or `attempts` says to stop. A
    /// failed connection moves to the next server of the list (a reply
    /// that says "retry" stays: the server answered, its database did not);
    /// with `retry_unreached` off, a call that never reached any server
    /// stops once each was tried.
    fn with_retries<T>(
        &mut self,
        mut attempts: Attempts,
        mut attempt: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut unreached_tried = 0;
        loop {
            let e = match attempt(self) {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let refused = matches!(e, ClientError::Refused(_));
            if !refused {
                self.disconnect();
                if e.is_connection_lost() {
                    self.servers.advance();
                }
            }
            if !self.reached && !self.config.retry_unreached && e.is_connection_lost() {
                unreached_tried += 1;
                if unreached_tried >= self.servers.len() {
                    return Err(e);
                }
                continue;
            }
            let retry = attempts.after_failure(e, &mut self.jitter)?;
            if let Some(hook) = &mut self.on_retry {
                let go_on = hook(&RetryEvent {
                    attempt: retry.attempt,
                    of: retry.of,
                    delay: retry.delay,
                    error: &retry.error,
                });
                if !go_on {
                    return Err(ClientError::Cancelled);
                }
            }
            std::thread::sleep(retry.delay);
        }
    }
}

/// The first address `addr` (`host:port`) resolves to.
fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Retry;
    use std::net::TcpListener;

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
    fn a_server_never_reached_is_reported_at_once_when_asked() {
        let (port, config) = refused_port_and_fast_retries(50);
        let config = ClientConfig {
            retry_unreached: false,
            ..config
        };
        let mut client = Client::lazy(&format!("127.0.0.1:{port}"), config).unwrap();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = asked.clone();
        client.on_retry(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            true
        });
        let ping = wire::seller::Request::Ping(wire::request::NoFields {});
        match client.call_raw(&ping, None) {
            Err(e @ ClientError::Io(_)) => assert!(e.is_connection_lost(), "{e}"),
            other => panic!("expected the refusal itself, got {other:?}"),
        }
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no retry"
        );
        assert!(!client.reached());
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

    /// A server on loopback that answers each frame with `answers[n]` (the
    /// last one again after the list), and keeps every request it got.
    fn scripted_server(
        answers: &'static [&'static str],
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                loop {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut body).is_err() {
                        break;
                    }
                    let n = {
                        let mut got = kept.lock().unwrap();
                        got.push(String::from_utf8_lossy(&body).into_owned());
                        got.len() - 1
                    };
                    let answer = answers[n.min(answers.len() - 1)].as_bytes();
                    let mut frame = (answer.len() as u32).to_be_bytes().to_vec();
                    frame.extend_from_slice(answer);
                    if stream.write_all(&frame).is_err() {
                        break;
                    }
                }
            }
        });
        (port, got)
    }

    const UNAVAILABLE: &str =
        r#"{"status":"Error","code":"UNAVAILABLE","message":"a database is unavailable"}"#;
    const CREATED: &str = r#"{"status":"OK","message":"created","seller_id":7}"#;

    fn create_account() -> wire::seller::Request {
        wire::seller::Request::CreateAccount(wire::request::Credentials {
            username: "ann".into(),
            password: "pw".into(),
        })
    }

    #[test]
    fn a_list_of_servers_moves_to_the_next_when_one_refuses() {
        let (dead, config) = refused_port_and_fast_retries(5);
        let (alive, got) = scripted_server(&[CREATED]);
        let mut client =
            Client::lazy(&format!("127.0.0.1:{dead}, 127.0.0.1:{alive}"), config).unwrap();
        assert_eq!(client.servers().len(), 2);
        let reply = client.call_raw(&create_account(), None).unwrap();
        assert!(String::from_utf8_lossy(&reply).contains("\"OK\""));
        assert_eq!(client.addr().port(), alive);
        assert_eq!(got.lock().unwrap().len(), 1);
        // (The scripted server serves one connection at a time.)
        drop(client);
        // Never reached and told not to retry: still each server is tried.
        let mut client = Client::lazy(
            &format!("127.0.0.1:{dead},127.0.0.1:{alive}"),
            ClientConfig {
                retry_unreached: false,
                ..config
            },
        )
        .unwrap();
        assert!(client.call_raw(&create_account(), None).is_ok());
        assert!(matches!(
            Client::lazy("127.0.0.1:1,", config),
            Err(ClientError::Io(_))
        ));
    }

    #[test]
    fn an_unavailable_answer_is_retried_with_the_same_key_then_given_as_the_answer() {
        let (_, config) = refused_port_and_fast_retries(4);
        let (port, got) = scripted_server(&[UNAVAILABLE, UNAVAILABLE, CREATED]);
        let mut client = Client::lazy(&format!("127.0.0.1:{port}"), config).unwrap();
        let reply = client.call_raw(&create_account(), None).unwrap();
        assert!(String::from_utf8_lossy(&reply).contains("seller_id"));
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "two refusals, then the answer: {got:?}");
        let key = |request: &str| {
            let at = request.find("idempotency_key").expect("a key");
            request[at..].split('"').nth(2).unwrap().to_owned()
        };
        assert!(got.iter().all(|r| key(r) == key(&got[0])), "{got:?}");

        // Refused every time: the last refusal is the call's answer.
        let (port, got) = scripted_server(&[UNAVAILABLE]);
        let mut client = Client::lazy(&format!("127.0.0.1:{port}"), config).unwrap();
        let reply = client.call_raw(&create_account(), None).unwrap();
        assert!(String::from_utf8_lossy(&reply).contains("UNAVAILABLE"));
        assert_eq!(got.lock().unwrap().len(), 4, "every attempt of the policy");

        // A write without a key is never resent: its refusal comes back at once.
        let (port, got) = scripted_server(&[UNAVAILABLE, CREATED]);
        let mut client = Client::lazy(
            &format!("127.0.0.1:{port}"),
            ClientConfig {
                idempotency_keys: false,
                ..config
            },
        )
        .unwrap();
        let reply = client.call_raw(&create_account(), None).unwrap();
        assert!(String::from_utf8_lossy(&reply).contains("UNAVAILABLE"));
        assert_eq!(got.lock().unwrap().len(), 1);
    }
}
