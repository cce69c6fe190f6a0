//! Which server the CLI talks to: one never reached is reported at once (with
//! how to start one), the other side's server is named as such before any
//! command is sent to it, and `quit` does not wait for a server that went
//! away.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn a_server_never_reached_is_reported_at_once_with_how_to_start_one() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for bin in [
        env!("CARGO_BIN_EXE_buyer-cli"),
        env!("CARGO_BIN_EXE_seller-cli"),
    ] {
        let started = Instant::now();
        let out = Command::new(bin)
            .args(["--server", &format!("127.0.0.1:{port}"), "-c", "ping"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}: {stderr}",
            started.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot reach the"), "{stderr}");
        assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
        assert!(stderr.contains("deploy/up.sh starts one"), "{stderr}");
        assert!(!stderr.contains("retrying"), "no retries: {stderr}");
    }
}

#[test]
fn the_other_sides_server_is_named_before_any_command_reaches_it() {
    let stack = stack();
    let (seller, buyer) = (stack.seller_addr(), stack.buyer_addr());
    let user = unique("wrong");
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        seller,
        &[],
        &format!("login {user} pw\n"),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{seller} is a seller server; the buyer server is usually on 6001"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("password"), "{}", run.stderr);
    let run = piped(env!("CARGO_BIN_EXE_seller-cli"), buyer, &[], "ping\n");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{buyer} is a buyer server; the seller server is usually on 5001"
        )),
        "{}",
        run.stderr
    );
    // The right server is taken without a word about it.
    let run = piped(env!("CARGO_BIN_EXE_buyer-cli"), buyer, &[], "ping\n");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn quit_does_not_wait_for_a_server_that_went_away() {
    let relay = Relay::start(stack().buyer_addr());
    let user = unique("quit");
    let mut child = spawn_cli(env!("CARGO_BIN_EXE_buyer-cli"), relay.addr);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "create-account {user} pw\nlogin {user} pw").unwrap();
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
    }
    assert!(line.contains("logged in as"), "{line}");
    relay.cut();
    let started = Instant::now();
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "quit waited {:?}: {stderr}",
        started.elapsed()
    );
    assert!(
        stderr.contains("your session ends by itself"),
        "says why it could not log out: {stderr}"
    );
}
