//! One stack per test binary: started on first use in a fresh temporary
//! directory, stopped (PostgreSQL included) and removed when the binary exits.
//! The scratch directories and unique names are `pgcluster::testing`'s,
//! re-exported.

pub use pgcluster::testing::{scratch_dir, temp_dir, unique_category, unique_name, TempDir};

use crate::pg::Durability;
use crate::stack::{Stack, StackConfig};
use std::path::PathBuf;
use std::sync::OnceLock;

static SHARED: OnceLock<(Stack, PathBuf)> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some((stack, dir)) = SHARED.get() {
        stack.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
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
