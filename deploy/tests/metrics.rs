//! The metrics endpoint of both servers (`marketplace up --metrics-listen`):
//! exact counts, what promtool says of the exposition and of the alert rules,
//! an answer while every worker is busy, connections, frames, database errors
//! and the session sweep.
//!
//! The tests of this binary run one at a time (`serial`): each compares two
//! scrapes, and another test's requests would move the counts between them.

mod support;

use deploy::testing::shared_stack;
use deploy::Stack;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::*;
use wire::buyer::Request as B;
use wire::request::{ChangePrice, ItemRef};
use wire::response::{Empty, ItemDetail};
use wire::seller::Request as S;
use wire::ErrorCode;

const WORKERS: usize = 2;
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// This binary's stack, with one metrics endpoint for both servers, two
/// workers each and short sessions; and the lock that runs its tests one at a
/// time.
fn setup() -> (&'static Stack, MutexGuard<'static, ()>) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = shared_stack(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.workers = WORKERS;
        c.session_timeout = SESSION_TIMEOUT;
    });
    (stack, serial)
}

fn endpoint(stack: &Stack) -> SocketAddr {
    let addrs = stack.metrics_addrs();
    assert_eq!(addrs.len(), 1, "one endpoint for both servers: {addrs:?}");
    addrs[0]
}

/// (status, content type, body) of `method path` on the stack's endpoint.
fn http(stack: &Stack, method: &str, path: &str) -> (u16, String, String) {
    support::http(method, &format!("http://{}{path}", endpoint(stack)), &[])
}

/// One scrape: each sample by metric name and labels.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn take(stack: &Stack) -> Scrape {
        let (status, _, body) = http(stack, "GET", "/metrics");
        assert_eq!(status, 200);
        Scrape::parse(&body)
    }

    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closed labels");
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Scrape(samples)
    }

    /// The sum of `name`'s samples whose labels include all of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether `name` has a sample with all of `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.0.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
        })
    }
}

fn requests(scrape: &Scrape, server: &str, operation: &str, code: &str) -> f64 {
    scrape.sum(
        "marketplace_requests_total",
        &[("server", server), ("operation", operation), ("code", code)],
    )
}

/// promtool: $PROMTOOL, else on PATH, else where deploy/setup.sh puts it.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if Command::new("promtool").arg("--version").output().is_ok() {
        return PathBuf::from("promtool");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("marketplace/tools/promtool");
    assert!(
        cache.exists(),
        "promtool is missing: run the tests with deploy/test.sh, which fetches it"
    );
    cache
}

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker/prometheus")
}

/// Waits up to `limit` for `ready` to hold of a fresh scrape.
fn eventually(stack: &Stack, limit: Duration, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + limit;
    loop {
        let scrape = Scrape::take(stack);
        if ready(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn counters_and_histograms_move_by_exactly_the_requests_made() {
    let (stack, _serial) = setup();
    let before = Scrape::take(stack);

    let (mut seller, ssid, _) = new_seller();
    let item_id = register(
        &mut seller,
        item(&ssid, "lamp", unique_category(), &[], 9.5, 3),
    );
    for _ in 0..2 {
        let code = seller.err(&S::ChangeItemPrice(ChangePrice {
            session_id: ssid.clone(),
            item_id,
            new_price: -1.0,
        }));
        assert_eq!(code, ErrorCode::InvalidArgument);
    }
    let (mut buyer, bsid, _, _) = new_buyer();
    let get = |item_id| {
        B::GetItem(ItemRef {
            session_id: bsid.clone(),
            item_id,
        })
    };
    for _ in 0..7 {
        let _: ItemDetail = buyer.ok(&get(item_id));
    }
    for _ in 0..3 {
        assert_eq!(buyer.err(&get(i64::MAX)), ErrorCode::NotFound);
    }
    for json in [r#"{"operation":"GetItem","session_id":7}"#, "not json"] {
        assert_eq!(buyer.raw(json).code, Some(ErrorCode::BadRequest));
    }
    assert_eq!(
        buyer.raw(r#"{"operation":"Teleport"}"#).code,
        Some(ErrorCode::UnknownOperation)
    );

    let after = Scrape::take(stack);
    let moved =
        |server, op, code| requests(&after, server, op, code) - requests(&before, server, op, code);
    let expected = [
        ("seller", "CreateAccount", "OK", 1.0),
        ("seller", "Login", "OK", 1.0),
        ("seller", "RegisterItemForSale", "OK", 1.0),
        ("seller", "ChangeItemPrice", "INVALID_ARGUMENT", 2.0),
        ("buyer", "CreateAccount", "OK", 1.0),
        ("buyer", "Login", "OK", 1.0),
        ("buyer", "GetItem", "OK", 7.0),
        ("buyer", "GetItem", "NOT_FOUND", 3.0),
        ("buyer", "unknown", "BAD_REQUEST", 2.0),
        ("buyer", "unknown", "UNKNOWN_OPERATION", 1.0),
    ];
    for (server, op, code, n) in expected {
        assert_eq!(moved(server, op, code), n, "{server} {op} {code}");
    }
    for server in ["seller", "buyer"] {
        let total = |s: &Scrape| s.sum("marketplace_requests_total", &[("server", server)]);
        let want: f64 = expected.iter().filter(|e| e.0 == server).map(|e| e.3).sum();
        assert_eq!(
            total(&after) - total(&before),
            want,
            "nothing else moved on {server}"
        );
        let count = |s: &Scrape| {
            s.sum(
                "marketplace_request_duration_seconds_count",
                &[("server", server)],
            )
        };
        assert_eq!(
            count(&after) - count(&before),
            want,
            "one observation per request"
        );
    }
    let get_items = |s: &Scrape, le: &str| {
        s.sum(
            "marketplace_request_duration_seconds_bucket",
            &[("server", "buyer"), ("operation", "GetItem"), ("le", le)],
        )
    };
    assert_eq!(get_items(&after, "+Inf") - get_items(&before, "+Inf"), 10.0);
    assert!(
        get_items(&after, "10") - get_items(&before, "10") == 10.0,
        "no GetItem took 10 s"
    );
    // Every operation's OK series is there before its first call.
    assert!(after.has(
        "marketplace_requests_total",
        &[
            ("server", "buyer"),
            ("operation", "GetSellerRating"),
            ("code", "OK")
        ]
    ));
    assert_eq!(
        after.sum(
            "marketplace_build_info",
            &[("server", "buyer"), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let (stack, _serial) = setup();
    // Some of everything first, so that histograms and labels are filled.
    let (mut buyer, bsid, _, _) = new_buyer();
    let _: Empty = buyer.ok(&B::ClearCart(session(&bsid)));
    let (status, content_type, body) = http(stack, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for metric in [
        "marketplace_requests_total",
        "marketplace_request_duration_seconds_bucket",
        "marketplace_connections",
        "marketplace_connections_accepted_total",
        "marketplace_connections_refused_total",
        "marketplace_connections_closed_total",
        "marketplace_frames_rejected_total",
        "marketplace_jobs_queued",
        "marketplace_workers_busy",
        "marketplace_password_hashes_waiting",
        "marketplace_db_pool_connections",
        "marketplace_db_errors_total",
        "marketplace_db_commits_settled_total",
        "marketplace_sessions_swept_total",
        "marketplace_build_info",
    ] {
        for server in ["seller", "buyer"] {
            assert!(
                body.lines()
                    .any(|l| l.starts_with(metric) && l.contains(&format!("server=\"{server}\""))),
                "{metric} of {server} in\n{body}"
            );
        }
    }
    assert!(body
        .contains(r#"marketplace_purchases_recovered_total{server="buyer",outcome="completed"}"#));
}

#[test]
fn promtool_accepts_the_prometheus_config_and_the_alert_rules_pass_their_tests() {
    let _ = setup();
    let dir = prometheus_dir();
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(promtool())
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_endpoint_answers_while_every_worker_is_busy() {
    let (stack, _serial) = setup();
    let (mut seller, ssid, _) = new_seller();
    let item_id = register(
        &mut seller,
        item(&ssid, "desk", unique_category(), &[], 5.0, 1),
    );
    // A transaction of ours holds the item's row: every price change waits.
    let mut db = postgres::Client::connect(&stack.db().product_url, postgres::NoTls).unwrap();
    let mut hold = db.transaction().unwrap();
    hold.execute(
        "SELECT 1 FROM items WHERE item_id = $1 FOR UPDATE",
        &[&item_id],
    )
    .unwrap();
    let queued = 3;
    let changes: Vec<_> = (0..WORKERS + queued)
        .map(|i| {
            let ssid = ssid.clone();
            std::thread::spawn(move || {
                let mut api = Api::seller();
                let _: Empty = api.ok(&S::ChangeItemPrice(ChangePrice {
                    session_id: ssid,
                    item_id,
                    new_price: 6.0 + i as f64,
                }));
            })
        })
        .collect();
    let seller_gauge = |s: &Scrape, name| s.sum(name, &[("server", "seller")]);
    // Both workers end up waiting on the row, each holding a product_db
    // connection, and the other requests wait for them.
    let product_busy = |s: &Scrape| {
        s.sum(
            "marketplace_db_pool_connections",
            &[("server", "seller"), ("db", "product"), ("state", "busy")],
        )
    };
    let busy = eventually(stack, Duration::from_secs(10), |s| {
        seller_gauge(s, "marketplace_jobs_queued") == queued as f64
            && seller_gauge(s, "marketplace_workers_busy") == WORKERS as f64
            && product_busy(s) >= WORKERS as f64
    });
    assert_eq!(seller_gauge(&busy, "marketplace_workers"), WORKERS as f64);
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _, body) = http(stack, "GET", "/health");
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        assert!(
            Scrape::take(stack).sum("marketplace_workers_busy", &[("server", "seller")])
                == WORKERS as f64
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    hold.rollback().unwrap();
    for change in changes {
        change.join().unwrap();
    }
    eventually(stack, Duration::from_secs(5), |s| {
        seller_gauge(s, "marketplace_workers_busy") == 0.0
            && seller_gauge(s, "marketplace_jobs_queued") == 0.0
    });
}

fn frame(stack: &Stack, header: [u8; 4]) -> Vec<u8> {
    let mut stream = TcpStream::connect(stack.buyer_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&header).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

#[test]
fn connections_and_rejected_frames_are_counted() {
    let (stack, _serial) = setup();
    let buyer = |s: &Scrape, name, labels: &[(&str, &str)]| {
        let mut all = vec![("server", "buyer")];
        all.extend_from_slice(labels);
        s.sum(name, &all)
    };
    let before = Scrape::take(stack);
    let open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(stack.buyer_addr()).unwrap())
        .collect();
    let during = eventually(stack, Duration::from_secs(5), |s| {
        buyer(s, "marketplace_connections", &[])
            == buyer(&before, "marketplace_connections", &[]) + 3.0
    });
    assert_eq!(
        buyer(&during, "marketplace_connections_accepted_total", &[])
            - buyer(&before, "marketplace_connections_accepted_total", &[]),
        3.0
    );
    drop(open);
    assert!(!frame(stack, [0, 0, 0, 0]).is_empty(), "a BAD_FRAME answer");
    assert!(
        !frame(stack, [0xff, 0xff, 0xff, 0xff]).is_empty(),
        "a BAD_FRAME answer"
    );
    let after = eventually(stack, Duration::from_secs(5), |s| {
        buyer(s, "marketplace_connections", &[]) == buyer(&before, "marketplace_connections", &[])
    });
    let rejected = |s: &Scrape, reason| {
        buyer(
            s,
            "marketplace_frames_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected(&after, "empty") - rejected(&before, "empty"), 1.0);
    assert_eq!(
        rejected(&after, "too_large") - rejected(&before, "too_large"),
        1.0
    );
    assert_eq!(rejected(&after, "deadline"), rejected(&before, "deadline"));
    assert_eq!(
        buyer(&after, "marketplace_connections_accepted_total", &[])
            - buyer(&before, "marketplace_connections_accepted_total", &[]),
        5.0
    );
}

#[test]
fn health_answers_and_other_paths_and_methods_are_refused() {
    let (stack, _serial) = setup();
    assert_eq!(http(stack, "GET", "/health").0, 200);
    assert_eq!(http(stack, "GET", "/metrics?x=1").0, 200);
    assert_eq!(http(stack, "GET", "/").0, 404);
    assert_eq!(http(stack, "GET", "/admin").0, 404);
    assert_eq!(http(stack, "POST", "/metrics").0, 405);
}

#[test]
fn database_errors_are_counted_and_the_pool_recovers() {
    let (stack, _serial) = setup();
    let (mut buyer, bsid, _, _) = new_buyer();
    let (mut seller, ssid, _) = new_seller();
    let before = Scrape::take(stack);
    stack.stop_postgres().unwrap();
    let failed: wire::Response<Empty> = buyer.call(&B::DisplayCart(session(&bsid)));
    stack.start_postgres().unwrap();
    assert_eq!(failed.code, Some(ErrorCode::Unavailable));
    let after = Scrape::take(stack);
    let errors = |s: &Scrape| s.sum("marketplace_db_errors_total", &[("server", "buyer")]);
    assert!(errors(&after) > errors(&before), "a database error counted");
    assert_eq!(
        requests(&after, "buyer", "DisplayCart", "UNAVAILABLE")
            - requests(&before, "buyer", "DisplayCart", "UNAVAILABLE"),
        1.0
    );
    // Both servers answer again (each pool replaces its dead connections).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let b: wire::Response<Empty> = buyer.call(&B::DisplayCart(session(&bsid)));
        let s: wire::Response<Empty> = seller.call(&S::GetSellerRating(session(&ssid)));
        if b.code.is_none() && s.code.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still failing: {:?} {:?}",
            b.code,
            s.code
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_session_sweep_is_counted() {
    let (stack, _serial) = setup();
    let before = Scrape::take(stack);
    let (_buyer, _bsid, _, _) = new_buyer();
    let swept = |s: &Scrape| s.sum("marketplace_sessions_swept_total", &[("server", "buyer")]);
    // Expired after the timeout and its grace, swept at the next pass.
    eventually(stack, SESSION_TIMEOUT * 5, |s| swept(s) > swept(&before));
}
