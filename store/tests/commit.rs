//! A keyed write whose commit meets a broken connection: the store learns
//! from the key whether it committed, so a client told UNAVAILABLE ("nothing
//! was changed") can rely on it, and one whose write did commit gets its
//! result. Between the store and product_db sits a proxy that breaks the
//! connection at a write's commit (its COMMIT, or the one statement of a
//! write that is a statement with its key): after forwarding it (the answer
//! is lost), or before (it never arrives). The same proxy counts what the
//! store sends: a keyed write's BEGIN and COMMIT travel with its statements,
//! and a one-statement write is one send.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use store::NewItem;
use store::{DbSettings, Store, StoreError};
use support::*;
use wire::request::Idempotency;
use wire::response::Condition;

/// A simple-query `COMMIT` message of the PostgreSQL protocol.
const COMMIT: &[u8] = b"Q\x00\x00\x00\x0bCOMMIT\x00";
/// The database's answer that a COMMIT is done.
const COMMITTED: &[u8] = b"C\x00\x00\x00\x0bCOMMIT\x00";

const PASS: u8 = 0;
/// Forward the next COMMIT, then close both sides before its answer.
const LOSE_ANSWER: u8 = 1;
/// Close both sides instead of forwarding the next COMMIT.
const LOSE_COMMIT: u8 = 2;
/// [`LOSE_ANSWER`] for the next send, whatever it holds.
const LOSE_NEXT_ANSWER: u8 = 3;
/// [`LOSE_COMMIT`] for the next send, whatever it holds.
const LOSE_NEXT_SEND: u8 = 4;
/// Close the store's side at the next COMMIT, and forward the COMMIT to the
/// database only [`LATE`] later: a COMMIT delayed on its way, whose sender
/// has given up on the connection.
const LATE_COMMIT: u8 = 5;
/// [`LATE_COMMIT`] for the next send, whatever it holds.
const LATE_NEXT_SEND: u8 = 6;
/// How long [`LATE_COMMIT`] holds a COMMIT back.
const LATE: std::time::Duration = std::time::Duration::from_secs(1);

/// What [`answers`] drops (then closing both sides).
const CUT_NONE: u8 = 0;
/// The next answer, whatever it holds.
const CUT_NEXT: u8 = 1;
/// The answer that says a COMMIT is done (the database has committed).
const CUT_COMMITTED: u8 = 2;

struct PgProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Reads from the store's side: a message or a pipeline of messages
    /// written at once (one write on loopback is one read here).
    sends: Arc<AtomicUsize>,
    /// When set, the next answer waits until the counter passes the value
    /// (or 2 s have passed): see [`PgProxy::hold_next_answer_until`].
    hold: Arc<Hold>,
}

#[derive(Default)]
struct Hold {
    until: std::sync::Mutex<Option<(Arc<AtomicUsize>, usize)>>,
    /// Whether the held answer went on because the counter passed.
    released_by_counter: std::sync::atomic::AtomicBool,
}

impl PgProxy {
    fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let shared = mode.clone();
        let sends = Arc::new(AtomicUsize::new(0));
        let counted = sends.clone();
        let hold = Arc::new(Hold::default());
        let held = hold.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mode = shared.clone();
                let sends = counted.clone();
                let cut = Arc::new(AtomicU8::new(CUT_NONE));
                let (c2, s2, cut2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    cut.clone(),
                );
                std::thread::spawn(move || requests(client, server, &mode, &cut, &sends));
                let hold = held.clone();
                std::thread::spawn(move || answers(s2, c2, &cut2, &hold));
            }
        });
        PgProxy {
            addr,
            mode,
            sends,
            hold,
        }
    }

    /// Holds the next answer from the database until `counter` (another
    /// proxy's sends) passes its present value, or 2 s have passed.
    fn hold_next_answer_until(&self, counter: &Arc<AtomicUsize>) {
        let now = counter.load(Ordering::SeqCst);
        *self.hold.until.lock().unwrap() = Some((counter.clone(), now));
    }

    /// What to do at the next COMMIT ([`LOSE_ANSWER`], [`LOSE_COMMIT`],
    /// [`LATE_COMMIT`]) or the next send ([`LOSE_NEXT_ANSWER`],
    /// [`LOSE_NEXT_SEND`], [`LATE_NEXT_SEND`]).
    fn next_commit(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

fn close(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn requests(
    mut client: TcpStream,
    mut server: TcpStream,
    mode: &AtomicU8,
    cut: &AtomicU8,
    sends: &AtomicUsize,
) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return close(&client, &server),
            Ok(n) => n,
        };
        sends.fetch_add(1, Ordering::SeqCst);
        let chunk = &buf[..n];
        let commit = chunk.windows(COMMIT.len()).any(|w| w == COMMIT);
        let armed = mode.load(Ordering::SeqCst);
        if commit || matches!(armed, LOSE_NEXT_ANSWER | LOSE_NEXT_SEND | LATE_NEXT_SEND) {
            match mode.swap(PASS, Ordering::SeqCst) {
                LOSE_COMMIT | LOSE_NEXT_SEND => return close(&client, &server),
                // Dropped once the COMMIT is done: the statements before it
                // may be answered first.
                LOSE_ANSWER => cut.store(CUT_COMMITTED, Ordering::SeqCst),
                LOSE_NEXT_ANSWER => cut.store(CUT_NEXT, Ordering::SeqCst),
                LATE_COMMIT | LATE_NEXT_SEND => {
                    let _ = client.shutdown(Shutdown::Both);
                    std::thread::sleep(LATE);
                    // The database reads what it was sent before the close.
                    let _ = server.write_all(chunk);
                    return close(&client, &server);
                }
                _ => {}
            }
        }
        if server.write_all(chunk).is_err() {
            return close(&client, &server);
        }
    }
}

fn answers(mut server: TcpStream, mut client: TcpStream, cut: &AtomicU8, hold: &Hold) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => return close(&client, &server),
            Ok(n) => n,
        };
        let until = hold.until.lock().unwrap().take();
        if let Some((counter, above)) = until {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while counter.load(Ordering::SeqCst) <= above && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            hold.released_by_counter
                .store(counter.load(Ordering::SeqCst) > above, Ordering::SeqCst);
        }
        let committed = buf[..n].windows(COMMITTED.len()).any(|w| w == COMMITTED);
        match cut.load(Ordering::SeqCst) {
            CUT_NEXT => return close(&client, &server),
            CUT_COMMITTED if committed => return close(&client, &server),
            _ => {}
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

/// The host:port of a database URL.
fn db_addr(url: &str) -> SocketAddr {
    let rest = url.split_once('@').expect("a URL with a user").1;
    rest.split_once('/')
        .expect("a URL with a database")
        .0
        .parse()
        .expect("host:port")
}

fn key(k: &str) -> Idempotency {
    Idempotency {
        key: k.into(),
        operation: "RegisterItemForSale",
        fingerprint: format!("item {k}"),
    }
}

/// A store with `pool_size` connections per database, each database reached
/// through its proxy when one is given (directly otherwise).
fn store_via(customer: Option<&PgProxy>, product: Option<&PgProxy>, pool_size: u32) -> Store {
    let db = db().clone();
    let via = |url: &str, proxy: Option<&PgProxy>| match proxy {
        Some(p) => through(url, p.addr),
        None => url.to_owned(),
    };
    Store::open(&DbSettings {
        customer_url: via(&db.customer_url, customer),
        product_url: via(&db.product_url, product),
        pool_size,
        ..db
    })
    .unwrap()
}

/// A new seller of `tag`, logged in: its session and id.
fn seller(store: &Store, tag: &str) -> (store::SessionId, i64) {
    let name = unique(tag);
    store.create_seller(&name, "pw", None).unwrap();
    store.login_seller(&name, "pw", None).unwrap()
}

/// A store whose product_db connections (`pool_size` of them) go through a
/// proxy, and a logged-in seller's session and id.
fn store_through_proxy(pool_size: u32) -> (Store, PgProxy, store::SessionId, i64) {
    let proxy = PgProxy::start(db_addr(&db().product_url));
    let store = store_via(None, Some(&proxy), pool_size);
    let (session, seller_id) = seller(&store, "commit");
    (store, proxy, session, seller_id)
}

/// product_db's settled commits so far.
fn settled(store: &Store) -> store::SettledCounts {
    store
        .db_stats()
        .into_iter()
        .find(|d| d.db == "product")
        .expect("product_db's pool")
        .settled
}

/// [`store::SettledCounts`] from (committed, not_committed, unknown).
fn counts(committed: u64, not_committed: u64, unknown: u64) -> store::SettledCounts {
    store::SettledCounts {
        committed,
        not_committed,
        unknown,
    }
}

/// One number `sql` reads with `id` (`$1`), directly from product_db.
fn product_number(sql: &str, id: i64) -> i64 {
    let mut c = product_db();
    c.query_one(sql, &[&id]).unwrap().get(0)
}

/// How many items `seller_id` has listed.
fn listed_by(seller_id: i64) -> i64 {
    product_number("SELECT count(*) FROM items WHERE seller_id = $1", seller_id)
}

/// An item's thumbs up.
fn thumbs_up(item_id: i64) -> i64 {
    product_number("SELECT thumbs_up FROM items WHERE item_id = $1", item_id)
}

/// A new buyer of `tag`, logged in: its session.
fn voter(store: &Store, tag: &str) -> store::SessionId {
    let name = unique(tag);
    store.create_buyer(&name, "pw", None).unwrap();
    store.login_buyer(&name, "pw", None).unwrap().0
}

/// The idempotency key `k` of a vote on `item_id`.
fn vote_key(item_id: i64, k: &str) -> Idempotency {
    Idempotency {
        key: k.into(),
        operation: "ProvideFeedback",
        fingerprint: format!("vote {item_id}"),
    }
}

fn item(keywords: &[String]) -> NewItem<'_> {
    NewItem {
        item_name: "lost answer",
        category: 1,
        keywords,
        condition: Condition::New,
        price_cents: 100,
        quantity: 1,
    }
}

#[test]
fn a_keyed_registration_is_one_statement_with_its_key() {
    // One connection, so that the measured write finds its statements prepared.
    let (store, proxy, session, _) = store_through_proxy(1);
    let keywords = vec!["pipelined".to_owned()];
    let item = item(&keywords);
    // Once, and again as a resend: every statement of both is prepared.
    for _ in 0..2 {
        store
            .register_item(session, &item, Some(&key("warm")))
            .unwrap();
    }

    proxy.sends.store(0, Ordering::SeqCst);
    let (id, _) = store
        .register_item(session, &item, Some(&key("counted")))
        .unwrap();
    // The item's INSERT and the key's in one statement: one send, where
    // BEGIN, two statements and COMMIT would take two.
    assert_eq!(proxy.sends.load(Ordering::SeqCst), 1);

    // A resend meets the taken key: the statement failed as a whole, so the
    // second item is not there either, and the first answer comes back.
    proxy.sends.store(0, Ordering::SeqCst);
    let (again, _) = store
        .register_item(session, &item, Some(&key("counted")))
        .unwrap();
    assert_eq!(again, id);
    // The statement, the recorded answer read, and a commit of its own that
    // a synchronous standby would acknowledge before the recorded answer is
    // given again (see store/tests/failover.rs).
    assert_eq!(proxy.sends.load(Ordering::SeqCst), 3);
    let listed = store.seller_items(session, true).unwrap();
    assert_eq!(listed.iter().filter(|i| i.item_id == id).count(), 1);
    assert_eq!(listed.len(), 2, "the warm-up item and this one");
}

#[test]
fn a_keyed_cart_write_learns_its_buyer_in_its_own_statements() {
    // customer_db through the proxy, one connection; product_db direct.
    let proxy = PgProxy::start(db_addr(&db().customer_url));
    let store = store_via(Some(&proxy), None, 1);
    let (seller_session, _) = seller(&store, "cartseller");
    let keywords = vec!["cart".to_owned()];
    let item = NewItem {
        quantity: 10,
        ..item(&keywords)
    };
    let (item_id, _) = store.register_item(seller_session, &item, None).unwrap();
    let buyer = unique("cartbuyer");
    store.create_buyer(&buyer, "pw", None).unwrap();
    let (session, _) = store.login_buyer(&buyer, "pw", None).unwrap();
    let add = |k: &str| {
        store.add_to_cart(
            session,
            item_id,
            1,
            Some(&Idempotency {
                key: k.into(),
                operation: "AddItemToCart",
                fingerprint: format!("add {item_id}"),
            }),
        )
    };
    // Once, and again as a resend: every statement of both is prepared.
    add("warm").unwrap();
    add("warm").unwrap();

    proxy.sends.store(0, Ordering::SeqCst);
    let cart = add("counted").unwrap();
    // [BEGIN, the cart statement] and [the key's INSERT, COMMIT]: no
    // statement of its own to learn the buyer the key belongs to.
    assert_eq!(proxy.sends.load(Ordering::SeqCst), 2);
    assert_eq!(cart.cart_items.get(&item_id.to_string()), Some(&2));

    // The resend: the same two, then the recorded answer read and made
    // sure of (a commit of its own); no third unit.
    proxy.sends.store(0, Ordering::SeqCst);
    assert_eq!(add("counted").unwrap(), cart);
    assert_eq!(proxy.sends.load(Ordering::SeqCst), 4);
    assert_eq!(
        store
            .display_cart(session)
            .unwrap()
            .cart_items
            .get(&item_id.to_string()),
        Some(&2)
    );

    // The same key from another buyer is that buyer's own key.
    let other = unique("cartbuyer");
    store.create_buyer(&other, "pw", None).unwrap();
    let (other_session, _) = store.login_buyer(&other, "pw", None).unwrap();
    let theirs = store
        .add_to_cart(
            other_session,
            item_id,
            1,
            Some(&Idempotency {
                key: "counted".into(),
                operation: "AddItemToCart",
                fingerprint: format!("add {item_id}"),
            }),
        )
        .unwrap();
    assert_eq!(theirs.cart_items.get(&item_id.to_string()), Some(&1));
}

#[test]
fn a_buyers_reads_on_product_db_go_out_while_the_session_check_is_on_its_way() {
    // Both databases through proxies, one connection each. The session
    // check's answer is held until product_db has been asked: a store that
    // waited for the check before reading would let it go only after 2 s.
    let customer = PgProxy::start(db_addr(&db().customer_url));
    let product = PgProxy::start(db_addr(&db().product_url));
    let store = store_via(Some(&customer), Some(&product), 1);
    let (seller_session, seller_id) = seller(&store, "overlap");
    let keywords = vec!["overlap".to_owned()];
    let (item_id, _) = store
        .register_item(seller_session, &item(&keywords), None)
        .unwrap();
    let buyer = unique("overlap");
    store.create_buyer(&buyer, "pw", None).unwrap();
    let (session, _) = store.login_buyer(&buyer, "pw", None).unwrap();
    let reads: [(&str, &dyn Fn() -> bool); 3] = [
        ("GetItem", &|| {
            store.get_item(session, item_id).unwrap().item_id == item_id
        }),
        ("SearchItemsForSale", &|| {
            let (items, total) = store.search(session, 1, &keywords, 10, 0).unwrap();
            total == 1 && items[0].item_id == item_id
        }),
        ("GetSellerRating", &|| {
            store.seller_rating(session, seller_id).unwrap().seller_id == seller_id
        }),
    ];
    for (name, read) in reads {
        // Once to prepare its statements, then held.
        assert!(read(), "{name}");
        customer.hold_next_answer_until(&product.sends);
        assert!(read(), "{name}");
        assert!(
            customer.hold.released_by_counter.load(Ordering::SeqCst),
            "{name} asked product_db only after the session check answered"
        );
    }
    // An ended session hears so, whatever the read found.
    store.logout_buyer(session, None).unwrap();
    assert!(matches!(
        store.get_item(session, item_id),
        Err(StoreError::SessionExpired)
    ));
}

#[test]
fn a_commit_whose_answer_is_lost_is_settled_from_the_key() {
    let (store, proxy, session, seller_id) = store_through_proxy(2);
    let keywords = vec!["lost".to_owned()];
    let item = item(&keywords);
    let count = || listed_by(seller_id);
    // Its statements prepared, so that the next send is the write itself.
    store
        .register_item(session, &item, Some(&key("warm")))
        .unwrap();
    assert_eq!(count(), 1);

    // The registration (one statement, its own commit) is applied, its
    // answer lost: the key says it happened.
    proxy.next_commit(LOSE_NEXT_ANSWER);
    assert_eq!(settled(&store), counts(0, 0, 0));
    let (id, _) = store
        .register_item(session, &item, Some(&key("a")))
        .expect("settled from the key");
    assert_eq!(count(), 2);
    assert_eq!(settled(&store), counts(1, 0, 0), "counted for the metrics");
    // A resend gets the same item, and nothing more is listed.
    assert_eq!(
        store
            .register_item(session, &item, Some(&key("a")))
            .unwrap()
            .0,
        id
    );
    assert_eq!(count(), 2);

    // The statement never arrives: the key is not there, nothing was changed.
    proxy.next_commit(LOSE_NEXT_SEND);
    match store.register_item(session, &item, Some(&key("b"))) {
        Err(StoreError::Unavailable(detail)) => {
            assert!(detail.contains("did not commit"), "{detail}")
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert_eq!(count(), 2, "nothing half-done");
    assert_eq!(settled(&store), counts(1, 1, 0));

    // A vote is a transaction (BEGIN with its statement, COMMIT with its
    // key): the same when its COMMIT's answer is lost, or the COMMIT is.
    let voter = voter(&store, "voter");
    let vote_key = |k: &str| vote_key(id, k);
    let thumbs = || thumbs_up(id);
    store
        .vote(voter, id, false, Some(&vote_key("warm")))
        .unwrap();
    proxy.next_commit(LOSE_ANSWER);
    assert_eq!(
        store.vote(voter, id, true, Some(&vote_key("up"))),
        Ok((1, 0)),
        "settled from the key"
    );
    assert_eq!(thumbs(), 1);
    assert_eq!(settled(&store), counts(2, 1, 0));
    proxy.next_commit(LOSE_COMMIT);
    match store.vote(voter, id, false, Some(&vote_key("down"))) {
        Err(StoreError::Unavailable(detail)) => {
            assert!(detail.contains("did not commit"), "{detail}")
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert_eq!(thumbs(), 1, "the vote stands as it was");
    assert_eq!(settled(&store), counts(2, 2, 0));

    // Without a key nothing tells whether it committed: the answer says so
    // (UNAVAILABLE, but not "nothing was changed"), and here it had. Once
    // first, so that the next send is the statement, not its preparation.
    store.register_item(session, &item, None).unwrap();
    assert_eq!(count(), 3);
    proxy.next_commit(LOSE_NEXT_ANSWER);
    match store.register_item(session, &item, None) {
        Err(e @ StoreError::CommitUnknown(_)) => {
            assert_eq!(e.code(), wire::ErrorCode::Unavailable);
            let message = e.client_message();
            assert!(
                message.contains("may or may not have been applied"),
                "{message}"
            );
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert_eq!(count(), 4, "it was applied");
    assert_eq!(
        settled(&store),
        counts(2, 2, 0),
        "nothing to settle it from"
    );
}

#[test]
fn a_write_delayed_on_its_way_cannot_land_after_it_is_said_undone() {
    // The store gives up on the connection while its write is still on its
    // way to the database; the write arrives a second later. Whatever the
    // store answers must be what the database ends up holding: "nothing was
    // changed" only if the late write can no longer take effect.
    let (store, proxy, session, seller_id) = store_through_proxy(2);
    let keywords = vec!["late".to_owned()];
    let item = item(&keywords);
    let count = || listed_by(seller_id);
    store
        .register_item(session, &item, Some(&key("late-warm")))
        .unwrap();

    // A registration: one statement, its own commit.
    proxy.next_commit(LATE_NEXT_SEND);
    let answer = store.register_item(session, &item, Some(&key("late-a")));
    std::thread::sleep(LATE * 2);
    match answer {
        Err(StoreError::Unavailable(detail)) => {
            assert!(detail.contains("did not commit"), "{detail}");
            assert_eq!(count(), 1, "said undone, yet the late statement landed");
        }
        // The fence came after the late statement (a starved machine).
        Ok(_) => assert_eq!(count(), 2),
        other => panic!("expected UNAVAILABLE or the item, got {other:?}"),
    }

    // A vote: a transaction whose COMMIT is late.
    let (id, _) = store.register_item(session, &item, None).unwrap();
    let voter = voter(&store, "latevoter");
    let vote_key = |k: &str| vote_key(id, k);
    let thumbs = || thumbs_up(id);
    store
        .vote(voter, id, false, Some(&vote_key("late-warm")))
        .unwrap();
    proxy.next_commit(LATE_COMMIT);
    let answer = store.vote(voter, id, true, Some(&vote_key("late-up")));
    std::thread::sleep(LATE * 2);
    match answer {
        Err(StoreError::Unavailable(detail)) => {
            assert!(detail.contains("did not commit"), "{detail}");
            assert_eq!(thumbs(), 0, "said undone, yet the late COMMIT landed");
        }
        Ok(votes) => {
            assert_eq!(votes, (1, 0));
            assert_eq!(thumbs(), 1);
        }
        other => panic!("expected UNAVAILABLE or the vote, got {other:?}"),
    }
}
