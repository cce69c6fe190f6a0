//! Search ranking and paging, proven against a brute-force ranking on random
//! catalogues: each case lists random items in a category of its own, moves
//! their votes, sells some out and restocks others (the triggers keep the
//! keyword index in step), then asks random searches through the API and
//! compares every page and total with PROTOCOL.md's ranking computed here.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;
use wire::buyer::Request as B;
use wire::request::Search;
use wire::response::SearchResults;

const WORDS: [&str; 6] = ["red", "mug", "tea", "oak", "lamp", "zinc"];

#[derive(Debug, Clone)]
struct Listed {
    keywords: Vec<&'static str>,
    quantity: i64,
    up: i64,
    down: i64,
}

#[derive(Debug, Clone)]
enum Change {
    Vote { item: usize, up: i64, down: i64 },
    Units { item: usize, quantity: i64 },
}

#[derive(Debug, Clone)]
struct Query {
    keywords: Vec<&'static str>,
    limit: i64,
    offset: i64,
}

fn listed() -> impl Strategy<Value = Listed> {
    (
        proptest::sample::subsequence(WORDS.to_vec(), 0..=5),
        0..3i64,
        0..4i64,
        0..4i64,
    )
        .prop_map(|(keywords, quantity, up, down)| Listed {
            keywords,
            quantity,
            up,
            down,
        })
}

fn change(items: usize) -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..items, 0..6i64, 0..6i64).prop_map(|(item, up, down)| Change::Vote { item, up, down }),
        (0..items, 0..3i64).prop_map(|(item, quantity)| Change::Units { item, quantity }),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    let words: Vec<&'static str> = WORDS.iter().copied().chain(["none"]).collect();
    (
        proptest::sample::subsequence(words, 0..=4),
        1..12i64,
        0..40i64,
    )
        .prop_map(|(keywords, limit, offset)| Query {
            keywords,
            limit,
            offset,
        })
}

/// The item ids PROTOCOL.md ranks for `q` over `items` (id, keywords,
/// quantity, score), before paging.
fn ranked(items: &[(i64, Vec<String>, i64, i64)], q: &Query) -> Vec<i64> {
    let mut hits: Vec<(i64, i64, i64)> = items
        .iter()
        .filter(|(_, _, quantity, _)| *quantity > 0)
        .filter_map(|(id, keywords, _, score)| {
            let matched = q
                .keywords
                .iter()
                .filter(|k| keywords.iter().any(|w| w == *k))
                .count() as i64;
            (q.keywords.is_empty() || matched > 0).then_some((*id, matched, *score))
        })
        .collect();
    if q.keywords.is_empty() {
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    } else {
        hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    }
    hits.into_iter().map(|h| h.0).collect()
}

#[test]
fn search_pages_match_a_brute_force_ranking_on_random_catalogues() {
    let stack = stack();
    let (buyer, bsid, _, _) = new_buyer();
    let db = postgres::Client::connect(&stack.db().product_url, postgres::NoTls).unwrap();
    // The runner takes a Fn: the connections are borrowed per case.
    let (buyer, db) = (std::cell::RefCell::new(buyer), std::cell::RefCell::new(db));
    let strategy = prop::collection::vec(listed(), 1..40).prop_flat_map(|items| {
        let n = items.len();
        (
            Just(items),
            prop::collection::vec(change(n), 0..30),
            prop::collection::vec(query(), 1..8),
        )
    });
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(items, changes, queries)| {
            let (mut buyer, mut db) = (buyer.borrow_mut(), db.borrow_mut());
            let category = unique_category();
            let mut ids = Vec::new();
            for item in &items {
                let keywords: Vec<String> = item.keywords.iter().map(|k| k.to_string()).collect();
                let id: i64 = db
                    .query_one(
                        "INSERT INTO items (seller_id, category, item_name, keywords, condition,
                                            price_cents, quantity, thumbs_up, thumbs_down)
                         VALUES (1, $1, 'x', $2, 'New', 100, $3, $4, $5) RETURNING item_id",
                        &[
                            &(category as i32),
                            &keywords,
                            &item.quantity,
                            &item.up,
                            &item.down,
                        ],
                    )
                    .unwrap()
                    .get(0);
                ids.push(id);
            }
            for c in &changes {
                match *c {
                    Change::Vote { item, up, down } => db.execute(
                        "UPDATE items SET thumbs_up = $2, thumbs_down = $3 WHERE item_id = $1",
                        &[&ids[item], &up, &down],
                    ),
                    Change::Units { item, quantity } => db.execute(
                        "UPDATE items SET quantity = $2 WHERE item_id = $1",
                        &[&ids[item], &quantity],
                    ),
                }
                .unwrap();
            }
            let now: Vec<(i64, Vec<String>, i64, i64)> = db
                .query(
                    "SELECT item_id, keywords, quantity, thumbs_up - thumbs_down
                       FROM items WHERE category = $1",
                    &[&(category as i32)],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            for q in &queries {
                let expected = ranked(&now, q);
                let page: Vec<i64> = expected
                    .iter()
                    .copied()
                    .skip(q.offset as usize)
                    .take(q.limit as usize)
                    .collect();
                let found: SearchResults = buyer.ok(&B::SearchItemsForSale(Search {
                    session_id: bsid.clone(),
                    category,
                    keywords: q.keywords.iter().map(|k| k.to_string()).collect(),
                    limit: Some(q.limit),
                    offset: Some(q.offset),
                }));
                let got: Vec<i64> = found.items.iter().map(|i| i.item_id).collect();
                prop_assert_eq!(&got, &page, "{:?} over {:?}", q, now);
                prop_assert_eq!(found.total, expected.len() as i64);
                prop_assert!(found.total_exact);
            }
            Ok(())
        })
        .unwrap();
}
