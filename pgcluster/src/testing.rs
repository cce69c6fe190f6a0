//! For tests: one throwaway cluster per test binary ([`shared_cluster`]),
//! scratch directories removed when done, and names unique to one test so
//! that tests can share a database.

use crate::{Cluster, Durability};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A test's scratch directory, removed when dropped (a failing test's too).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory for one test, removed when the guard drops.
///
/// # Panics
/// When it cannot be created (a test set-up failure).
pub fn scratch_dir(label: &str) -> TempDir {
    TempDir(temp_dir(label))
}

/// A fresh directory under the system temp dir, unique to this process; the
/// caller removes it.
///
/// # Panics
/// When it cannot be created (a test set-up failure).
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "marketplace-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// A name no other test (or run) uses, at most 32 characters of letters,
/// digits and `x` (a username, an item name or a keyword as any side takes
/// it): `prefix`, this process's id, the clock's nanoseconds and a counter.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}x{nanos}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .chars()
    .take(32)
    .collect()
}

/// An item category no other test of this process uses.
pub fn unique_category() -> i64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = i64::from(std::process::id() % 100_000);
    1_000_000 + pid * 10_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 10_000) as i64
}

struct Shared {
    cluster: Cluster,
    dir: PathBuf,
}

static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(shared) = SHARED.get() {
        let shared = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = shared.cluster.stop();
        let _ = std::fs::remove_dir_all(&shared.dir);
    }
}

/// This test binary's cluster (fsync off: nothing in it outlives the
/// binary), started on first call in a fresh temporary directory and stopped
/// and removed when the binary exits; `f` gets it with the databases
/// `databases` created (each once).
///
/// # Panics
/// When it cannot start or a database cannot be created: every test that
/// asks needs them.
pub fn with_shared_cluster<T>(databases: &[&str], f: impl FnOnce(&Cluster) -> T) -> T {
    let shared = SHARED.get_or_init(|| {
        let dir = temp_dir("pg");
        let mut cluster = Cluster::init(&dir.join("cluster"), Durability::Throwaway)
            .unwrap_or_else(|e| panic!("a private PostgreSQL cluster: {e}"));
        cluster
            .start(0)
            .unwrap_or_else(|e| panic!("starting the private cluster: {e}"));
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe {
            libc::atexit(stop_shared);
        }
        Mutex::new(Shared { cluster, dir })
    });
    let shared = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for name in databases {
        shared
            .cluster
            .create_database(name)
            .unwrap_or_else(|e| panic!("database {name}: {e}"));
    }
    f(&shared.cluster)
}
