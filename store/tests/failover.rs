//! What the store says across a failover. A server that takes no writes
//! (a standby reached, or a primary being demoted): UNAVAILABLE, nothing
//! was changed, and the connection is replaced.
//!
//! A commit that waits for a synchronous standby: what the store may say
//! about it when its connection breaks (HA.md, docs/architecture.md
//! "Outcome known"). Ending a backend that waits for the standby ends its
//! COMMIT locally: the write is visible on this server though no standby
//! has it, and a promotion would lose it. So a key read present is not yet
//! "it happened": the store answers so only once a commit of its own is
//! acknowledged by the standby. Here the standby never answers
//! (`synchronous_standby_names` names one that does not exist), as when a
//! primary is cut off from its standbys; this binary's cluster is its own,
//! since every commit on it waits.

mod support;

use std::time::{Duration, Instant};
use store::{DbSettings, NewItem, Store, StoreError};
use support::*;
use wire::request::Idempotency;
use wire::response::Condition;

fn key(k: &str) -> Idempotency {
    Idempotency {
        key: k.into(),
        operation: "RegisterItemForSale",
        fingerprint: format!("item {k}"),
    }
}

/// Every commit on the cluster waits for a standby named `standby` (none
/// when empty).
fn wait_for_standby(standby: &str) {
    let mut c = product_db();
    c.batch_execute(&format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{standby}'"
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    // The setting reaches every backend at its next command.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now: String = product_db()
            .query_one("SHOW synchronous_standby_names", &[])
            .unwrap()
            .get(0);
        if now == standby {
            return;
        }
        assert!(Instant::now() < deadline, "the setting did not take");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends the server process of the store's connection that waits for the
/// standby, once there is one: as a primary's shutdown or a fence does.
fn end_the_waiting_backend() {
    let mut c = product_db();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ended = c
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE application_name = 'marketplace' AND wait_event = 'SyncRep'",
                &[],
            )
            .unwrap();
        if !ended.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no commit waited for the standby"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn new_item<'a>(name: &'a str, keywords: &'a [String]) -> NewItem<'a> {
    NewItem {
        item_name: name,
        category: 1,
        keywords,
        condition: Condition::New,
        price_cents: 100,
        quantity: 1,
    }
}

fn listed(name: &str) -> i64 {
    product_db()
        .query_one("SELECT count(*) FROM items WHERE item_name = $1", &[&name])
        .unwrap()
        .get(0)
}

#[test]
fn a_commit_no_standby_acknowledged_is_never_said_done() {
    // This binary's cluster commits asynchronously (a throwaway cluster);
    // the store's sessions here commit as a durable one does.
    product_db()
        .batch_execute("ALTER DATABASE product_db SET synchronous_commit = on")
        .unwrap();
    let store = store::Store::open(db()).unwrap();
    let seller = unique("sync");
    store.create_seller(&seller, "pw", None).unwrap();
    let (session, _) = store.login_seller(&seller, "pw", None).unwrap();
    let name = unique("item");
    let keywords = vec!["sync".to_owned()];
    let item = new_item(&name, &keywords);

    wait_for_standby("ghost");
    // Lifted again however this test ends.
    struct Lift;
    impl Drop for Lift {
        fn drop(&mut self) {
            wait_for_standby("");
        }
    }
    let lift = Lift;
    let writer = {
        let (store, item_key) = (store.clone(), key("a"));
        let keywords = keywords.clone();
        let name = name.clone();
        std::thread::spawn(move || {
            store.register_item(session, &new_item(&name, &keywords), Some(&item_key))
        })
    };
    end_the_waiting_backend();
    let answer = writer.join().unwrap();
    // The COMMIT ended locally: the item is here, on a server no standby
    // follows. Saying it was done would be an acknowledged write that a
    // promotion loses; saying nothing was changed would be false too.
    assert_eq!(listed(&name), 1, "committed locally");
    match answer {
        Err(e @ StoreError::CommitUnknown(_)) => {
            assert_eq!(e.code(), wire::ErrorCode::Unavailable);
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    // A resend finds the key, but still no standby has it: not done yet.
    match store.register_item(session, &item, Some(&key("a"))) {
        Err(StoreError::CommitUnknown(_)) => {}
        other => panic!("expected an unknown outcome for the resend, got {other:?}"),
    }

    // The standby requirement lifted (Patroni drops a lost standby, or a
    // standby catches up): the resend's answer is the first attempt's.
    drop(lift);
    let (item_id, _) = store
        .register_item(session, &item, Some(&key("a")))
        .expect("the recorded result, now durable");
    assert_eq!(listed(&name), 1, "applied once");
    let first: i64 = product_db()
        .query_one("SELECT item_id FROM items WHERE item_name = $1", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(item_id, first);
}

#[test]
fn a_write_that_reaches_a_read_only_server_changes_nothing_and_moves_on() {
    // A product_db of its own, which this test makes read-only.
    let name = unique("readonly").to_lowercase();
    let url = create_database(&name);
    let settings = DbSettings {
        product_url: url.clone(),
        pool_size: 1,
        ..db().clone()
    };
    let store = Store::open_migrated(&settings, Duration::from_secs(30)).unwrap();
    let seller = unique("ro");
    store.create_seller(&seller, "pw", None).unwrap();
    let (session, _) = store.login_seller(&seller, "pw", None).unwrap();
    let keywords = vec!["ro".to_owned()];
    let item = new_item("before", &keywords);
    store.register_item(session, &item, None).unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let items = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM items", &[])
            .unwrap()
            .get(0)
    };

    // Its sessions start read-only from now on, as on a standby; the
    // store's connection is ended, and its next one is read-only.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
        ))
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap();
    let after = new_item("after", &keywords);
    for attempt in [None, Some(key("ro"))] {
        let answer = loop {
            match store.register_item(session, &after, attempt.as_ref()) {
                // The ended connection, met first.
                Err(StoreError::Unavailable(_) | StoreError::CommitUnknown(_)) => continue,
                answer => break answer,
            }
        };
        match answer {
            Err(e @ StoreError::ReadOnly(_)) => {
                assert_eq!(e.code(), wire::ErrorCode::Unavailable);
                assert!(
                    e.client_message().contains("nothing was changed"),
                    "{}",
                    e.client_message()
                );
            }
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    }
    assert_eq!(items(&mut admin), 1, "nothing was changed");

    // Writable again (a new primary): each refused connection is replaced
    // (the pool may have opened one more while the database was still
    // read-only, which is refused once in turn), and the write goes through.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
        ))
        .unwrap();
    let written =
        (0..3).find_map(
            |_| match store.register_item(session, &after, Some(&key("ro"))) {
                Err(StoreError::ReadOnly(_)) => None,
                answer => Some(answer),
            },
        );
    written
        .expect("a fresh connection within two refusals")
        .expect("written on a fresh connection");
    assert_eq!(items(&mut admin), 2);
}
