//! Migrations: idempotent, safe when two servers start at once, refusing an
//! edited migration; and search plans that use the indexes, not a table scan.

mod support;

use std::sync::{Arc, Barrier};
use store::migrate::{self, Migration};
use store::{DbSettings, Store, StoreError};
use support::stack;

fn fresh_store(tag: &str) -> Store {
    let stack = stack();
    let customer = stack.create_database(&format!("{tag}_customer")).unwrap();
    let product = stack.create_database(&format!("{tag}_product")).unwrap();
    Store::open(&DbSettings {
        customer_url: customer,
        product_url: product,
        pool_size: 4,
        ..DbSettings::default()
    })
    .unwrap()
}

fn applied(store: &Store) -> Vec<(i32, String)> {
    store
        .customer()
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
    let mut conn = store.customer().unwrap();
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

fn plan(store: &Store, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> String {
    let mut conn = store.product().unwrap();
    let explain: &'static str = Box::leak(format!("EXPLAIN {sql}").into_boxed_str());
    conn.query(explain, params)
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_keyword_index_holds_exactly_the_items_with_units_for_sale() {
    let store = fresh_store("keywords");
    store.migrate().unwrap();
    let mut conn = store.product().unwrap();
    let count = |conn: &mut store::db::Pooled, id: i64| -> i64 {
        conn.query_one(
            "SELECT count(*) FROM item_keywords WHERE item_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
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
    assert_eq!((count(&mut conn, listed), count(&mut conn, empty)), (2, 0));
    conn.execute(
        "UPDATE items SET quantity = 0 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    assert_eq!(count(&mut conn, listed), 0, "sold out: out of the index");
    conn.execute(
        "UPDATE items SET quantity = 3 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    conn.execute(
        "UPDATE items SET quantity = 5 WHERE item_id = $1",
        &[&listed],
    )
    .unwrap();
    assert_eq!(count(&mut conn, listed), 2, "restocked: back once");
    conn.execute(
        "UPDATE items SET thumbs_up = 1 WHERE item_id = $1",
        &[&empty],
    )
    .unwrap();
    assert_eq!(count(&mut conn, empty), 0);
}

#[test]
fn search_by_category_and_keywords_uses_the_indexes_not_a_table_scan() {
    let store = fresh_store("explain");
    store.migrate().unwrap();
    let mut conn = store.product().unwrap();
    // 200 categories x 100 items, 3 distinct keywords each (the trigger fills
    // item_keywords).
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
    let keywords = vec!["a1".to_owned(), "b2".to_owned()];
    let one_keyword = plan(
        &store,
        store::buyer::SEARCH_KEYWORD_SQL,
        &[&7i32, &"a1", &50i64, &0i64],
    );
    let with_keywords = plan(
        &store,
        store::buyer::SEARCH_KEYWORDS_SQL,
        &[&7i32, &keywords, &50i64, &0i64],
    );
    let by_category = plan(
        &store,
        store::buyer::SEARCH_CATEGORY_SQL,
        &[&7i32, &50i64, &0i64],
    );
    for (what, plan) in [
        ("one keyword", &one_keyword),
        ("keywords", &with_keywords),
        ("category", &by_category),
    ] {
        assert!(
            !plan.contains("Seq Scan"),
            "{what} search scans a table:\n{plan}"
        );
        assert!(
            plan.contains("Index"),
            "{what} search uses no index:\n{plan}"
        );
    }
    // One keyword: its page read in ranking order, nothing grouped or sorted
    // but the page itself.
    assert!(
        one_keyword.contains("item_keywords_ranked"),
        "{one_keyword}"
    );
    assert!(
        !one_keyword.contains("HashAggregate") && !one_keyword.contains("GroupAggregate"),
        "{one_keyword}"
    );
    // Several: grouped from item_keywords by its index, and items read by
    // primary key for the page only.
    assert!(
        with_keywords.contains("on item_keywords_ranked")
            || with_keywords.contains("on item_keywords_pkey"),
        "{with_keywords}"
    );
    assert!(with_keywords.contains("items_pkey"), "{with_keywords}");
    assert!(
        by_category.contains("items_category_available"),
        "{by_category}"
    );
}
