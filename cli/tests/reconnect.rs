//! The CLI reconnects (and says so) when its server restarts between two
//! commands, and its session survives because the servers are stateless. In a
//! binary of its own: restarting the servers would disturb other tests.

mod support;

use std::io::{BufRead, BufReader, Write};
use support::*;

#[test]
fn the_cli_reconnects_after_a_server_restart_and_keeps_its_session() {
    let stack = stack();
    let user = unique("rec");
    let mut child = spawn_cli(env!("CARGO_BIN_EXE_buyer-cli"), stack.buyer_addr());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(stdin, "create-account {user} pw\nlogin {user} pw").unwrap();
    for _ in 0..2 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
    }
    assert!(line.contains("logged in as"), "{line}");
    stack.stop_servers();
    stack.start_servers().expect("restart");
    writeln!(stdin, "cart").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        rest.contains("(the cart is empty)"),
        "the session survived: {rest} {errors}"
    );
    assert!(errors.contains("connection lost, retrying 1/"), "{errors}");
    assert_eq!(out.status.code(), Some(0), "{errors}");
}
