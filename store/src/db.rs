//! The [`Store`] facade: both databases, and what a server asks of them as a
//! whole (opening and migrating them, connections, the metrics). The use
//! cases add their own methods to [`Store`] in their modules.
//!
//! The parts it is built from live apart, each depending only on those
//! below it: the connection and its statements (`conn.rs`), the pools
//! (`pool.rs`), product_db's primary/standby routing (`routing.rs`, over
//! `replica.rs`) and the migration runner ([`crate::migrate`], which takes a
//! connection). This module re-exports their public types under `db::`.

use crate::pool::{pool, Db};
use crate::routing::ProductDb;
use crate::{migrate, DbSettings, StoreError};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::conn::{Conn, Params};
pub use crate::pool::{Manager, Pooled};
pub use crate::stats::{DbStats, SettledCounts};

/// Both databases, and the session timeout every use case applies.
#[derive(Clone)]
pub struct Store {
    customer: Db,
    product: ProductDb,
    session_timeout_secs: f64,
}

impl Store {
    /// Creates the pools; connects lazily.
    ///
    /// # Errors
    /// `Internal` for a malformed URL.
    pub fn open(settings: &DbSettings) -> Result<Store, StoreError> {
        // One failure count for both pools: a connection failure on either
        // database has every pooled connection checked once before its next use.
        let failures = Arc::new(AtomicU64::new(0));
        Ok(Store {
            customer: pool(&settings.customer_url, settings, &failures, None)?,
            product: ProductDb::open(settings, &failures)?,
            session_timeout_secs: settings.session_timeout.as_secs_f64(),
        })
    }

    /// Opens the pools and migrates both databases, waiting up to `wait` for
    /// them to accept connections (a container may start before its database).
    ///
    /// # Errors
    /// `Unavailable` when a database is still unreachable after `wait`; any
    /// other error at once.
    pub fn open_migrated(settings: &DbSettings, wait: Duration) -> Result<Store, StoreError> {
        let store = Store::open(settings)?;
        let deadline = Instant::now() + wait;
        loop {
            match store.migrate() {
                Ok(()) => return Ok(store),
                // A node of a cluster mid-failover may still be read-only.
                Err(StoreError::Unavailable(_) | StoreError::ReadOnly(_))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies pending migrations to both databases.
    ///
    /// # Errors
    /// As [`migrate::apply`].
    pub fn migrate(&self) -> Result<(), StoreError> {
        migrate::apply(&mut *self.customer()?, migrate::CUSTOMER)?;
        migrate::apply(&mut *self.product()?, migrate::PRODUCT)?;
        Ok(())
    }

    /// A customer_db connection.
    ///
    /// # Errors
    /// `Unavailable` when none can be had within the connect timeout.
    pub(crate) fn customer(&self) -> Result<Pooled, StoreError> {
        self.customer.get()
    }

    /// A product_db connection (to the primary).
    ///
    /// # Errors
    /// `Unavailable` when none can be had within the connect timeout.
    pub(crate) fn product(&self) -> Result<Pooled, StoreError> {
        self.product.primary()
    }

    /// Runs `read` on product_db's standby when there is one that keeps up,
    /// else (or when it fails there) on the primary. Only for reads that may
    /// lag the primary by the standby's bound.
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached either.
    pub(crate) fn read_product<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.product.read(read)
    }

    /// [`Store::read_product`], asking the primary again when the standby's
    /// answer is `stale` (e.g. no such item: it may be too new for the
    /// standby, and a buyer who just saw it in a search must find it).
    pub(crate) fn read_product_unless<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        stale: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.product.read_unless(read, stale)
    }

    /// Runs `read` on product_db's primary; with a standby in use, an answer
    /// that is `missing` something (no such item) is asked again for a
    /// moment before it stands, since the standby may have shown the buyer a
    /// commit the primary's snapshots do not include yet.
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached.
    pub(crate) fn read_primary_settled<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        missing: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.product.read_primary_settled(read, missing)
    }

    /// Runs `attempt` on product_db's primary, again for a moment while its
    /// result is `missing` something and a standby is in use (see
    /// [`Store::read_primary_settled`]).
    pub(crate) fn settled<T>(
        &self,
        attempt: impl Fn() -> Result<T, StoreError>,
        missing: impl Fn(&Result<T, StoreError>) -> bool,
    ) -> Result<T, StoreError> {
        self.product.settled(attempt, missing)
    }

    /// The session timeout in seconds, as every session statement takes it.
    pub(crate) fn timeout(&self) -> f64 {
        self.session_timeout_secs
    }

    /// What product_db's standby was last seen doing (None without one, or
    /// before its first look).
    pub fn replica_health(&self) -> Option<crate::replica::Health> {
        self.product.replica_health()
    }

    /// Reads served by product_db's standby so far (0 without one).
    pub fn replica_reads(&self) -> u64 {
        self.product.replica_reads()
    }

    /// Each pool's connections and the errors met on its database so far:
    /// connections that failed or could not be had, and statements that
    /// failed other than by a constraint (a taken username is not an error);
    /// and its keyed writes settled after their connection broke.
    pub fn db_stats(&self) -> Vec<DbStats> {
        std::iter::once(self.customer.stats("customer"))
            .chain(self.product.stats())
            .collect()
    }
}
