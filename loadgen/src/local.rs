//! The local stack loadgen measures when no `--seller`/`--buyer` is given: a
//! `marketplace up` process (found beside loadgen's own binary, or named by
//! `--marketplace`), its servers each a process of their own so that each
//! one's CPU time can be read, stopped with SIGTERM when the runs end.
//!
//! loadgen links no server and no PostgreSQL tooling: what it knows of the
//! stack is what `marketplace up` prints on its ready line and writes to its
//! `urls.env`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long `marketplace up` may take to say it is ready (a first start
/// runs initdb and every migration).
const READY_WITHIN: Duration = Duration::from_secs(180);

/// What to ask of `marketplace up`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `marketplace` binary.
    pub exe: PathBuf,
    /// Its `--data-dir` (the private cluster).
    pub data_dir: PathBuf,
    pub workers: usize,
    /// Commits answered before their WAL is on disk (`--commit async`).
    pub async_commit: bool,
    /// Serve each server's metrics on a free loopback port.
    pub metrics: bool,
}

/// What the ready line said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    pub seller: String,
    pub buyer: String,
    /// Metrics URLs, one per server.
    pub metrics: Vec<String>,
    /// The file of the databases' URLs.
    pub urls: Option<PathBuf>,
    /// The servers' processes, by name.
    pub pids: Vec<(&'static str, u32)>,
}

impl Ready {
    /// Parses `ready seller=ADDR buyer=ADDR [metrics=URL ...] urls=FILE
    /// [seller_pid=N buyer_pid=N]`.
    ///
    /// # Errors
    /// A message quoting the line when it is not a ready line.
    pub fn parse(line: &str) -> Result<Ready, String> {
        let bad = || format!("not a ready line: {line:?}");
        let rest = line.trim().strip_prefix("ready ").ok_or_else(bad)?;
        let mut ready = Ready::default();
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            match key {
                "seller" => ready.seller = value.to_owned(),
                "buyer" => ready.buyer = value.to_owned(),
                "metrics" => ready.metrics.push(value.to_owned()),
                "urls" => ready.urls = Some(PathBuf::from(unescape(value))),
                "seller_pid" | "buyer_pid" => {
                    let pid = value.parse().map_err(|_| bad())?;
                    let name = if key == "seller_pid" {
                        "seller"
                    } else {
                        "buyer"
                    };
                    ready.pids.push((name, pid));
                }
                // Fields a later marketplace may add.
                _ => {}
            }
        }
        if ready.seller.is_empty() || ready.buyer.is_empty() {
            return Err(bad());
        }
        Ok(ready)
    }
}

/// A running `marketplace up`; dropping it stops it (servers and PostgreSQL).
pub struct LocalStack {
    child: Child,
    pub ready: Ready,
}

/// The `marketplace` binary beside `loadgen`'s own, if there is one.
pub fn beside_this_program() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("marketplace");
    candidate.is_file().then_some(candidate)
}

impl LocalStack {
    /// Starts `marketplace up` and waits for its ready line.
    ///
    /// # Errors
    /// A message when it cannot be started, exits, or is not ready in time.
    pub fn start(o: &Options) -> Result<LocalStack, String> {
        let mut command = Command::new(&o.exe);
        command
            .arg("up")
            .arg("--data-dir")
            .arg(&o.data_dir)
            .args(["--seller-listen", "127.0.0.1:0"])
            .args(["--buyer-listen", "127.0.0.1:0"])
            .args(["--workers", &o.workers.to_string()])
            .args(["--commit", if o.async_commit { "async" } else { "sync" }])
            .arg("--server-processes")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if o.metrics {
            command.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        // SAFETY: prctl(2) only, between fork and exec: if loadgen dies
        // without stopping it, the stack is told to stop too.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", o.exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout from marketplace up")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
            // Keep draining: a full pipe must never block the stack.
            let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
        });
        let line = match rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(line)) if !line.is_empty() => line,
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = stop(&mut child);
                return Err(format!(
                    "marketplace up ended before it was ready ({status}; its messages are above)"
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(&mut child);
                return Err(format!(
                    "marketplace up was not ready within {} s",
                    READY_WITHIN.as_secs()
                ));
            }
        };
        let ready = match Ready::parse(&line) {
            Ok(ready) => ready,
            Err(e) => {
                stop(&mut child);
                return Err(e);
            }
        };
        Ok(LocalStack { child, ready })
    }
    /// The product_db URL from the stack's `urls.env`.
    ///
    /// # Errors
    /// When the file is missing or names no product_db.
    pub fn product_db_url(&self) -> Result<String, String> {
        let path = self
            .ready
            .urls
            .as_deref()
            .ok_or("the ready line names no urls file")?;
        url_from(path, "PRODUCT_DB_URL")
    }

    /// Stops the stack and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        stop(&mut self.child);
    }
}

/// How long `marketplace up` gets to stop what it started (its servers, then
/// PostgreSQL) after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// SIGTERM, so that the stack stops its servers and PostgreSQL itself (a
/// SIGKILL would leave PostgreSQL running on the data directory), then
/// SIGKILL if it has not ended within [`STOP_WITHIN`]. Returns how it ended.
fn stop(child: &mut Child) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + STOP_WITHIN;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                return child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| format!("{s}, killed"));
            }
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A ready line's value as printed (`%20` for a space, `%25` for `%`).
fn unescape(value: &str) -> String {
    value.replace("%20", " ").replace("%25", "%")
}

/// The value of `name` in a `NAME=VALUE` file.
fn url_from(path: &Path, name: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} names no {name}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_line_gives_addresses_metrics_urls_and_pids() {
        let r = Ready::parse(
            "ready seller=127.0.0.1:5001 buyer=127.0.0.1:6001 \
             metrics=http://127.0.0.1:9101/metrics metrics=http://127.0.0.1:9102/metrics \
             urls=/tmp/x/urls.env seller_pid=10 buyer_pid=11 later=field\n",
        )
        .unwrap();
        assert_eq!(r.seller, "127.0.0.1:5001");
        assert_eq!(r.buyer, "127.0.0.1:6001");
        assert_eq!(r.metrics.len(), 2);
        assert_eq!(r.urls.as_deref(), Some(Path::new("/tmp/x/urls.env")));
        assert_eq!(r.pids, vec![("seller", 10), ("buyer", 11)]);
        let spaced =
            Ready::parse("ready seller=a:1 buyer=b:2 urls=/tmp/my%20data%2520/urls.env").unwrap();
        assert_eq!(
            spaced.urls.as_deref(),
            Some(Path::new("/tmp/my data%20/urls.env"))
        );
        let plain = Ready::parse("ready seller=a:1 buyer=b:2").unwrap();
        assert!(plain.metrics.is_empty() && plain.pids.is_empty());
        for bad in [
            "",
            "listening on 5001",
            "ready seller=a:1",
            "ready seller_pid=x",
        ] {
            assert!(Ready::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_url_is_read_from_its_line() {
        let path = std::env::temp_dir().join(format!("urls-{}.env", std::process::id()));
        std::fs::write(
            &path,
            "CUSTOMER_DB_URL=postgres://c\nPRODUCT_DB_URL=postgres://p\n",
        )
        .unwrap();
        assert_eq!(url_from(&path, "PRODUCT_DB_URL").unwrap(), "postgres://p");
        assert!(url_from(&path, "PAYMENTS_DB_URL").is_err());
        let _ = std::fs::remove_file(&path);
    }
}
