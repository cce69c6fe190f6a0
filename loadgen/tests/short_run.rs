//! Short load tests against the stack loadgen starts itself: 2x2, 50 calls, 2
//! runs of both mixes (the report's counts add up, every operation of the mix
//! appears, no unexpected error, the chart is written), and a 1x1 run long
//! enough to check that the weights are followed.

use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::process::Command;

fn report(dir: &std::path::Path, mix: &str) -> OwnedValue {
    run_loadgen(dir, mix, "2x2", 50, 2)
}

fn run_loadgen(
    dir: &std::path::Path,
    mix: &str,
    scenario: &str,
    ops: u32,
    runs: u32,
) -> OwnedValue {
    let out = dir.join(format!("{mix}-{scenario}.json"));
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--scenario", scenario, "--mix", mix, "--workers", "4"])
        .args(["--ops", &ops.to_string(), "--runs", &runs.to_string()])
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
        stdout.contains(&format!(
            "scenario {scenario}: {ops} calls per client, {runs} run{}",
            if runs == 1 { "" } else { "s" }
        )) && !stdout.contains("1 runs"),
        "{stdout}"
    );
    assert!(stdout.contains("p99.9"), "the table is printed: {stdout}");
    let svg = std::fs::read_to_string(out.with_extension("svg")).expect("the chart is written");
    assert!(
        svg.starts_with("<svg") && svg.contains("latency percentiles") && svg.contains(scenario)
    );
    // The throughput bar's label stands centred above its bar (anchored at
    // its bottom), and the title names a build even outside a checkout.
    let label_at = svg.find(&format!("{scenario}: ")).expect("the bar's label");
    let label = &svg[svg[..label_at].rfind("<text").expect("its text element")..label_at];
    assert!(
        label.contains(r#"text-anchor="middle""#) && label.contains(r#"dy="-0.5ex""#),
        "{label}"
    );
    assert!(!svg.contains("commit unknown"), "{svg}");
    let mut json = std::fs::read(&out).expect("the report is written");
    simd_json::to_owned_value(&mut json).expect("the report is JSON")
}

fn count(v: &OwnedValue) -> u64 {
    v["count"].as_u64().expect("a count")
}

#[test]
fn a_short_default_run_adds_up_and_covers_the_mix() {
    let dir = deploy::testing::scratch_dir("loadgen");
    let r = report(&dir, "default");
    assert_eq!(r["conditions"]["calls_per_client"].as_u64(), Some(50));
    let scenario = &r["scenarios"][0];
    assert_eq!(scenario["scenario"].as_str(), Some("2x2"));
    assert_eq!(scenario["unexpected_errors"].as_u64(), Some(0));
    let runs = scenario["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(
            run["calls"].as_u64(),
            Some(4 * 50),
            "every client made exactly N calls"
        );
        for side in ["seller", "buyer"] {
            assert_eq!(count(&run["sides"][side]["all"]), 2 * 50, "{side}");
            assert!(run["per_client_throughput"][side].as_f64().unwrap() > 0.0);
        }
        assert!(run["system_throughput"].as_f64().unwrap() > 0.0);
        // The steady phase: only mix calls, so at most 47 per client.
        let steady = &run["steady"];
        let calls = steady["calls"].as_u64().expect("a steady phase");
        assert!(calls > 0 && calls <= 4 * 47, "{calls}");
        assert_eq!(count(&steady["latency"]), calls);
        assert!(steady["steady_throughput"].as_f64().unwrap() > 0.0);
        assert!(steady["secs"].as_f64().unwrap() < run["wall_secs"].as_f64().unwrap());
        let servers = run["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 2, "CPU and memory of both servers");
        assert!(servers
            .iter()
            .all(|s| s["peak_rss_mib"].as_f64().unwrap() > 1.0));
    }
    let steady_calls: u64 = runs
        .iter()
        .map(|r| r["steady"]["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(count(&scenario["steady_latency"]), steady_calls);
    assert!(scenario["steady_throughput"].as_f64().unwrap() > 0.0);
    let all = &scenario["all_runs"];
    let expect = |side: &str, ops: &[&str]| {
        let table = all[side].as_object().unwrap();
        for op in ops {
            let n = table.get(*op).map_or(0, count);
            assert!(
                n > 0,
                "{side} {op} never ran: {:?}",
                table.keys().collect::<Vec<_>>()
            );
        }
        let sum: u64 = table
            .iter()
            .filter(|(k, _)| k.as_str() != "all")
            .map(|(_, v)| count(v))
            .sum();
        assert_eq!(
            sum,
            count(&table["all"]),
            "the operations add up to the total"
        );
        assert_eq!(sum, 2 * 2 * 50, "2 clients x 2 runs x 50 calls");
        for op in ["CreateAccount", "Login", "Logout"] {
            assert_eq!(count(&table[op]), 4, "{side} {op}: once per client per run");
        }
    };
    expect(
        "seller",
        &[
            "RegisterItemForSale",
            "ChangeItemPrice",
            "UpdateUnitsForSale",
            "DisplayItemsForSale",
            "GetSellerRating",
        ],
    );
    expect(
        "buyer",
        &[
            "SearchItemsForSale",
            "GetItem",
            "AddItemToCart",
            "RemoveItemFromCart",
            "DisplayCart",
            "SaveCart",
            "ClearCart",
            "ProvideFeedback",
            "GetSellerRating",
            "GetBuyerPurchases",
        ],
    );
}

#[test]
fn a_longer_run_follows_the_weights_instead_of_getting_stuck() {
    let dir = deploy::testing::scratch_dir("loadgen-weights");
    let r = run_loadgen(&dir, "default", "1x1", 400, 1);
    let buyer = &r["scenarios"][0]["all_runs"]["buyer"];
    let calls = |op: &str| buyer.get(op).map_or(0, count);
    let share = |op: &str| calls(op) as f64 / calls("all") as f64;
    // Searching is 30% of the weights, plus browsing whenever the buyer knows
    // no item for sale (one seller keeps at most 8 on sale, and they sell out):
    // about 30-55% here. A buyer stuck in its tour searched 98%.
    assert!(
        share("SearchItemsForSale") < 0.75,
        "searches: {:.2}",
        share("SearchItemsForSale")
    );
    assert!(
        calls("AddItemToCart") >= 5,
        "adds: {}",
        calls("AddItemToCart")
    );
}

#[test]
fn the_seed_mix_reproduces_the_course_evaluation() {
    let dir = deploy::testing::scratch_dir("loadgen-seed");
    let r = report(&dir, "seed");
    let all = &r["scenarios"][0]["all_runs"];
    assert_eq!(r["scenarios"][0]["unexpected_errors"].as_u64(), Some(0));
    let sellers = all["seller"].as_object().unwrap();
    let mut seller_ops: Vec<&str> = sellers.keys().map(String::as_str).collect();
    seller_ops.sort_unstable();
    assert_eq!(
        seller_ops,
        [
            "ChangeItemPrice",
            "CreateAccount",
            "Login",
            "Logout",
            "RegisterItemForSale",
            "UpdateUnitsForSale",
            "all"
        ]
    );
    let buyers = all["buyer"].as_object().unwrap();
    let mut buyer_ops: Vec<&str> = buyers.keys().map(String::as_str).collect();
    buyer_ops.sort_unstable();
    assert_eq!(
        buyer_ops,
        [
            "CreateAccount",
            "DisplayCart",
            "GetItem",
            "GetSellerRating",
            "Login",
            "Logout",
            "ProvideFeedback",
            "SearchItemsForSale",
            "all"
        ]
    );
    // 47 middle calls per seller: 15 full steps of three, plus a register and a
    // price change.
    assert_eq!(count(&sellers["RegisterItemForSale"]), 4 * 16);
}

/// Threads of process `pid`, from /proc.
fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

#[test]
fn hundreds_of_clients_run_on_a_few_threads() {
    let dir = deploy::testing::scratch_dir("loadgen-crowd");
    let out = dir.join("crowd.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--scenario", "150x150", "--ops", "6", "--runs", "1"])
        .args(["--workers", "2", "--no-metrics", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run loadgen");
    let mut most = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        most = most.max(threads(child.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(status.success(), "loadgen failed: {status}");
    let mut json = std::fs::read(&out).expect("the report is written");
    let r = simd_json::to_owned_value(&mut json).expect("the report is JSON");
    let all = &r["scenarios"][0]["all_runs"];
    for side in ["seller", "buyer"] {
        assert_eq!(count(&all[side]["Login"]), 150, "every {side} logged in");
        assert_eq!(
            count(&all[side]["all"]),
            150 * 6,
            "every {side} made its calls"
        );
    }
    // A thread per client would be 300 and more; the clients share the
    // runtime's (one per core), beside main, signals and the progress poll.
    eprintln!("loadgen ran at most {most} threads");
    assert!(most > 0 && most < 24, "loadgen ran {most} threads");
}

/// Runs loadgen with `args` (and its own local stack) and returns the JSON
/// report.
fn report_of(tag: &str, args: &[&str]) -> simd_json::OwnedValue {
    let dir = deploy::testing::scratch_dir(tag);
    let out = dir.join("report.json");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--runs", "1", "--no-metrics", "--out"])
        .arg(&out)
        .output()
        .expect("run loadgen");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut json = std::fs::read(&out).expect("the report is written");
    simd_json::to_owned_value(&mut json).expect("the report is JSON")
}

#[test]
fn think_time_paces_the_clients_outside_the_timed_calls() {
    let r = report_of(
        "loadgen-think",
        &["--scenario", "1x1", "--ops", "23", "--think", "100"],
    );
    assert_eq!(r["conditions"]["think_ms"].as_u64(), Some(100));
    let first = &r["scenarios"][0]["runs"][0];
    // 20 mix calls per client, each after a pause of 0-200 ms (2 s
    // expected); the calls themselves take a few ms each. The median call
    // (the three account calls, slow in a debug build, cannot move it)
    // would be about 100 ms if the pauses were timed.
    let wall = first["wall_secs"].as_f64().unwrap();
    assert!(wall > 1.0, "the pauses were not taken: {wall} s");
    for side in ["seller", "buyer"] {
        let busy_rate = first["per_client_throughput"][side].as_f64().unwrap();
        let p50 = first["sides"][side]["all"]["p50_ms"].as_f64().unwrap();
        assert!(
            p50 < 40.0,
            "{side}: a pause was timed as part of a call (p50 {p50} ms)"
        );
        assert!(
            busy_rate > 23.0 / wall,
            "{side}: {busy_rate} calls per busy second"
        );
    }
}

#[test]
fn the_register_mix_only_lists_items_and_keeps_them_on_sale() {
    let r = report_of(
        "loadgen-register",
        &["--mix", "register", "--scenario", "2x0", "--ops", "20"],
    );
    let seller = &r["scenarios"][0]["all_runs"]["seller"];
    let ops: Vec<&str> = seller
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_ref())
        .filter(|k| *k != "all")
        .collect();
    assert_eq!(
        ops,
        ["CreateAccount", "Login", "Logout", "RegisterItemForSale"],
        "nothing but listing: {ops:?}"
    );
    // 20 calls each: CreateAccount, Login, 17 listings, Logout.
    assert_eq!(seller["RegisterItemForSale"]["count"].as_u64(), Some(34));
}
