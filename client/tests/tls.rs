//! The client over TLS: it trusts the CA file it is given, checks the name
//! the server proves, and never retries a TLS failure as if the connection
//! were lost.

mod support;

use client::tls::testing::front;
use client::tls::Tls;
use client::{Client, ClientConfig};
use net::Config;
use support::*;

fn dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("net-tls-{tag}-{}", std::process::id()))
}

fn echo_through(client: &mut Client, body: &[u8]) -> Result<Vec<u8>, client::ClientError> {
    client.send_raw(body)?;
    Ok(client.recv()?.to_vec())
}

#[test]
fn a_client_with_the_ca_reaches_the_server_by_name_or_address() {
    let server = start(Config::default());
    let front = front(server.addr, &["localhost", "127.0.0.1"], &dir("ok"));
    for name in ["localhost", "127.0.0.1"] {
        let mut client = Client::lazy(&front.addr.to_string(), ClientConfig::default()).unwrap();
        client.use_tls(Tls::from_ca_file(&front.ca, name).unwrap());
        assert_eq!(echo_through(&mut client, b"hello").unwrap(), b"hello");
        assert_eq!(echo_through(&mut client, b"again").unwrap(), b"again");
    }
}

#[test]
fn a_wrong_name_or_an_unknown_ca_fails_at_once_and_is_not_a_lost_connection() {
    let server = start(Config::default());
    let front = front(server.addr, &["localhost"], &dir("name"));
    let other = client::tls::testing::front(server.addr, &["localhost"], &dir("other"));
    for (ca, name) in [(&front.ca, "market.example"), (&other.ca, "localhost")] {
        let mut client = Client::lazy(&front.addr.to_string(), ClientConfig::default()).unwrap();
        client.use_tls(Tls::from_ca_file(ca, name).unwrap());
        let e = echo_through(&mut client, b"hello").unwrap_err();
        assert!(!e.is_connection_lost(), "{e}");
        assert!(e.to_string().contains("certificate"), "{e}");
    }
    // Plain TCP to the TLS port gets no answer it could take for a reply.
    let mut plain = Client::lazy(
        &front.addr.to_string(),
        ClientConfig {
            io_timeout: std::time::Duration::from_secs(2),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    assert!(echo_through(&mut plain, b"hello").is_err());
}
