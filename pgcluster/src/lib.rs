//! A private PostgreSQL cluster: created with initdb in a data directory, started
//! and stopped with pg_ctl, listening on loopback only.
//!
//! Its own crate so that what needs a real PostgreSQL and nothing else (the
//! store's tests) gets one without the servers, and what must not start one
//! (the client tools) never links it. It knows no marketplace database: the
//! caller creates those and runs its migrations.

pub mod testing;

use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The install hint printed when no server binaries are found.
pub const INSTALL_HINT: &str =
    "install the PostgreSQL server: sudo apt-get install -y postgresql (Debian/Ubuntu)";

/// Finds the directory of `initdb`, `pg_ctl` and `postgres`: `$PG_BIN_DIR`, the
/// newest `/usr/lib/postgresql/*/bin`, `pg_config --bindir`, then `PATH`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
        if has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| has_tools(d))
}

/// As root, installs the distribution's PostgreSQL server with apt-get.
///
/// # Errors
/// When not root, without apt-get, or when the install fails.
pub fn install_server() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "PostgreSQL server binaries not found; {INSTALL_HINT}"
        ));
    }
    eprintln!("PostgreSQL server binaries not found; installing the postgresql package");
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    let installed = ok(Command::new("apt-get").args(["update", "-qq"]))
        && ok(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"));
    if !installed {
        return Err(format!("installing PostgreSQL failed; {INSTALL_HINT}"));
    }
    find_bin_dir()
        .ok_or_else(|| format!("PostgreSQL still not found after installing; {INSTALL_HINT}"))
}

/// The uid and gid of the `postgres` user, when we run as root (initdb and the
/// server refuse to run as root).
fn run_as() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated name; the returned record is read at once,
    // before any other getpw* call could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(
            "running as root needs a `postgres` user to run PostgreSQL as \
             (the postgresql package creates it)"
                .into(),
        );
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            if !entry.file_type().map_err(|e| e.to_string())?.is_symlink() {
                chown_tree(&entry.path(), uid, gid)?;
            }
        }
    }
    Ok(())
}

/// The pid of a live PostgreSQL postmaster named by `pid_file`, if any (a pid
/// file whose process is gone, or is not PostgreSQL, is stale).
pub fn live_postmaster(pid_file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "postgres" || comm.trim() == "postmaster").then_some(pid)
}

/// Checks that user `uid` (group `gid`) can enter every directory above `dir`:
/// PostgreSQL runs as that user and must reach its data directory.
fn reachable_by(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        let mode = meta.mode();
        let enters = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !enters {
            return Err(format!(
                "PostgreSQL runs as user postgres, which cannot enter {} (mode {:o}); \
                 choose a --data-dir it can reach, such as {}",
                ancestor.display(),
                mode & 0o7777,
                ROOT_DATA_DIR
            ));
        }
    }
    Ok(())
}

/// The default data directory when running as root: outside any home, so no
/// home directory is opened to the `postgres` user.
pub const ROOT_DATA_DIR: &str = "/var/lib/marketplace";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An exclusive hold on a data directory for one `marketplace up` (or stack):
/// a second one is refused instead of touching the first one's cluster. The
/// kernel releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock of `dir` (created if missing).
    ///
    /// # Errors
    /// A one-line message naming the process that holds it.
    pub fn take(dir: &Path) -> Result<DirLock, String> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::io::AsRawFd;
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join("marketplace.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            return Err(format!(
                "{} is in use by {who} (another `marketplace up`); stop it first, or \
                 pass --data-dir DIR for a separate cluster",
                dir.display()
            ));
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

/// A free TCP port on loopback (free when asked; the cluster retries if taken).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// How often autovacuum looks at each database (PostgreSQL's default is 1min).
/// The search index churns: a listing inserts a row per subset of the item's
/// keywords (up to 31) and its sell-out deletes them, so under load its
/// index fills with dead entries that every search, sell-out and vote then
/// steps over until a vacuum removes them. Looking every 5 s keeps it small:
/// durable 100x100 steady throughput x1.16 against 1min in alternated runs
/// (docs/BENCHMARKS.md, "Autovacuum"); 1 s measured no better. The
/// containers' PostgreSQL runs with the same (deploy/docker/postgres-entrypoint.sh).
pub const AUTOVACUUM_NAPTIME: &str = "5s";

/// How a cluster is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: a commit is acknowledged once it is on disk.
    Durable,
    /// `synchronous_commit=off`: commits are acknowledged before their WAL is
    /// flushed. A crash of PostgreSQL or the OS can lose the last ~0.6 s of
    /// acknowledged commits, never part of one; fsync stays on, so the
    /// database stays consistent. For the load generator's rig.
    AsyncCommit,
    /// fsync off: for throwaway test clusters only.
    Throwaway,
}

/// A cluster in a data directory.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    durability: Durability,
}

impl Cluster {
    /// Creates the cluster in `dir` unless one is already there (then reuses it).
    ///
    /// # Errors
    /// When the binaries are missing (with the install hint) or initdb fails.
    pub fn init(dir: &Path, durability: Durability) -> Result<Cluster, String> {
        let bin = match find_bin_dir() {
            Some(bin) => bin,
            None => install_server()?,
        };
        let owner = run_as()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some((uid, gid)) = owner {
            reachable_by(&dir, uid, gid)?;
        }
        let cluster = Cluster {
            bin,
            dir,
            port: 0,
            owner,
            durability,
        };
        let data = cluster.data();
        if !data.join("PG_VERSION").is_file() {
            if let Some((uid, gid)) = owner {
                chown_tree(&cluster.dir, uid, gid)?;
            }
            let mut initdb = cluster.command("initdb");
            initdb.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]);
            if durability == Durability::Throwaway {
                initdb.arg("--no-sync");
            }
            cluster.run(&mut initdb, "initdb")?;
        }
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        if let Some((uid, gid)) = self.owner {
            // std also drops root's supplementary groups when switching uid.
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, command: &mut Command, what: &str) -> Result<(), String> {
        let out = command
            .output()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts the server on `port` (0: a free one), waiting until it accepts
    /// connections. A stale server left running from this directory is stopped
    /// first.
    ///
    /// # Errors
    /// When pg_ctl fails (the log is in `<dir>/postgres.log`).
    pub fn start(&mut self, port: u16) -> Result<(), String> {
        let pid_file = self.data().join("postmaster.pid");
        if let Some(pid) = live_postmaster(&pid_file) {
            return Err(format!(
                "PostgreSQL (pid {pid}) is already running on {}; it was left by a \
                 `marketplace up` that did not stop cleanly: stop it with `kill {pid}` and \
                 start again",
                self.data().display()
            ));
        }
        // A stale pid file of a crashed run: nothing runs there any more.
        if pid_file.exists() {
            std::fs::remove_file(&pid_file)
                .map_err(|e| format!("remove stale {}: {e}", pid_file.display()))?;
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = if port == 0 { free_port()? } else { port };
            let mut options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200 \
                 -c autovacuum_naptime={AUTOVACUUM_NAPTIME}",
                self.dir.display()
            );
            match self.durability {
                Durability::Durable => {}
                Durability::AsyncCommit => options.push_str(" -c synchronous_commit=off"),
                Durability::Throwaway => options
                    .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"),
            }
            let result = self.run(
                self.command("pg_ctl")
                    .arg("-D")
                    .arg(self.data())
                    .arg("-l")
                    .arg(self.dir.join("postgres.log"))
                    .args(["-w", "-t", "60", "-o", &options, "start"]),
                "pg_ctl start",
            );
            match result {
                Ok(()) => {
                    self.port = port;
                    return self.wait_ready(Duration::from_secs(30));
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "{last}\nsee {}",
            self.dir.join("postgres.log").display()
        ))
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            match postgres::Client::connect(&self.url("postgres"), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("PostgreSQL did not accept connections: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    ///
    /// # Errors
    /// When pg_ctl fails.
    pub fn stop(&self) -> Result<(), String> {
        self.run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        )
    }

    /// The port it listens on (after `start`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory, log and socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` unless it exists.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .map_err(|e| format!("connect: {e}"))?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| e.to_string())?
            .is_some();
        if !exists {
            // Identifiers cannot be bound parameters; `name` is ours, and quoted.
            let quoted = name.replace('"', "\"\"");
            client
                .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
                .map_err(|e| format!("create database {name}: {e}"))?;
        }
        Ok(())
    }
}
