//! The scale-out topology (deploy/docker/compose.scale.yaml on top of
//! compose.yaml), started by deploy/docker/test.sh, which runs these with
//! `--ignored`, one at a time: HAProxy in front of two servers a side, with
//! health checks that speak the protocol and PROXY v2 to the servers; a
//! streaming standby of product_db for searches; TLS at the proxy.

mod support;

use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use wire::buyer::Request as B;
use wire::request::Search;
use wire::response::SearchResults;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} (run deploy/docker/test.sh)"))
}

fn project() -> String {
    env("MARKETPLACE_SCALE_PROJECT")
}

/// The container of a service of the scale project (one replica per service).
fn container(service: &str) -> String {
    let out = run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/compose.sh"))
            .args([
                "-f",
                concat!(env!("CARGO_MANIFEST_DIR"), "/docker/compose.scale.yaml"),
            ])
            .args(["-p", &project(), "ps", "-q", service]),
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!id.is_empty(), "no container for {service}");
    id
}

/// HAProxy's view of the backend servers: name -> status (UP, DOWN, ...).
fn proxy_servers() -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{}/stats;csv", env("HAPROXY_STATS_PORT"));
    let Ok(mut response) = ureq::get(&url).call() else {
        return Vec::new();
    };
    let Ok(body) = response.body_mut().read_to_string() else {
        return Vec::new();
    };
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let (name, status) = (cells.get(1)?, cells.get(17)?);
            (!matches!(*name, "FRONTEND" | "BACKEND"))
                .then(|| (name.to_string(), status.to_string()))
        })
        .collect()
}

/// Waits until HAProxy says `server` is `status` ("UP" or "DOWN").
fn wait_for(server: &str, status: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = proxy_servers();
        if now
            .iter()
            .any(|(name, s)| name == server && s.starts_with(status))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{server} not {status} after {limit:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn loadgen(args: &[&str], out: &std::path::Path) -> Child {
    Command::new(env("MARKETPLACE_LOADGEN"))
        .args(["--seller", &stack().seller_addr().to_string()])
        .args(["--buyer", &stack().buyer_addr().to_string()])
        .args(args)
        .args(["--no-metrics", "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start loadgen")
}

fn finished(mut child: Child, out: &std::path::Path) -> Value {
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    let status = child.wait().expect("loadgen");
    assert!(status.success(), "loadgen failed: {status}\n{stdout}");
    serde_json::from_slice(&std::fs::read(out).expect("the report")).expect("JSON")
}

fn items_listed() -> i64 {
    let mut db = postgres::Client::connect(&stack().db().product_url, postgres::NoTls).unwrap();
    db.query_one("SELECT count(*) FROM items", &[])
        .unwrap()
        .get(0)
}

fn ok_calls(report: &Value, side: &str, operation: &str) -> i64 {
    let stats = &report["scenarios"][0]["all_runs"][side][operation];
    let count = stats["count"].as_i64().unwrap_or(0);
    let failed: i64 = ["errors", "unexpected"]
        .iter()
        .filter_map(|k| stats[k].as_object())
        .flat_map(|m| m.values())
        .filter_map(Value::as_i64)
        .sum();
    count - failed
}

#[test]
#[ignore = "needs the scale-out stack of deploy/docker/test.sh"]
fn loadgen_through_haproxy_rides_through_a_server_killed_mid_run() {
    for server in ["seller-1", "seller-2", "buyer-1", "buyer-2"] {
        wait_for(server, "UP", Duration::from_secs(30));
    }
    let before = items_listed();
    let out = deploy::testing::temp_dir("scale-kill").join("report.json");
    let child = loadgen(
        &[
            "--scenario",
            "10x10",
            "--runs",
            "1",
            "--ops",
            "600",
            "--retry-attempts",
            "80",
        ],
        &out,
    );
    std::thread::sleep(Duration::from_secs(4));
    // One server of each side dies at once, as a machine would.
    let (buyer, seller) = (container("buyer-server-1"), container("seller-server-1"));
    docker(&["kill", "-s", "KILL", &buyer, &seller]);
    let down = wait_for("buyer-1", "DOWN", Duration::from_secs(10));
    wait_for("seller-1", "DOWN", Duration::from_secs(10));
    assert!(
        down < Duration::from_secs(3),
        "the health check took {down:?} to take the dead server out"
    );
    docker(&["start", &buyer, &seller]);
    let up = wait_for("buyer-1", "UP", Duration::from_secs(60));
    wait_for("seller-1", "UP", Duration::from_secs(60));
    eprintln!("failover: buyer-1 out of the pool {down:?} after SIGKILL, back {up:?} after start");
    let report = finished(child, &out);
    let scenario = &report["scenarios"][0];
    assert_eq!(
        scenario["unexpected_errors"].as_u64(),
        Some(0),
        "{scenario}"
    );
    // Every listing loadgen saw acknowledged is there once: resends with
    // idempotency keys through the other server doubled none.
    let listed = items_listed() - before;
    assert_eq!(listed, ok_calls(&report, "seller", "RegisterItemForSale"));
}

fn searcher() -> (Api, String) {
    let (api, session, _, _) = new_buyer();
    (api, session)
}

fn search(api: &mut Api, session: &str) -> Result<SearchResults, String> {
    let response: wire::Response<SearchResults> = api
        .client
        .call_request(&B::SearchItemsForSale(Search {
            session_id: session.to_owned(),
            category: 1,
            keywords: vec!["mug".into()],
            limit: Some(5),
            offset: None,
        }))
        .map_err(|e| e.to_string())?;
    response.into_result().map_err(|e| e.to_string())
}

/// Searches for `secs`, returning the longest wait for an answer and every
/// failure.
fn search_for(api: &mut Api, session: &str, secs: u64) -> (Duration, Vec<String>) {
    let until = Instant::now() + Duration::from_secs(secs);
    let (mut longest, mut failures) = (Duration::ZERO, Vec::new());
    while Instant::now() < until {
        let started = Instant::now();
        if let Err(e) = search(api, session) {
            failures.push(e);
        }
        longest = longest.max(started.elapsed());
    }
    (longest, failures)
}

/// Transactions the standby has served on product_db.
fn replica_transactions() -> i64 {
    let out = docker(&[
        "exec",
        &container("product-db-replica"),
        "psql",
        "-U",
        "postgres",
        "-d",
        "product_db",
        "-Atc",
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'product_db'",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[test]
#[ignore = "needs the scale-out stack of deploy/docker/test.sh"]
fn searches_go_to_the_standby_and_on_without_it() {
    let (mut api, session) = searcher();
    // Served by the standby: its transactions grow while searches run.
    let before = replica_transactions();
    let (_, failures) = search_for(&mut api, &session, 2);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        replica_transactions() > before + 20,
        "the standby served the searches"
    );
    // Stopped: every search is still answered, none waits a second.
    let replica = container("product-db-replica");
    let stopping = std::thread::spawn(move || {
        docker(&["stop", "-t", "5", &replica]);
        replica
    });
    let (longest, failures) = search_for(&mut api, &session, 4);
    let replica = stopping.join().unwrap();
    assert!(failures.is_empty(), "searches failed: {failures:?}");
    assert!(
        longest < Duration::from_secs(1),
        "a search waited {longest:?} for the primary"
    );
    eprintln!("standby stopped: searches answered throughout, longest {longest:?}");
    // Started again: searches go back to it once it streams again.
    docker(&["start", &replica]);
    let started = Instant::now();
    loop {
        let before = replica_transactions_patient();
        let (_, failures) = search_for(&mut api, &session, 1);
        assert!(failures.is_empty(), "{failures:?}");
        if replica_transactions_patient() > before + 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "searches never went back to the standby"
        );
    }
    eprintln!(
        "standby started: searches back on it {:?} later",
        started.elapsed()
    );
}

/// `replica_transactions`, 0 while the standby is still starting.
fn replica_transactions_patient() -> i64 {
    let out = Command::new("docker")
        .args(["exec", &container("product-db-replica")])
        .args(["psql", "-U", "postgres", "-d", "product_db", "-Atc"])
        .arg(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'product_db'",
        )
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the scale-out stack of deploy/docker/test.sh"]
fn the_standby_lags_by_milliseconds_under_100x100() {
    let out = deploy::testing::temp_dir("scale-lag").join("report.json");
    let mut primary =
        postgres::Client::connect(&stack().db().product_url, postgres::NoTls).unwrap();
    let child = loadgen(
        &["--scenario", "100x100", "--runs", "1", "--ops", "150"],
        &out,
    );
    let mut lags = Vec::new();
    let started = Instant::now();
    loop {
        let (done, lag): (bool, Option<f64>) = {
            let row = primary
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_replication),
                            (SELECT max(extract(epoch FROM replay_lag))::float8
                               FROM pg_stat_replication)",
                    &[],
                )
                .unwrap();
            (!row.get::<_, bool>(0), row.get(1))
        };
        assert!(!done, "the standby stopped streaming");
        lags.push(lag.unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(300) {
            break;
        }
        if child_done(&out) {
            break;
        }
    }
    let report = finished(child, &out);
    assert_eq!(
        report["scenarios"][0]["unexpected_errors"].as_u64(),
        Some(0)
    );
    lags.sort_by(f64::total_cmp);
    let mean = lags.iter().sum::<f64>() / lags.len() as f64;
    let p99 = lags[(lags.len() * 99 / 100).min(lags.len() - 1)];
    let max = lags[lags.len() - 1];
    eprintln!(
        "replication lag under 100x100 through HAProxy ({} samples, 100 ms apart): \
         mean {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        mean * 1e3,
        p99 * 1e3,
        max * 1e3
    );
    assert!(max < 5.0, "the standby fell {max} s behind");
}

/// Whether loadgen has written its report (it does so at the end).
fn child_done(out: &std::path::Path) -> bool {
    out.exists()
}

#[test]
#[ignore = "needs the scale-out stack of deploy/docker/test.sh"]
fn the_servers_see_and_log_the_client_haproxy_relays() {
    let (mut api, session) = searcher();
    search(&mut api, &session).expect("a search");
    let haproxy = container("haproxy");
    let out = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        &haproxy,
    ]);
    let proxy_ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut peers = std::collections::BTreeSet::new();
    for server in ["buyer-server-1", "buyer-server-2"] {
        let logs = docker(&["logs", &container(server)]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned()
            + &String::from_utf8_lossy(&logs.stderr);
        for line in text.lines().filter(|l| l.contains("SearchItemsForSale")) {
            if let Some(peer) = line.split("peer=").nth(1) {
                peers.insert(peer.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    }
    assert!(!peers.is_empty(), "the servers logged the searches");
    for ip in &proxy_ips {
        assert!(
            !peers.contains(ip),
            "a server saw HAProxy ({ip}) instead of the client: {peers:?}"
        );
    }
    eprintln!("servers saw clients {peers:?}; HAProxy is {proxy_ips:?}");
}

/// Captures the loopback traffic of `port` while `script` runs in a
/// buyer CLI against it; returns the captured bytes.
fn captured(port: &str, tls: bool, script: &str) -> Vec<u8> {
    let dir = deploy::testing::temp_dir("capture");
    let file = dir.join("capture.pcap");
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark (deploy/docker/test.sh installs it)");
    // tshark says "Capturing on ..." once it listens.
    let mut err = tshark.stderr.take().expect("tshark's stderr");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("Capturing on") {
        match err.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!("tshark did not start: {}", String::from_utf8_lossy(&seen)),
        }
    }
    let buyer_cli = env("MARKETPLACE_BUYER_CLI");
    let mut command = Command::new(buyer_cli);
    command.args(["--server", &format!("127.0.0.1:{port}")]);
    if tls {
        command.args(["--ca", &env("MARKETPLACE_TEST_CA_FILE")]);
    }
    let out = command.args(["-c", script]).output().expect("buyer-cli");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    // SIGINT: tshark finishes the file.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(tshark.id() as i32, libc::SIGINT);
    }
    tshark.wait().expect("tshark");
    std::fs::read(&file).expect("the capture")
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
#[ignore = "needs the scale-out stack of deploy/docker/test.sh"]
fn the_tls_port_carries_no_password_or_card_number_in_clear() {
    let (mut seller, ssid, _) = new_seller();
    let category = unique_category();
    let item = register(&mut seller, item(&ssid, "mug", category, &["mug"], 2.0, 10));
    let card = "4556737586899855";
    let script = |user: &str, password: &str| {
        format!(
            "create-account {user} {password}; login {user} {password}; add {item} 1; \
             buy --yes --name Ann --number {card} --expiry 12/40 --cvc 123"
        )
    };
    let (tls_user, tls_password) = (unique("tls"), format!("Tls-{}", std::process::id()));
    let sealed = captured(
        &env("BUYER_TLS_PORT"),
        true,
        &script(&tls_user, &tls_password),
    );
    assert!(sealed.len() > 1000, "the capture holds the session");
    assert!(
        !holds(&sealed, &tls_password),
        "the password crossed in clear"
    );
    assert!(!holds(&sealed, card), "the card number crossed in clear");
    assert!(
        !holds(&sealed, "MakePurchase"),
        "the requests crossed in clear"
    );
    // The plain port, for comparison: everything is readable there.
    let (user, password) = (unique("plain"), format!("Plain-{}", std::process::id()));
    let open = captured(&env("BUYER_PORT"), false, &script(&user, &password));
    assert!(
        holds(&open, &password),
        "the plain capture shows the password"
    );
    assert!(
        holds(&open, card),
        "the plain capture shows the card number"
    );
}
