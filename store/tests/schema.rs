//! Migrations: idempotent, safe when two servers start at once, refusing an
//! edited migration; and search plans that use the indexes, not a table scan.

mod support;

use std::sync::{Arc, Barrier};
use store::migrate::{self, Migration};
use store::{DbSettings, Store, StoreError};
use support::create_database;

fn fresh_store(tag: &str) -> Store {
    fresh_store_at(tag).0
}

/// A store on two new databases, and the product_db URL.
fn fresh_store_at(tag: &str) -> (Store, String) {
    fresh_store_with(tag, |_| None)
}

/// [`fresh_store_at`] with the product_db standby `replica` makes of the
/// product_db URL, if any.
fn fresh_store_with(tag: &str, replica: impl FnOnce(&str) -> Option<String>) -> (Store, String) {
    let customer = create_database(&format!("{tag}_customer"));
    let product = create_database(&format!("{tag}_product"));
    let store = Store::open(&DbSettings {
        customer_url: customer,
        product_url: product.clone(),
        pool_size: 4,
        product_replica_url: replica(&product),
        ..DbSettings::default()
    })
    .unwrap();
    (store, product)
}

fn applied(store: &Store) -> Vec<(i32, String)> {
    store::testing::customer(store)
        .unwrap()
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn two_servers_migrating_at_once_apply_each_migration_exactly_once() {
    let store = fresh_store("race");
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.migrate()
            })
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap()
            .expect("every concurrent migrate succeeds");
    }
    let expected: Vec<(i32, String)> = migrate::CUSTOMER
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect();
    assert_eq!(applied(&store), expected);
    store.migrate().expect("idempotent");
    assert_eq!(applied(&store), expected);
}

#[test]
fn an_applied_migration_that_was_edited_is_refused() {
    let store = fresh_store("edited");
    let mut conn = store::testing::customer(&store).unwrap();
    let first = [Migration {
        version: 1,
        name: "t",
        sql: "CREATE TABLE t (a int)",
    }];
    assert_eq!(migrate::apply(&mut conn, &first).unwrap(), vec![1]);
    assert_eq!(
        migrate::apply(&mut conn, &first).unwrap(),
        Vec::<i32>::new()
    );
    let edited = [Migration {
        version: 1,
        name: "t",
        sql: "CREATE TABLE t (a bigint)",
    }];
    match migrate::apply(&mut conn, &edited) {
        Err(StoreError::Internal(m)) => assert!(m.contains("changed"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A failing migration leaves no trace: neither its table nor its version.
    let broken = [
        first[0],
        Migration {
            version: 2,
            name: "bad",
            sql: "CREATE TABLE u (a int); SELECT no_such_fn()",
        },
    ];
    assert!(migrate::apply(&mut conn, &broken).is_err());
    let u: i64 = conn
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'u'", &[])
        .unwrap()
        .get(0);
    assert_eq!(u, 0);
}

/// The generic plan of `sql` (as the servers run it: see store/src/db.rs)
/// executed with `args` (SQL literals).
fn generic_plan(url: &str, sql: &str, types: &str, args: &str) -> String {
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    db.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan; PREPARE q({types}) AS {sql}"
    ))
    .unwrap();
    db.simple_query(&format!("EXPLAIN EXECUTE q({args})"))
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The SQL literal of a text array.
fn text_array(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    format!("ARRAY[{}]::text[]", quoted.join(", "))
}

fn index_rows(conn: &mut store::db::Pooled, id: i64) -> i64 {
    conn.query_one(
        "SELECT count(*) FROM item_keyword_sets WHERE item_id = $1",
        &[&id],
    )
    .unwrap()
    .get(0)
}

fn category_count(conn: &mut store::db::Pooled, keyword: &'static str) -> i64 {
    conn.query_one(
        "SELECT coalesce(sum(n), 0)::bigint FROM search_counts
          WHERE category = 1 AND keyword = $1",
        &[&keyword],
    )
    .unwrap()
    .get(0)
}

#[test]
fn the_search_index_holds_exactly_the_items_with_units_for_sale() {
    let store = fresh_store("keywords");
    store.migrate().unwrap();
    let mut conn = store::testing::product(&store).unwrap();
    let listed: i64 = conn
        .query_one(
            "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
             VALUES (1, 1, 'x', ARRAY['a','b'], 'New', 1, 2) RETURNING item_id",
            &[],
        )
        .unwrap()
        .get(0);
    let empty: i64 = conn
        .query_one(
            "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
             VALUES (1, 1, 'y', ARRAY['a'], 'New', 1, 0) RETURNING item_id",
            &[],
        )
        .unwrap()
        .get(0);
    // {a}, {b}, {a, b}: every subset of the listed item's keywords.
    assert_eq!(
        (index_rows(&mut conn, listed), index_rows(&mut conn, empty)),
        (3, 0)
    );
    assert_eq!(
        (
            category_count(&mut conn, ""),
            category_count(&mut conn, "a")
        ),
        (1, 1)
    );
    conn.execute(
        "UPDATE items SET quantity = 0 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    assert_eq!(
        index_rows(&mut conn, listed),
        0,
        "sold out: out of the index"
    );
    assert_eq!(
        (
            category_count(&mut conn, ""),
            category_count(&mut conn, "b")
        ),
        (0, 0)
    );
    conn.execute(
        "UPDATE items SET quantity = 3 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    conn.execute(
        "UPDATE items SET quantity = 5, thumbs_up = 4 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    assert_eq!(index_rows(&mut conn, listed), 3, "restocked: back once");
    let scores: Vec<i64> = conn
        .query(
            "SELECT score FROM item_keyword_sets WHERE item_id = $1",
            &[&listed],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(scores, [4, 4, 4], "a vote moves every row's score");
    assert_eq!(
        (
            category_count(&mut conn, ""),
            category_count(&mut conn, "b")
        ),
        (1, 1)
    );
    conn.execute(
        "UPDATE items SET thumbs_up = 1 WHERE item_id = $1",
        &[&empty],
    )
    .unwrap();
    assert_eq!(index_rows(&mut conn, empty), 0);
}

/// The search index churns: a row per keyword subset of each listed item,
/// deleted when it sells out. Its dead rows slow every search and write that
/// steps over them until a vacuum removes them, so the cluster's autovacuum
/// looks every few seconds (pgcluster/src/lib.rs, `AUTOVACUUM_NAPTIME`), not at
/// PostgreSQL's default of once a minute.
#[test]
fn the_search_indexs_dead_rows_are_vacuumed_within_seconds() {
    let store = fresh_store("churn");
    store.migrate().unwrap();
    assert_eq!(
        store.autovacuum_settings().unwrap(),
        (true, 5),
        "the private cluster's autovacuum is on and looks every 5 s"
    );
    assert_eq!(store::search::autovacuum_warning(true, 5), None);
    let mut conn = store::testing::product(&store).unwrap();
    conn.execute(
        "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
         SELECT 1, 1, 'x', ARRAY['a','b','c','d','e'], 'New', 1, 1 FROM generate_series(1, 200)",
        &[],
    )
    .unwrap();
    conn.execute("UPDATE items SET quantity = 0", &[]).unwrap();
    let sold_out = std::time::Instant::now();
    let dead = 200 * 31;
    loop {
        let row = conn
            .query_one(
                "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables
                  WHERE relname = 'item_keyword_sets'",
                &[],
            )
            .unwrap();
        let (left, vacuums): (i64, i64) = (row.get(0), row.get(1));
        if vacuums > 0 && left < dead / 10 {
            eprintln!(
                "autovacuum removed {dead} dead rows {:?} after they died",
                sold_out.elapsed()
            );
            break;
        }
        assert!(
            sold_out.elapsed() < std::time::Duration::from_secs(20),
            "{left} of {dead} dead rows still there after {:?} ({vacuums} vacuums)",
            sold_out.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_search_counts_stay_exact_while_two_servers_fold_them() {
    let store = fresh_store("folding");
    store.migrate().unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two folders (every server folds each second; here as fast as they can)
    // beside 2 writers listing and selling out items of one category.
    let folders: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut folded = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    folded += store.fold_search_counts().unwrap();
                }
                folded
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut conn = store::testing::product(&store).unwrap();
                for i in 0..300 {
                    let id: i64 = conn
                        .query_one(
                            "INSERT INTO items (seller_id, category, item_name, keywords,
                                                condition, price_cents, quantity)
                             VALUES (1, 1, 'x', ARRAY['a', 'b'], 'New', 1, 1) RETURNING item_id",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    if (i + t) % 3 == 0 {
                        conn.execute("UPDATE items SET quantity = 0 WHERE item_id = $1", &[&id])
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in writers {
        t.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let folded: i64 = folders.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(folded > 0, "the folders folded something");
    let mut conn = store::testing::product(&store).unwrap();
    let available: i64 = conn
        .query_one(
            "SELECT count(*) FROM items WHERE category = 1 AND quantity > 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(available, 400);
    for key in ["", "a", "b"] {
        assert_eq!(category_count(&mut conn, key), available, "{key:?}");
    }
    store.fold_search_counts().unwrap();
    let rows: i64 = conn
        .query_one("SELECT count(*) FROM search_counts", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 3, "one row per key once folded");
    for key in ["", "a", "b"] {
        assert_eq!(category_count(&mut conn, key), available, "{key:?}");
    }
}

#[test]
fn search_reads_its_page_from_the_indexes_in_ranking_order() {
    let (store, url) = fresh_store_at("explain");
    store.migrate().unwrap();
    let mut conn = store::testing::product(&store).unwrap();
    // 200 categories x 100 items, 3 distinct keywords each (the trigger fills
    // item_keyword_sets).
    conn.execute(
        "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
         SELECT g % 50, g % 200, 'item ' || g, ARRAY['a' || g % 7, 'b' || g % 11, 'c' || g % 13],
                'New', 100, 1 + g % 5
           FROM generate_series(1, 20000) g",
        &[],
    )
    .unwrap();
    conn.execute("ANALYZE", &[]).unwrap();
    drop(conn);
    let mut plans = Vec::new();
    for words in [
        vec!["a1"],
        vec!["a1", "b2"],
        vec!["a1", "b2", "c3", "c4", "c5"],
    ] {
        let words: Vec<String> = words.into_iter().map(str::to_owned).collect();
        let (sorted, keys) = store::search::keyword_params(&words);
        let plan = generic_plan(
            &url,
            store::search::keyword_statement(sorted.len(), store::search::Levels::All),
            "int, bigint, bigint, text[], text[]",
            &format!("7, 50, 0, {}, {}", text_array(&sorted), text_array(&keys)),
        );
        plans.push((words.len(), plan));
    }
    // Keywords no item shares: level one only, and a total of -1 (run the
    // whole statement) when some item shares two of them after all.
    let words: Vec<String> = ["a1", "b2", "c3"].iter().map(|w| w.to_string()).collect();
    let (sorted, keys) = store::search::keyword_params(&words);
    let one = store::search::keyword_statement(3, store::search::Levels::One);
    let one_plan = generic_plan(
        &url,
        one,
        "int, bigint, bigint, text[], text[]",
        &format!("7, 50, 0, {}, {}", text_array(&sorted), text_array(&keys)),
    );
    assert!(
        !one_plan.contains("Seq Scan") && one_plan.contains("Merge Append"),
        "{one_plan}"
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let total = |db: &mut postgres::Client, category: i32| -> i64 {
        db.query(one, &[&category, &50i64, &0i64, &sorted, &keys])
            .unwrap()[0]
            .get(0)
    };
    // Category 7 has items carrying a1 and b2 (g = 7 + 200k, g % 7 == 1 and
    // g % 11 == 2 for some k); category 100,000 has no items.
    assert_eq!(total(&mut db, 7), -1);
    assert_eq!(total(&mut db, 100_000), 0);
    let by_category = generic_plan(
        &url,
        store::search::CATEGORY_SQL,
        "int, bigint, bigint",
        "7, 50, 0",
    );
    for (what, plan) in plans.iter().map(|(m, p)| (format!("{m} keywords"), p)) {
        assert!(!plan.contains("Seq Scan"), "{what} scans a table:\n{plan}");
        assert!(
            !plan.contains("Bitmap Heap Scan on item_keyword_sets"),
            "{what} collects matches:\n{plan}"
        );
        assert!(
            plan.contains("Index Only Scan using item_keyword_sets_ranked"),
            "{what}:\n{plan}"
        );
        // Nothing sorted but the page itself (the last Sort, on top).
        assert_eq!(plan.matches("Sort  (").count(), 1, "{what}:\n{plan}");
        assert!(plan.starts_with("Sort"), "{what}:\n{plan}");
        assert!(plan.contains("items_pkey"), "{what}:\n{plan}");
    }
    // Several keywords: each level merges its ranges in ranking order.
    assert!(plans[1].1.contains("Merge Append"), "{}", plans[1].1);
    assert!(plans[2].1.contains("Merge Append"), "{}", plans[2].1);
    assert!(
        by_category.contains("items_category_available") && !by_category.contains("Seq Scan"),
        "{by_category}"
    );
    assert!(by_category.contains("search_counts_key"), "{by_category}");
}

#[test]
fn a_sellers_listing_reads_only_the_items_on_sale() {
    let (store, url) = fresh_store_at("listing");
    store.migrate().unwrap();
    let mut conn = store::testing::product(&store).unwrap();
    // 20 sellers with 1,000 items each, all but 5 of each sold out.
    conn.execute(
        "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
         SELECT g % 20, g % 30, 'item ' || g, ARRAY['k' || g % 9], 'New', 100,
                CASE WHEN g < 100 THEN 1 ELSE 0 END
           FROM generate_series(0, 19999) g",
        &[],
    )
    .unwrap();
    conn.execute("ANALYZE", &[]).unwrap();
    drop(conn);
    let on_sale = generic_plan(&url, store::item::SELLER_ON_SALE_SQL, "bigint", "3");
    assert!(
        on_sale.contains("items_seller_available") && !on_sale.contains("Seq Scan"),
        "{on_sale}"
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let ids = |db: &mut postgres::Client, sql: &str| -> Vec<i64> {
        db.query(sql, &[&3i64])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(
        ids(&mut db, store::item::SELLER_ON_SALE_SQL).len(),
        5,
        "seller 3's items 3, 23, 43, 63 and 83"
    );
    assert_eq!(ids(&mut db, store::item::SELLER_ITEMS_SQL).len(), 1000);
}

/// A store whose product_db "standby" is `replica` (the primary itself: not in
/// recovery, so always usable; or an address nothing answers on).
fn store_with_replica(tag: &str, replica: impl FnOnce(&str) -> String) -> Store {
    let (store, _) = fresh_store_with(tag, |product| Some(replica(product)));
    store.migrate().unwrap();
    store
}

fn searches_answer(store: &Store) {
    store.create_buyer("reader", "pw", None).unwrap();
    let (session, _) = store.login_buyer("reader", "pw", None).unwrap();
    for keywords in [
        vec![],
        vec!["a".to_owned()],
        vec!["a".into(), "b".into(), "c".into()],
    ] {
        let (items, total) = store.search(session, 1, &keywords, 10, 0).unwrap();
        assert_eq!((items.len(), total), (0, 0));
    }
}

#[test]
fn searches_go_to_a_standby_that_keeps_up_and_to_the_primary_without_one() {
    let store = store_with_replica("replica_ok", |product| product.to_owned());
    // The watcher looks every 250 ms.
    std::thread::sleep(store::CHECK_EVERY * 3);
    searches_answer(&store);
    assert_eq!(store.replica_reads(), 3, "all three read the standby");
    let stats = store.db_stats();
    assert!(
        stats.iter().any(|s| s.db == "product_replica"),
        "its pool is watched"
    );

    let port = pgcluster::free_port().unwrap();
    let dead = store_with_replica("replica_dead", |product| {
        let (head, tail) = product.rsplit_once('/').unwrap();
        let (host, _) = head.rsplit_once(':').unwrap();
        format!("{host}:{port}/{tail}")
    });
    std::thread::sleep(store::CHECK_EVERY * 3);
    searches_answer(&dead);
    assert_eq!(dead.replica_reads(), 0, "the primary answered them all");
}

#[test]
fn an_item_the_primary_shows_a_moment_after_the_standby_is_found_there() {
    // The "standby" is the primary itself; the item commits on it while
    // AddItemToCart and ProvideFeedback are already looking for it, as when a
    // buyer found it on a standby that replayed its commit before the
    // primary's snapshots included it.
    let (store, product) = fresh_store_with("settle", |product| Some(product.to_owned()));
    store.migrate().unwrap();
    std::thread::sleep(store::CHECK_EVERY * 3);
    store.create_buyer("settler", "pw", None).unwrap();
    let (session, _) = store.login_buyer("settler", "pw", None).unwrap();
    let mut db = postgres::Client::connect(&product, postgres::NoTls).unwrap();
    let mut late_item = || -> (i64, std::thread::JoinHandle<()>) {
        let id: i64 = db
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('items', 'item_id'))",
                &[],
            )
            .unwrap()
            .get(0);
        let url = product.clone();
        let insert = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            db.execute(
                "INSERT INTO items (item_id, seller_id, category, item_name, keywords, condition,
                                    price_cents, quantity)
                 OVERRIDING SYSTEM VALUE
                 VALUES ($1, 1, 1, 'late', ARRAY['late'], 'New', 100, 5)",
                &[&id],
            )
            .unwrap();
        });
        (id, insert)
    };

    let (id, insert) = late_item();
    let cart = store
        .add_to_cart(session, id, 2, None)
        .expect("found a moment later");
    insert.join().unwrap();
    assert_eq!(cart.cart_items.get(&id.to_string()), Some(&2));

    let (id, insert) = late_item();
    assert_eq!(
        store
            .vote(session, id, true, None)
            .expect("found a moment later"),
        (1, 0)
    );
    insert.join().unwrap();

    // An item that never comes is still not found, after the short wait.
    let started = std::time::Instant::now();
    assert!(matches!(
        store.add_to_cart(session, 999_999_999, 1, None),
        Err(store::StoreError::NotFound(_))
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
