//! What the store's tests share: one private PostgreSQL per test binary
//! (`pgcluster::testing`) with customer_db and product_db migrated, fresh
//! databases for tests of the migrations themselves, and names unique to one
//! test so that tests can share the databases.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;
use store::{DbSettings, Store};

#[allow(unused_imports)]
pub use pgcluster::testing::{unique_category, unique_name as unique};

/// The settings of this binary's customer_db and product_db, migrated on
/// first use.
///
/// # Panics
/// When the cluster cannot start or the migrations fail.
pub fn db() -> &'static DbSettings {
    static DB: OnceLock<DbSettings> = OnceLock::new();
    DB.get_or_init(|| {
        let db = pgcluster::testing::with_shared_cluster(&["customer_db", "product_db"], |c| {
            DbSettings {
                customer_url: c.url("customer_db"),
                product_url: c.url("product_db"),
                ..DbSettings::default()
            }
        });
        Store::open_migrated(&db, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("migrating the test databases: {e}"));
        db
    })
}

/// A new, empty database of this binary's cluster named `name`, and its URL.
pub fn create_database(name: &str) -> String {
    pgcluster::testing::with_shared_cluster(&[name], |c| c.url(name))
}

/// A connection to customer_db, as the tests inspect it.
pub fn customer_db() -> postgres::Client {
    postgres::Client::connect(&db().customer_url, postgres::NoTls).expect("customer_db")
}

/// A connection to product_db, as the tests inspect it.
pub fn product_db() -> postgres::Client {
    postgres::Client::connect(&db().product_url, postgres::NoTls).expect("product_db")
}
