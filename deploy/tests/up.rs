//! The `marketplace up` command: starts everything, prints one ready line, and
//! on SIGTERM stops everything it started, PostgreSQL included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wire::request::NoFields;
use wire::response::Pong;

fn ping(addr: &str, request: &(impl wire::Operation + serde::Serialize)) -> Pong {
    let mut client = net::Client::connect(addr, net::ClientConfig::default()).expect("connect");
    client
        .call(request)
        .expect("a response")
        .into_result()
        .expect("pong")
}

/// Runs `marketplace up` with `args`, checks both servers answer, then stops it.
fn up_and_down(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_marketplace"))
        .arg("up")
        .args([
            "--seller-listen",
            "127.0.0.1:0",
            "--buyer-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn marketplace");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let rest = line
        .trim()
        .strip_prefix("ready seller=")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (seller, buyer) = rest.split_once(" buyer=").expect("two addresses");
    assert_eq!(
        ping(seller, &wire::seller::Request::Ping(NoFields {})).server,
        "seller"
    );
    assert_eq!(
        ping(buyer, &wire::buyer::Request::Ping(NoFields {})).server,
        "buyer"
    );
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(std::net::TcpStream::connect(seller).is_err());
    assert!(std::net::TcpStream::connect(buyer).is_err());
}

fn postmaster_alive(data_dir: &Path) -> bool {
    let pid_file = data_dir.join("pgdata/postmaster.pid");
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let pid: i32 = text
        .lines()
        .next()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

#[test]
fn up_runs_everything_and_sigterm_leaves_no_process_and_a_second_run_reuses_the_cluster() {
    let dir = deploy::testing::scratch_dir("up");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    up_and_down(&["--data-dir", data_arg, "--session-timeout", "60"]);
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
    up_and_down(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--customer-db",
        &db.customer_url,
        "--product-db",
        &db.product_url,
    ]);
    assert!(
        !dir.join("pgdata").exists(),
        "no private cluster is created when databases are given"
    );
}

#[test]
fn bad_flags_print_usage_and_exit_2() {
    for args in [
        &["up", "--workers", "0"][..],
        &["up", "--customer-db", "x"],
        &["down"],
        &["up", "--nope"],
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
