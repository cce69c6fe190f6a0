//! A keyed write whose COMMIT meets a broken connection: the store learns
//! from the key whether it committed, so a client told UNAVAILABLE ("nothing
//! was changed") can rely on it, and one whose write did commit gets its
//! result. Between the store and product_db sits a proxy that breaks the
//! connection at COMMIT: after forwarding it (the answer is lost), or before
//! (it never arrives).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use store::NewItem;
use store::{DbSettings, Store, StoreError};
use support::*;
use wire::request::Idempotency;
use wire::response::Condition;

/// A simple-query `COMMIT` message of the PostgreSQL protocol.
const COMMIT: &[u8] = b"Q\x00\x00\x00\x0bCOMMIT\x00";

const PASS: u8 = 0;
/// Forward the next COMMIT, then close both sides before its answer.
const LOSE_ANSWER: u8 = 1;
/// Close both sides instead of forwarding the next COMMIT.
const LOSE_COMMIT: u8 = 2;

struct PgProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl PgProxy {
    fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let shared = mode.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mode = shared.clone();
                let cut = Arc::new(AtomicU8::new(0));
                let (c2, s2, cut2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    cut.clone(),
                );
                std::thread::spawn(move || requests(client, server, &mode, &cut));
                std::thread::spawn(move || answers(s2, c2, &cut2));
            }
        });
        PgProxy { addr, mode }
    }

    fn next_commit(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

fn close(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn requests(mut client: TcpStream, mut server: TcpStream, mode: &AtomicU8, cut: &AtomicU8) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return close(&client, &server),
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if chunk.windows(COMMIT.len()).any(|w| w == COMMIT) {
            match mode.swap(PASS, Ordering::SeqCst) {
                LOSE_COMMIT => return close(&client, &server),
                // The answer that comes back next is dropped.
                LOSE_ANSWER => cut.store(1, Ordering::SeqCst),
                _ => {}
            }
        }
        if server.write_all(chunk).is_err() {
            return close(&client, &server);
        }
    }
}

fn answers(mut server: TcpStream, mut client: TcpStream, cut: &AtomicU8) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => return close(&client, &server),
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) == 1 {
            return close(&client, &server);
        }
        if client.write_all(&buf[..n]).is_err() {
            return close(&client, &server);
        }
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme_user, rest) = url.split_once('@').expect("a URL with a user");
    let (_, db) = rest.split_once('/').expect("a URL with a database");
    format!("{scheme_user}@{addr}/{db}")
}

fn key(k: &str) -> Idempotency {
    Idempotency {
        key: k.into(),
        operation: "RegisterItemForSale",
        fingerprint: format!("item {k}"),
    }
}

#[test]
fn a_commit_whose_answer_is_lost_is_settled_from_the_key() {
    let db = stack().db().clone();
    let product: SocketAddr = {
        let rest = db.product_url.split_once('@').unwrap().1;
        rest.split_once('/').unwrap().0.parse().expect("host:port")
    };
    let proxy = PgProxy::start(product);
    let store = Store::open(&DbSettings {
        product_url: through(&db.product_url, proxy.addr),
        pool_size: 2,
        ..db
    })
    .unwrap();
    let name = unique("commit");
    store.create_seller(&name, "pw", None).unwrap();
    let (session, seller_id) = store.login_seller(&name, "pw", None).unwrap();
    let keywords = vec!["lost".to_owned()];
    let item = NewItem {
        item_name: "lost answer",
        category: 1,
        keywords: &keywords,
        condition: Condition::New,
        price_cents: 100,
        quantity: 1,
    };
    let count = || -> i64 {
        let mut c = postgres::Client::connect(&stack().db().product_url, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT count(*) FROM items WHERE seller_id = $1",
            &[&seller_id],
        )
        .unwrap()
        .get(0)
    };

    // The COMMIT is applied, its answer lost: the key says it happened.
    proxy.next_commit(LOSE_ANSWER);
    let (id, _) = store
        .register_item(session, &item, Some(&key("a")))
        .expect("settled from the key");
    assert_eq!(count(), 1);
    // A resend gets the same item, and nothing more is listed.
    assert_eq!(
        store
            .register_item(session, &item, Some(&key("a")))
            .unwrap()
            .0,
        id
    );
    assert_eq!(count(), 1);

    // The COMMIT never arrives: the key is not there, nothing was changed.
    proxy.next_commit(LOSE_COMMIT);
    match store.register_item(session, &item, Some(&key("b"))) {
        Err(StoreError::Unavailable(detail)) => {
            assert!(detail.contains("did not commit"), "{detail}")
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert_eq!(count(), 1, "nothing half-done");
}
