//! A trivial service for reactor tests and the benchmark: no database, no JSON.
//!
//! It answers every frame with a frame holding the same bytes, except:
//! `panic` panics (the reactor must answer `INTERNAL`), `sleep:<ms>...` sleeps
//! that long before echoing (an in-flight request that takes time), and
//! `slow:<ms>...` does the same on the slow lane, and `peer` is answered with
//! the client's address as the reactor knows it (after a PROXY header).

use crate::metrics::{Outcome, ServerMetrics};
use crate::reactor::{Config, Server, Service, ShutdownHandle};
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The echo service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn call(&self, peer: std::net::IpAddr, body: &mut [u8], out: &mut BytesMut) -> Outcome {
        if body == b"peer" {
            wire::frame::encode_raw(out, peer.to_string().as_bytes());
            return Outcome {
                operation: Some("Echo"),
                code: None,
            };
        }
        if body == b"panic" {
            panic!("the echo service was asked to panic");
        }
        if let Some(rest) = body
            .strip_prefix(b"sleep:")
            .or_else(|| body.strip_prefix(b"slow:"))
        {
            let digits: Vec<u8> = rest
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            let ms = std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
        }
        wire::frame::encode_raw(out, body);
        Outcome {
            operation: Some("Echo"),
            code: None,
        }
    }

    fn is_slow(&self, body: &[u8]) -> bool {
        body.starts_with(b"slow:")
    }
}

/// An echo server on a thread of this process, for tests (the reactor's and
/// the client's); stopped on drop.
pub struct Running {
    /// Its plain listener (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Its PROXY protocol listener, when started with one.
    pub proxy_addr: Option<SocketAddr>,
    pub handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Stops the server and waits for it.
    ///
    /// # Errors
    /// What the server's run returned.
    ///
    /// # Panics
    /// When the server's thread panicked.
    pub fn stop(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("the echo server's thread"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// Starts an echo server with `config` on a free loopback port (with a PROXY
/// listener beside it when `proxied`), counting into `metrics` if given.
///
/// # Panics
/// When it cannot bind (a test set-up failure).
pub fn start(config: Config, proxied: bool, metrics: Option<Arc<ServerMetrics>>) -> Running {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut server = Server::bind(any, config).expect("bind the echo server");
    if let Some(metrics) = metrics {
        server = server.with_metrics(metrics);
    }
    let proxy_addr = proxied.then(|| {
        server
            .with_proxy_listener(any)
            .expect("bind the echo server's PROXY listener")
    });
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run(Arc::new(Echo)));
    Running {
        addr,
        proxy_addr,
        handle,
        thread: Some(thread),
    }
}
