//! The blocking client against the reactor: pipelining, and reconnecting with
//! backoff (each retry reported) when its server goes away and comes back.

mod support;

use client::{Client, ClientConfig, ClientError, Retry};
use net::Config;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

fn config(attempts: u32) -> ClientConfig {
    ClientConfig {
        retry: Retry {
            attempts,
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        io_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let server = start(Config::default());
    let mut client = Client::connect(&server.addr.to_string(), config(1)).unwrap();
    for i in 0..20 {
        client
            .send_raw(format!("sleep:{} #{i}", 20 - i).as_bytes())
            .unwrap();
    }
    for i in 0..20 {
        let reply = client.recv().unwrap();
        assert_eq!(&reply[..], format!("sleep:{} #{i}", 20 - i).as_bytes());
    }
}

#[test]
fn a_call_reconnects_when_the_server_comes_back_and_reports_each_retry() {
    let server = start(Config::default());
    let addr = server.addr;
    // A person's CLI does not retry a server it never reached, but does
    // retry one that was up and went away.
    let config = ClientConfig {
        retry_unreached: false,
        ..config(30)
    };
    let mut client = Client::connect(&addr.to_string(), config).unwrap();
    let retries: Arc<Mutex<Vec<(u32, u32)>>> = Arc::default();
    let seen = retries.clone();
    client.on_retry(move |e| {
        seen.lock().unwrap().push((e.attempt, e.of));
        true
    });
    let ping = wire::seller::Request::Ping(wire::request::NoFields {});
    client.call_raw(&ping, None).expect("first call");
    server.stop().unwrap();
    // Bring a new server up on the same address a little later.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let server = net::Server::bind(addr, Config::default()).expect("rebind");
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run(Arc::new(net::echo::Echo)));
        (handle, thread)
    });
    let reply = client.call_raw(&ping, None).expect("reconnected");
    assert!(std::str::from_utf8(&reply).unwrap().contains("Ping"));
    let events = retries.lock().unwrap().clone();
    assert!(!events.is_empty(), "retries were reported");
    for (k, (attempt, of)) in events.iter().enumerate() {
        assert_eq!((*attempt, *of), (k as u32 + 1, 29));
    }
    let (handle, thread) = restarter.join().unwrap();
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_call_gives_up_after_the_configured_attempts() {
    let server = start(Config::default());
    let mut client = Client::connect(&server.addr.to_string(), config(3)).unwrap();
    server.stop().unwrap();
    let ping = wire::seller::Request::Ping(wire::request::NoFields {});
    match client.call_raw(&ping, None) {
        Err(ClientError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected GaveUp, got {other:?}"),
    }
}
