//! loadgen checks the servers it is given before any client starts: a seller
//! address that answers as a buyer server (or the reverse) is refused with
//! what to do, instead of every call failing with MISSING_FIELD.

use std::process::Command;

#[test]
fn swapped_seller_and_buyer_addresses_are_refused_up_front() {
    let stack = deploy::testing::shared_stack(|_| {});
    let (seller, buyer) = (
        stack.seller_addr().to_string(),
        stack.buyer_addr().to_string(),
    );
    let dir = deploy::testing::scratch_dir("loadgen-swapped");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--seller", &buyer, "--buyer", &seller])
        .args(["--scenario", "1x1", "--runs", "1", "--ops", "3"])
        .arg("--out")
        .arg(dir.join("report.json"))
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--seller {buyer} is a buyer server; swap --seller and --buyer?"
        )),
        "{stderr}"
    );
    assert!(!dir.join("report.json").exists(), "no run was made");
}
