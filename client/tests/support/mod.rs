//! The server the client tests talk to: the reactor with its echo service
//! (it answers each frame with the frame itself, and `sleep:N ...` after N ms),
//! on a thread of this process.
#![allow(dead_code)]

use net::echo::Echo;
use net::{Config, Server, ShutdownHandle};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// An echo server, stopped on drop.
pub struct Running {
    pub addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Stops the server and waits for it.
    pub fn stop(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("server thread"))
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

/// An echo server on a free loopback port.
pub fn start(config: Config) -> Running {
    let server = Server::bind("127.0.0.1:0".parse().expect("address"), config).expect("bind");
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run(Arc::new(Echo)));
    Running {
        addr,
        handle,
        thread: Some(thread),
    }
}
