//! product_db's primary and its standby: which one a read goes to, and the
//! short wait for the primary to show what the standby already showed.
//!
//! Reads that may lag a little (searches, single items) go to the standby
//! while it keeps up (`replica.rs` watches it) and fall back to the primary;
//! everything else uses the primary alone. Routing sits between the `Store`
//! facade and the pools: the facade holds a [`ProductDb`], and neither the
//! pools nor the standby know of either.

use crate::pool::{pool, Db, Pooled};
use crate::replica::{Health, Replica};
use crate::stats::DbStats;
use crate::{DbSettings, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The pauses of [`ProductDb::settled`]: 150 ms in all, in a case that needs
/// microseconds unless the machine is starved for CPU.
const SETTLE_PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
];

/// product_db's primary, and its streaming standby when there is one.
#[derive(Clone)]
pub(crate) struct ProductDb {
    primary: Db,
    /// For reads that may lag a little.
    replica: Option<Replica>,
}

impl ProductDb {
    /// The primary's pool (sharing `failures` with customer_db's) and the
    /// standby's, if the settings name one; connects lazily.
    ///
    /// # Errors
    /// `Internal` for a malformed URL.
    pub(crate) fn open(
        settings: &DbSettings,
        failures: &Arc<AtomicU64>,
    ) -> Result<ProductDb, StoreError> {
        Ok(ProductDb {
            // A search statement (store/src/search.rs) is planned once per
            // connection: left to choose, PostgreSQL plans it again at each
            // call (milliseconds for five keywords) because the generic
            // plan's guess of LIMIT $2 + $3 costs more than the custom one's.
            primary: pool(
                &settings.product_url,
                settings,
                failures,
                Some("-c plan_cache_mode=force_generic_plan"),
            )?,
            replica: settings
                .product_replica_url
                .as_deref()
                .map(|url| Replica::open(url, settings))
                .transpose()?,
        })
    }

    /// A connection to the primary.
    ///
    /// # Errors
    /// `Unavailable` when none can be had within the connect timeout.
    pub(crate) fn primary(&self) -> Result<Pooled, StoreError> {
        self.primary.get()
    }

    /// Runs `read` on the standby when there is one that keeps up, else
    /// (or when it fails there) on the primary. Only for reads that may lag
    /// the primary by the standby's bound.
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached either.
    pub(crate) fn read<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_unless(read, |_| false)
    }

    /// [`ProductDb::read`], asking the primary again when the standby's
    /// answer is `stale` (e.g. no such item: it may be too new for the
    /// standby, and a buyer who just saw it in a search must find it).
    pub(crate) fn read_unless<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        stale: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        match self.replica.as_ref().and_then(|r| r.read(&read)) {
            Some(Ok(value)) if stale(&value) => {}
            Some(result) => return result,
            None => {}
        }
        self.read_primary_settled(read, stale)
    }

    /// Runs `read` on the primary; with a standby in use, an answer that is
    /// `missing` something (no such item) is asked again for a moment before
    /// it stands. A commit becomes visible on the primary only after its WAL
    /// is flushed, and a standby may replay and show that WAL first: a buyer
    /// can find an item in a search served by the standby a few milliseconds
    /// before the primary's new snapshots include it (longer when the
    /// committing backend waits for a CPU).
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached.
    pub(crate) fn read_primary_settled<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        missing: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.settled(
            || read(&mut self.primary()?),
            |result| matches!(result, Ok(value) if missing(value)),
        )
    }

    /// Runs `attempt` (work on the primary), again for a moment while its
    /// result is `missing` something and a standby is in use (see
    /// [`ProductDb::read_primary_settled`]).
    pub(crate) fn settled<T>(
        &self,
        attempt: impl Fn() -> Result<T, StoreError>,
        missing: impl Fn(&Result<T, StoreError>) -> bool,
    ) -> Result<T, StoreError> {
        let mut result = attempt();
        if self.replica.is_none() {
            return result;
        }
        for pause in SETTLE_PAUSES {
            if !missing(&result) {
                break;
            }
            std::thread::sleep(pause);
            result = attempt();
        }
        result
    }

    /// What the standby was last seen doing (None without one, or before
    /// its first look).
    pub(crate) fn replica_health(&self) -> Option<Health> {
        self.replica.as_ref().and_then(Replica::health)
    }

    /// Reads served by the standby so far (0 without one).
    pub(crate) fn replica_reads(&self) -> u64 {
        self.replica
            .as_ref()
            .map_or(0, |r| r.reads.load(Ordering::Relaxed))
    }

    /// The primary's pool and the standby's, for the metrics.
    pub(crate) fn stats(&self) -> impl Iterator<Item = DbStats> + '_ {
        std::iter::once(self.primary.stats("product")).chain(
            self.replica
                .as_ref()
                .map(|r| r.db().stats("product_replica")),
        )
    }
}
