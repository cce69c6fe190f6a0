//! Both CLIs over TLS (`--tls --ca FILE`), as through the proxy's TLS ports:
//! the whole session works, the server must prove the name of `--server`, and
//! a certificate it cannot prove is a clear error, not 30 s of retries.

mod support;

use client::tls::testing::front;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn run(bin: &str, server: &str, args: &[&str], script: &str) -> Run {
    let out = Command::new(bin)
        .arg("--server")
        .arg(server)
        .args(args)
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run the cli");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_whole_session_over_tls_through_a_front_that_names_localhost() {
    let dir = deploy::testing::scratch_dir("cli-tls");
    let sellers = front(stack().seller_addr(), &["localhost"], &dir.join("s"));
    let buyers = front(stack().buyer_addr(), &["localhost"], &dir.join("b"));
    let owner = unique("tls");
    let category = unique_category();
    let ca = sellers.ca.to_str().unwrap();
    let listed = run(
        env!("CARGO_BIN_EXE_seller-cli"),
        &format!("localhost:{}", sellers.addr.port()),
        &["--ca", ca],
        &format!(
            "create-account {owner} pw; login {owner} pw; \
             register Mug --category {category} --price 2 --qty 3 --keywords tea"
        ),
    );
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let id = id_after(&listed.stdout, "item ");
    let user = unique("tlsb");
    let bought = run(
        env!("CARGO_BIN_EXE_buyer-cli"),
        &format!("localhost:{}", buyers.addr.port()),
        &["--tls", "--ca", buyers.ca.to_str().unwrap()],
        &format!(
            "create-account {user} pw; login {user} pw; add {id} 2; \
             buy --yes --name Ann --number 4111111111111111 --expiry 12/40 --cvc 123; history"
        ),
    );
    assert_eq!(bought.code, Some(0), "{}", bought.stderr);
    assert!(bought.stdout.contains("Mug"), "{}", bought.stdout);
}

#[test]
fn a_certificate_the_server_cannot_prove_is_refused_at_once() {
    let dir = deploy::testing::scratch_dir("cli-tls-bad");
    let sellers = front(stack().seller_addr(), &["localhost"], &dir);
    // The certificate names localhost; 127.0.0.1 is not in it.
    let started = Instant::now();
    let wrong = run(
        env!("CARGO_BIN_EXE_seller-cli"),
        &sellers.addr.to_string(),
        &["--ca", sellers.ca.to_str().unwrap()],
        "ping",
    );
    assert_eq!(wrong.code, Some(1), "{}", wrong.stdout);
    assert!(wrong.stderr.contains("certificate"), "{}", wrong.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no reconnect retries for a certificate"
    );
    let no_ca = run(
        env!("CARGO_BIN_EXE_seller-cli"),
        &sellers.addr.to_string(),
        &["--tls"],
        "ping",
    );
    assert_eq!(no_ca.code, Some(2));
    assert!(no_ca.stderr.contains("--ca FILE"), "{}", no_ca.stderr);
    let missing = run(
        env!("CARGO_BIN_EXE_seller-cli"),
        &sellers.addr.to_string(),
        &["--ca", "/nonexistent/ca.pem"],
        "ping",
    );
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("/nonexistent/ca.pem"),
        "{}",
        missing.stderr
    );
}
