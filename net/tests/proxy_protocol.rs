//! Behind a TCP load balancer (`Server::with_proxy_listener`): each
//! connection to that listener starts with a PROXY protocol v2 header, and the
//! client it names is the peer the service, the logs and the per-address
//! limit see. The plain listener beside it is unchanged.

mod support;

use net::proxy;
use net::Config;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;
use wire::ErrorCode;

/// A server and the address of its PROXY listener.
fn behind_proxy(max_per_peer: usize) -> (Running, SocketAddr) {
    let server = start_behind_proxy(Config {
        max_per_peer,
        frame_deadline: Duration::from_millis(500),
        ..Config::default()
    });
    let proxied = server.proxy_addr.expect("a proxy listener");
    (server, proxied)
}

/// A connection as the proxy opens it for `client`.
fn relayed(server: SocketAddr, client: &str) -> TcpStream {
    let mut conn = connect(server);
    let client: SocketAddr = client.parse().expect("address");
    conn.write_all(&proxy::encode(client, server))
        .expect("header");
    conn
}

fn peer_seen(conn: &mut TcpStream) -> String {
    write_frame(conn, b"peer");
    String::from_utf8(read_frame(conn).expect("a reply")).expect("text")
}

#[test]
fn the_service_sees_the_client_the_header_names() {
    let (server, proxied) = behind_proxy(100);
    let mut v4 = relayed(proxied, "203.0.113.9:40001");
    assert_eq!(peer_seen(&mut v4), "203.0.113.9");
    assert_eq!(
        peer_seen(&mut v4),
        "203.0.113.9",
        "for the whole connection"
    );
    let mut v6 = relayed(proxied, "[2001:db8::7]:5");
    assert_eq!(peer_seen(&mut v6), "2001:db8::7");
    // A health check speaks for the proxy itself: the socket's peer.
    let mut local = connect(proxied);
    local.write_all(&proxy::encode_local()).unwrap();
    assert_eq!(peer_seen(&mut local), "127.0.0.1");
    // The plain listener beside it takes clients directly, as ever.
    let mut direct = connect(server.addr);
    assert_eq!(peer_seen(&mut direct), "127.0.0.1");
}

#[test]
fn a_header_and_frames_in_one_write_or_split_byte_by_byte_are_both_served() {
    let (_server, proxied) = behind_proxy(100);
    let client: SocketAddr = "198.51.100.4:9".parse().unwrap();
    let mut bytes = proxy::encode(client, proxied);
    bytes.extend_from_slice(&frame(b"peer"));
    bytes.extend_from_slice(&frame(b"after"));
    let mut together = connect(proxied);
    together.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut together).unwrap(), b"198.51.100.4");
    assert_eq!(read_frame(&mut together).unwrap(), b"after");
    let mut split = connect(proxied);
    split.set_nodelay(true).unwrap();
    for b in &bytes {
        split.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(read_frame(&mut split).unwrap(), b"198.51.100.4");
    assert_eq!(read_frame(&mut split).unwrap(), b"after");
}

#[test]
fn the_per_address_limit_counts_each_client_not_the_proxy() {
    let (_server, proxied) = behind_proxy(2);
    // Every connection comes from the proxy's one address; two clients.
    let mut a1 = relayed(proxied, "203.0.113.1:1");
    let mut a2 = relayed(proxied, "203.0.113.1:2");
    assert_eq!(peer_seen(&mut a1), "203.0.113.1");
    assert_eq!(peer_seen(&mut a2), "203.0.113.1");
    let mut a3 = relayed(proxied, "203.0.113.1:3");
    write_frame(&mut a3, b"peer");
    let refused = read_frame(&mut a3).expect("a refusal");
    assert_eq!(error_code(refused), ErrorCode::Overloaded);
    expect_closed(&mut a3);
    let mut b = relayed(proxied, "203.0.113.2:1");
    assert_eq!(peer_seen(&mut b), "203.0.113.2", "another client gets in");
    // One of the first client's connections closes: it may open another.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = relayed(proxied, "203.0.113.1:4");
        write_frame(&mut again, b"peer");
        if read_frame(&mut again).unwrap() == b"203.0.113.1" {
            break;
        }
        assert!(Instant::now() < deadline, "the closed slot was never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_skips_the_proxy_is_closed_unanswered() {
    let (_server, proxied) = behind_proxy(100);
    let mut direct = connect(proxied);
    write_frame(&mut direct, b"peer");
    let mut answer = Vec::new();
    match std::io::Read::read_to_end(&mut direct, &mut answer) {
        Ok(_) => assert!(answer.is_empty(), "answered {answer:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // A partial header that never ends is a stalled frame: closed at the
    // deadline.
    let mut stalled = connect(proxied);
    stalled.write_all(&proxy::SIGNATURE[..8]).unwrap();
    let started = Instant::now();
    expect_closed(&mut stalled);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn on_the_plain_listener_a_proxy_header_is_a_bad_frame() {
    let (server, _proxied) = behind_proxy(100);
    let mut conn = relayed(server.addr, "203.0.113.9:1");
    let answer = read_frame(&mut conn).expect("an error frame");
    assert_eq!(error_code(answer), ErrorCode::BadFrame);
}
