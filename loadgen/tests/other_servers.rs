//! loadgen against a server of the same wire format written for the
//! predecessor's clients: errors without a `code`, results missing a field
//! (here: RegisterItemForSale without `item_id`). The run ends with a report
//! that counts such replies by kind; `--tolerate` makes them expected.

use simd_json::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

/// Answers CreateAccount and Login like a real server, RegisterItemForSale
/// without `item_id`, and everything else with an error that has no `code`.
fn predecessor_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    loop {
        let mut header = [0u8; 4];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body);
        let reply = if text.contains("\"CreateAccount\"") {
            r#"{"status":"OK","message":"created","seller_id":1,"buyer_id":1}"#
        } else if text.contains("\"Login\"") {
            r#"{"status":"OK","message":"hi","session_id":"s-1","seller_id":1,"buyer_id":1}"#
        } else if text.contains("\"RegisterItemForSale\"") {
            r#"{"status":"OK","message":"registered","category":1}"#
        } else {
            r#"{"status":"Error","message":"not supported"}"#
        };
        let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(reply.as_bytes());
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

fn run(tolerate: bool) -> (std::process::Output, simd_json::OwnedValue) {
    let server = predecessor_server().to_string();
    let dir = std::env::temp_dir().join(format!("loadgen-other-{}-{tolerate}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("report.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .args(["--seller", &server, "--buyer", &server])
        .args(["--scenario", "1x1", "--runs", "1", "--ops", "30"])
        .arg("--out")
        .arg(&out);
    if tolerate {
        command.arg("--tolerate");
    }
    let output = command.output().expect("run loadgen");

    let mut json = std::fs::read(&out).expect("a report, whatever the replies");
    let report = simd_json::to_owned_value(&mut json).expect("the report is JSON");
    let _ = std::fs::remove_dir_all(&dir);
    (output, report)
}

/// The count at `path` of the report's all-runs figures (0 when absent).
fn count(report: &simd_json::OwnedValue, path: &[&str]) -> u64 {
    let mut v = report
        .get("scenarios")
        .and_then(|s| s.get_idx(0))
        .and_then(|s| s.get("all_runs"));
    for key in path {
        v = v.and_then(|v| v.get(*key));
    }
    v.and_then(|v| v.as_u64()).unwrap_or(0)
}

#[test]
fn malformed_replies_are_counted_by_kind_and_the_run_still_reports() {
    let (output, report) = run(false);
    assert_eq!(
        output.status.code(),
        Some(1),
        "unexpected errors fail the run"
    );
    assert!(
        count(
            &report,
            &[
                "seller",
                "RegisterItemForSale",
                "unexpected",
                "MISSING_FIELD"
            ]
        ) > 0,
        "{report:?}"
    );
    assert!(count(&report, &["seller", "all", "unexpected", "NO_CODE"]) > 0);
    assert!(count(&report, &["buyer", "all", "unexpected", "NO_CODE"]) > 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("p99.9"), "the table is printed: {stdout}");
}

#[test]
fn with_tolerate_malformed_replies_are_expected_and_the_run_passes() {
    let (output, report) = run(true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let unexpected = report
        .get("scenarios")
        .and_then(|s| s.get_idx(0))
        .and_then(|s| s.get("unexpected_errors"))
        .and_then(|v| v.as_u64());
    assert_eq!(unexpected, Some(0));
    assert!(
        count(
            &report,
            &["seller", "RegisterItemForSale", "errors", "MISSING_FIELD"]
        ) > 0,
        "{report:?}"
    );
    assert!(count(&report, &["buyer", "all", "errors", "NO_CODE"]) > 0);
}
