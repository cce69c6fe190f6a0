//! The `marketplace up` command: starts everything, prints one ready line, and
//! on SIGTERM stops everything it started, PostgreSQL included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wire::request::NoFields;
use wire::response::Pong;

fn ping(addr: &str, request: &(impl wire::Operation + serde::Serialize)) -> Pong {
    let mut client =
        client::Client::connect(addr, client::ClientConfig::default()).expect("connect");
    client
        .call_request(request)
        .expect("a response")
        .into_result()
        .expect("pong")
}

/// A running `marketplace up` and its two addresses.
struct Up {
    child: std::process::Child,
    seller: String,
    buyer: String,
    /// The metrics URL, with `--metrics-listen`.
    metrics: Option<String>,
    /// The `urls.env` file the ready line names (with the private cluster).
    urls: Option<String>,
    /// The servers' pids, with `--server-processes`.
    pids: Vec<(String, u32)>,
}

impl Up {
    /// Runs `marketplace up` with `args` (on free ports) and waits for its
    /// ready line; checks both servers answer.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Up {
        let mut child = up_command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn marketplace");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready seller="), "{line:?}");
        let fields: Vec<(&str, &str)> = line
            .split_whitespace()
            .skip(1)
            .map(|f| {
                f.split_once('=')
                    .unwrap_or_else(|| panic!("{f:?} in {line:?}"))
            })
            .collect();
        let all = |key: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .collect()
        };
        let one = |key: &str| {
            all(key)
                .pop()
                .unwrap_or_else(|| panic!("{key} in {line:?}"))
        };
        let pids = ["seller", "buyer"]
            .iter()
            .filter_map(|side| {
                let pid = all(&format!("{side}_pid")).pop()?;
                Some((side.to_string(), pid.parse().expect("a pid")))
            })
            .collect();
        let up = Up {
            child,
            seller: one("seller"),
            buyer: one("buyer"),
            metrics: all("metrics").first().cloned(),
            urls: all("urls").pop(),
            pids,
        };
        up.ping();
        up
    }

    fn ping(&self) {
        assert_eq!(
            ping(&self.seller, &wire::seller::Request::Ping(NoFields {})).server,
            "seller"
        );
        assert_eq!(
            ping(&self.buyer, &wire::buyer::Request::Ping(NoFields {})).server,
            "buyer"
        );
    }

    /// The `marketplace_workers` gauge of each server (seller, buyer), read
    /// from the metrics endpoint.
    fn workers(&self) -> (u64, u64) {
        use std::io::{Read, Write};
        let url = self
            .metrics
            .as_deref()
            .expect("started with --metrics-listen");
        let addr = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("{url}"));
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let gauge = |server: &str| -> u64 {
            let prefix = format!("marketplace_workers{{server=\"{server}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {prefix} in {text}")) as u64
        };
        (gauge("seller"), gauge("buyer"))
    }

    /// SIGTERM; checks a clean exit with both ports closed.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(std::net::TcpStream::connect(&self.seller).is_err());
        assert!(std::net::TcpStream::connect(&self.buyer).is_err());
    }
}

fn up_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_marketplace"));
    command
        .arg("up")
        .args([
            "--seller-listen",
            "127.0.0.1:0",
            "--buyer-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .envs(env.iter().copied());
    command
}

/// Runs `marketplace up` with `args`, checks both servers answer, then stops it.
fn up_and_down(args: &[&str]) {
    Up::start(args, &[]).stop();
}

fn postmaster_alive(data_dir: &Path) -> bool {
    deploy::pg::live_postmaster(&data_dir.join("pgdata/postmaster.pid")).is_some()
}

/// A fresh directory of mode 0700, as a home is, when running as root (the
/// tests that use it are about root); `None` otherwise, with a line saying so.
fn closed_dir_as_root(label: &str) -> Option<deploy::testing::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    if !deploy::pg::is_root() {
        eprintln!("skipped: this test is about running as root");
        return None;
    }
    let dir = deploy::testing::scratch_dir(label);
    std::fs::set_permissions(&*dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Some(dir)
}

#[test]
fn up_runs_everything_and_sigterm_leaves_no_process_and_a_second_run_reuses_the_cluster() {
    let dir = deploy::testing::scratch_dir("up");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let up = Up::start(
        &[
            "--data-dir",
            data_arg,
            "--session-timeout",
            "60",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    // With the private cluster on this machine: 2 workers per core.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(up.workers(), (2 * cores, 2 * cores));
    up.stop();
    assert!(!postmaster_alive(&data), "PostgreSQL left running");
    let started = Instant::now();
    up_and_down(&["--data-dir", data_arg]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!postmaster_alive(&data), "PostgreSQL left running");
}

#[test]
fn up_uses_existing_databases_when_given_their_urls() {
    let stack = deploy::testing::shared_stack(|_| {});
    let db = stack.db();
    let dir = deploy::testing::scratch_dir("external");
    let up = Up::start(
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--customer-db",
            &db.customer_url,
            "--product-db",
            &db.product_url,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    // Databases elsewhere: 16 workers, each mostly waiting on the network.
    assert_eq!(up.workers(), (16, 16));
    // Their URLs are the caller's: nothing is written for them.
    assert_eq!(up.urls, None);
    assert!(!dir.join("urls.env").exists());
    up.stop();
    assert!(
        !dir.join("pgdata").exists(),
        "no private cluster is created when databases are given"
    );
}

#[test]
fn bad_flags_print_usage_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_marketplace"))
        .args(["up", "--session-timeout", "10s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--session-timeout: \"10s\" has a unit; give seconds as a bare number, like 10"
        ),
        "says what is wrong with the value: {stderr}"
    );
    for args in [
        &["up", "--workers", "0"][..],
        &["up", "--customer-db", "x"],
        &["down"],
        &["up", "--nope"],
        &["up", "--commit", "later"],
        &["up", "--session-timeout", "10s"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_marketplace"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: marketplace up"));
    }
}

#[test]
fn a_stack_can_run_each_server_in_a_process_of_its_own() {
    let dir = deploy::testing::scratch_dir("processes");
    let mut config = deploy::StackConfig::local(dir.join("cluster"));
    config.servers = deploy::ServerMode::Processes {
        exe: env!("CARGO_BIN_EXE_marketplace").into(),
        prefix: vec![],
    };
    let stack = deploy::Stack::start(&config).expect("start");
    let pids = stack.server_pids();
    assert_eq!(
        pids.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec!["seller", "buyer"]
    );
    assert_ne!(pids[0].1, std::process::id());
    let seller = stack.seller_addr().to_string();
    let buyer = stack.buyer_addr().to_string();
    assert_eq!(
        ping(&seller, &wire::seller::Request::Ping(NoFields {})).server,
        "seller"
    );
    assert_eq!(
        ping(&buyer, &wire::buyer::Request::Ping(NoFields {})).server,
        "buyer"
    );
    stack.stop();
    for (_, pid) in pids {
        // SAFETY: signal 0 only checks that the process exists.
        assert_ne!(
            unsafe { libc::kill(pid as i32, 0) },
            0,
            "server {pid} still runs"
        );
    }
    drop(stack);
}

#[test]
fn up_with_server_processes_names_their_pids_and_writes_its_databases_urls_privately() {
    use std::os::unix::fs::PermissionsExt;
    let dir = deploy::testing::scratch_dir("up-processes");
    let data = dir.join("data");
    let up = Up::start(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--server-processes",
            "--commit",
            "async",
        ],
        &[],
    );
    let names: Vec<&str> = up.pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["seller", "buyer"]);
    for (_, pid) in &up.pids {
        assert_ne!(*pid, up.child.id(), "each server is a process of its own");
    }
    let urls = up.urls.clone().expect("urls= on the ready line");
    assert_eq!(Path::new(&urls), data.join("urls.env"));
    let mode = std::fs::metadata(&urls).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the URLs may carry a password");
    let text = std::fs::read_to_string(&urls).unwrap();
    for (name, db) in [
        ("CUSTOMER_DB_URL", "customer_db"),
        ("PRODUCT_DB_URL", "product_db"),
    ] {
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect(url);
        let row = client
            .query_one(
                "SELECT current_database() AS db, current_setting('synchronous_commit') AS sc",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>("db"), db);
        assert_eq!(row.get::<_, String>("sc"), "off", "--commit async");
    }
    let pids = up.pids.clone();
    up.stop();
    for (_, pid) in pids {
        // SAFETY: signal 0 only checks that the process exists.
        assert_ne!(
            unsafe { libc::kill(pid as i32, 0) },
            0,
            "server {pid} still runs"
        );
    }
}

#[test]
fn marketplace_seller_and_buyer_are_the_server_binaries() {
    for side in ["seller", "buyer"] {
        let out = Command::new(env!("CARGO_BIN_EXE_marketplace"))
            .args([side, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("usage: {side}_srv")), "{text}");
        assert!(text.contains("CUSTOMER_DB_URL"), "{text}");
        let out = Command::new(env!("CARGO_BIN_EXE_marketplace"))
            .args([side, "--workers", "lots"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn a_second_up_on_the_same_data_dir_refuses_in_one_line_and_the_first_keeps_serving() {
    let dir = deploy::testing::scratch_dir("second-up");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let first = Up::start(&["--data-dir", data_arg], &[]);
    let out = up_command(&["--data-dir", data_arg], &[])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second up must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("in use by process {}", first.child.id())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "never ready");
    first.ping();
    first.stop();
    assert!(!postmaster_alive(&data), "PostgreSQL left running");
}

#[test]
fn a_stale_pid_file_is_recovered_and_a_live_orphaned_postmaster_is_left_alone() {
    let dir = deploy::testing::scratch_dir("stale");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    up_and_down(&["--data-dir", data_arg]);
    // A crash leaves a pid file naming a process that is gone.
    let gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    drop(gone.wait_with_output());
    let pid_file = data.join("pgdata/postmaster.pid");
    std::fs::write(&pid_file, format!("{gone_pid}\n{}\n", data.display())).unwrap();
    up_and_down(&["--data-dir", data_arg]);

    // A `marketplace up` killed outright leaves PostgreSQL running: the next
    // one names it instead of stopping it.
    let mut killed = Up::start(&["--data-dir", data_arg], &[]);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert!(postmaster_alive(&data));
    let out = up_command(&["--data-dir", data_arg], &[])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
    assert!(stderr.contains(&format!("kill {pid}")), "{stderr}");
    assert!(
        postmaster_alive(&data),
        "the running PostgreSQL was not touched"
    );
    // SAFETY: kill(2) on the orphaned postmaster this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while postmaster_alive(&data) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!postmaster_alive(&data));
}

#[test]
fn as_root_up_needs_no_data_dir_and_leaves_a_closed_home_closed() {
    use std::os::unix::fs::PermissionsExt;
    let Some(home) = closed_dir_as_root("root-home") else {
        return;
    };
    let default = Path::new(deploy::pg::ROOT_DATA_DIR);
    let existed = default.exists();
    let home_str = home.to_str().unwrap();
    let up = Up::start(&[], &[("HOME", home_str), ("XDG_DATA_HOME", "")]);
    let status = std::fs::metadata(&*home).unwrap();
    assert_eq!(status.permissions().mode() & 0o777, 0o700, "home untouched");
    assert!(
        default.join("pgdata/PG_VERSION").is_file(),
        "cluster in {default:?}"
    );
    up.stop();
    assert!(!postmaster_alive(default));
    if !existed {
        let _ = std::fs::remove_dir_all(default);
    }
}

#[test]
fn as_root_a_data_dir_postgres_cannot_reach_is_refused_with_the_reason() {
    let Some(home) = closed_dir_as_root("closed") else {
        return;
    };
    let data = home.join("data");
    let out = up_command(&["--data-dir", data.to_str().unwrap()], &[])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot enter"), "{stderr}");
    assert!(stderr.contains(&home.display().to_string()), "{stderr}");
}

#[test]
fn with_log_format_json_every_log_line_is_one_json_object() {
    let dir = deploy::testing::scratch_dir("json-logs");
    let data = dir.join("data");
    let mut child = up_command(
        &["--data-dir", data.to_str().unwrap(), "--log-format", "json"],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn marketplace");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready "), "{line:?}");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "start and stop lines: {stderr}");
    for line in &lines {
        let mut bytes = line.as_bytes().to_vec();
        let value = simd_json::to_owned_value(&mut bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        use simd_json::prelude::*;
        for field in ["time", "component", "level", "message"] {
            assert!(
                value.get(field).and_then(|v| v.as_str()).is_some(),
                "{field} in {line}"
            );
        }
    }
    assert!(stderr.contains("shutting down"), "{stderr}");
}
