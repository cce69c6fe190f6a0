//! A TCP proxy that can lose a reply: it forwards a request to the server, lets
//! the server act on it, reads the reply, and then drops the reply and both
//! connections, as a network that fails at the worst moment would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A proxy in front of one server.
pub struct DropProxy {
    pub addr: SocketAddr,
    drop_next: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
}

impl DropProxy {
    /// Starts forwarding from a fresh loopback port to `upstream`.
    pub fn start(upstream: SocketAddr) -> DropProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let drop_next = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (drop_next.clone(), dropped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (flag, count) = (flag.clone(), count.clone());
                let (client_in, server_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || pump_requests(client_in, server_out));
                std::thread::spawn(move || pump_replies(server, client, &flag, &count));
            }
        });
        DropProxy {
            addr,
            drop_next,
            dropped,
        }
    }

    /// The next reply from the server is read and then lost, with the connection.
    pub fn drop_next_reply(&self) {
        self.drop_next.store(true, Ordering::SeqCst);
    }

    /// How many replies were lost so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn pump_requests(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_replies(
    mut server: TcpStream,
    mut client: TcpStream,
    drop: &AtomicBool,
    count: &AtomicUsize,
) {
    loop {
        let mut header = [0u8; 4];
        if server.read_exact(&mut header).is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        if server.read_exact(&mut body).is_err() {
            break;
        }
        if drop.swap(false, Ordering::SeqCst) {
            count.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client
            .write_all(&header)
            .and_then(|()| client.write_all(&body))
            .is_err()
        {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
