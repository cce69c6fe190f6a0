//! `--catalogue N` and `--mix search`: the documented distribution, and a
//! search run over it that times each query shape under its own name.

use simd_json::prelude::*;
use std::process::Command;

#[test]
fn the_catalogue_follows_its_documented_distribution() {
    let stack = deploy::testing::shared_stack(|_| {});
    let url = &stack.db().product_url;
    loadgen::catalogue::load(url, 20_000).expect("load");
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let count =
        |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count(&mut db, "SELECT count(*) FROM items"), 20_000);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM items WHERE category = 0"),
        10_000
    );
    for c in 1..=9 {
        let n = count(
            &mut db,
            &format!("SELECT count(*) FROM items WHERE category = {c}"),
        );
        assert!((1_100..=1_130).contains(&n), "category {c}: {n}");
    }
    // A keyword's matches: its range of the search index, and its count.
    let keyword = |db: &mut postgres::Client, k: &str| {
        let listed = count(
            db,
            &format!(
                "SELECT count(*) FROM item_keyword_sets WHERE category = 0 AND keys = '{}{k}'",
                k.len()
            ),
        );
        let counted = count(
            db,
            &format!(
                "SELECT sum(n)::bigint FROM search_counts WHERE category = 0 AND keyword = '{k}'"
            ),
        );
        assert_eq!(listed, counted, "{k}");
        listed
    };
    assert_eq!(keyword(&mut db, "hot"), 4_000, "40% of category 0");
    assert_eq!(keyword(&mut db, "warm"), 600, "6% of category 0");
    assert!(
        keyword(&mut db, "k0") > keyword(&mut db, "k20") * 4,
        "k skewed to k0"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM items WHERE cardinality(keywords) NOT BETWEEN 2 AND 4 OR quantity = 0"),
        0
    );
    // The search index holds every subset of every item's keywords, with
    // the item's score; the counts were folded to one row per key.
    assert_eq!(
        count(
            &mut db,
            "SELECT sum((1 << cardinality(keywords)) - 1)::bigint FROM items"
        ),
        count(&mut db, "SELECT count(*) FROM item_keyword_sets")
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM item_keyword_sets k JOIN items i USING (item_id)
              WHERE k.score <> i.thumbs_up - i.thumbs_down"
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM (SELECT 1 FROM search_counts
                                   GROUP BY category, keyword HAVING count(*) > 1) c"
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT sum(n)::bigint FROM search_counts WHERE category = 0 AND keyword = ''"
        ),
        10_000
    );
}

#[test]
fn a_search_run_times_each_query_shape_on_its_own() {
    let dir = deploy::testing::scratch_dir("search-mix");
    let out = dir.join("search.json");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--catalogue",
            "5000",
            "--mix",
            "search",
            "--scenario",
            "1x3",
        ])
        .args(["--ops", "40", "--runs", "1", "--workers", "2"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("srv p99"),
        "the servers' p99 beside: {stdout}"
    );
    let mut json = std::fs::read(&out).expect("the report");
    let report = simd_json::to_owned_value(&mut json).expect("JSON");
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["unexpected_errors"].as_u64(), Some(0));
    let buyer = &scenario["all_runs"]["buyer"];
    for shape in [
        "Search hot",
        "Search hot later",
        "Search warm",
        "Search two",
        "Search five",
        "Search none",
    ] {
        let n = buyer[shape]["count"].as_u64().unwrap_or(0);
        assert!(n >= 3, "{shape}: {n} calls in {buyer:?}");
    }
    assert!(buyer.get("GetItem").is_none(), "buyers only search");
}
