//! A CLI whose session expires says so, drops it and shows the logged-out state.

mod support;

use std::time::Duration;
use support::*;

#[test]
fn an_expired_session_is_reported_and_dropped() {
    let stack = deploy::testing::shared_stack(|c| c.session_timeout = Duration::from_secs(1));
    let user = unique("exp");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_seller-cli"))
        .args(["--server", &stack.seller_addr().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "create-account {user} pw\nlogin {user} pw\nitems").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    writeln!(stdin, "items\nitems").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].contains("your session has expired; log in again"),
        "{errors}"
    );
    assert!(
        lines[1].contains("not logged in"),
        "the session was dropped: {errors}"
    );
}
