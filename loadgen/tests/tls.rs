//! loadgen through TLS (`--ca FILE`), as against the proxy's TLS ports: the
//! run completes with every call answered.

use simd_json::prelude::*;
use std::process::Command;

#[test]
fn a_run_over_tls_completes_without_an_unexpected_error() {
    let stack = deploy::testing::shared_stack(|_| {});
    let dir = deploy::testing::scratch_dir("loadgen-tls");
    let sellers = client::tls::testing::front(stack.seller_addr(), &["localhost"], &dir.join("s"));
    let buyers = client::tls::testing::front(stack.buyer_addr(), &["localhost"], &dir.join("b"));
    let out = dir.join("tls.json");
    let run = |ca: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .arg("--seller")
            .arg(format!("localhost:{}", sellers.addr.port()))
            .arg("--buyer")
            .arg(format!("localhost:{}", buyers.addr.port()))
            .arg("--ca")
            .arg(ca)
            .args([
                "--scenario",
                "2x2",
                "--ops",
                "30",
                "--runs",
                "1",
                "--no-metrics",
                "--out",
            ])
            .arg(&out)
            .output()
            .expect("run loadgen")
    };
    // Both fronts were made with their own CA: the buyers' is not trusted.
    let untrusted = run(&sellers.ca);
    assert!(!untrusted.status.success());
    let stdout = String::from_utf8_lossy(&untrusted.stdout);
    assert!(stdout.contains("certificate"), "{stdout}");
    let both = dir.join("both.pem");
    let pem = [
        std::fs::read_to_string(&sellers.ca).unwrap(),
        std::fs::read_to_string(&buyers.ca).unwrap(),
    ]
    .concat();
    std::fs::write(&both, pem).unwrap();
    let run = run(&both);
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let mut json = std::fs::read(&out).expect("the report");
    let report = simd_json::to_owned_value(&mut json).expect("JSON");
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["unexpected_errors"].as_u64(), Some(0));
    assert_eq!(
        scenario["all_runs"]["buyer"]["all"]["count"].as_u64(),
        Some(60),
        "2 buyers x 30 calls"
    );
}
