//! One stack per test binary: started on first use in a fresh temporary
//! directory, stopped (PostgreSQL included) and removed when the binary exits.

use crate::pg::Durability;
use crate::stack::{Stack, StackConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SHARED: OnceLock<(Stack, PathBuf)> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some((stack, dir)) = SHARED.get() {
        stack.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
}

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

/// The stack of this test binary, started on first call with `configure`
/// applied to a local, throwaway configuration (later calls get the same stack).
///
/// With `MARKETPLACE_TEST_STACK="SELLER_ADDR BUYER_ADDR CUSTOMER_DB_URL
/// PRODUCT_DB_URL"` the tests run against that stack instead (the containers,
/// see deploy/docker/test.sh), and `configure` is not used.
///
/// # Panics
/// When the stack cannot start: every test of the binary needs it.
pub fn shared_stack(configure: impl FnOnce(&mut StackConfig)) -> &'static Stack {
    &SHARED
        .get_or_init(|| {
            if let Some(stack) = external_stack() {
                return (stack, temp_dir("external"));
            }
            let dir = temp_dir("test");
            let mut config = StackConfig::local(dir.join("cluster"));
            config.durability = Durability::Throwaway;
            configure(&mut config);
            let stack = Stack::start(&config).unwrap_or_else(|e| panic!("starting the stack: {e}"));
            // SAFETY: registering a plain extern "C" function with atexit.
            unsafe {
                libc::atexit(stop_shared);
            }
            (stack, dir)
        })
        .0
}

/// The stack named by `MARKETPLACE_TEST_STACK`, if set.
///
/// # Panics
/// When the variable is set but malformed.
fn external_stack() -> Option<Stack> {
    let spec = std::env::var("MARKETPLACE_TEST_STACK").ok()?;
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [seller, buyer, customer, product] = parts[..] else {
        panic!("MARKETPLACE_TEST_STACK: want SELLER_ADDR BUYER_ADDR CUSTOMER_URL PRODUCT_URL");
    };
    let addr = |a: &str| {
        a.parse()
            .unwrap_or_else(|_| panic!("MARKETPLACE_TEST_STACK: {a:?} is not an address"))
    };
    Some(Stack::attach(
        addr(seller),
        addr(buyer),
        store::DbSettings {
            customer_url: customer.to_owned(),
            product_url: product.to_owned(),
            ..store::DbSettings::default()
        },
    ))
}
