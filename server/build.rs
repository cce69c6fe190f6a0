//! Records the commit the binary is built from, for `marketplace_build_info`.

use std::process::Command;

fn main() {
    let commit = std::env::var("MARKETPLACE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MARKETPLACE_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=MARKETPLACE_COMMIT");
    // A new commit moves HEAD's branch; a checkout moves HEAD.
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !dir.is_empty() {
            let dir = std::path::Path::new(&dir);
            println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
            if let Ok(head) = std::fs::read_to_string(dir.join("HEAD")) {
                if let Some(reference) = head.trim().strip_prefix("ref: ") {
                    println!("cargo:rerun-if-changed={}", dir.join(reference).display());
                }
            }
        }
    }
}
