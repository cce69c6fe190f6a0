//! product_db's streaming hot standby, for the reads that may lag a little
//! behind the primary: searches and single items (the buyer server's
//! `--product-db-replica`). Everything that must see its own writes (stock
//! checks, carts, purchases, a seller's own items) stays on the primary.
//!
//! A watcher thread asks the standby every [`CHECK_EVERY`] whether it is
//! streaming from the primary and how far behind it is; reads go to it only
//! while it is within the bound. A read that fails on it marks it unusable at
//! once and is served by the primary, so a standby that dies costs no request.
//! What the watcher saw is there to read ([`crate::Store::replica_health`]):
//! logging it is the server's business.

use crate::pool::{pool, Db, Pooled};
use crate::{DbSettings, StoreError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often the watcher looks at the standby.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The standby and whether reads may go to it now.
#[derive(Clone)]
pub(crate) struct Replica {
    db: Db,
    usable: Arc<AtomicBool>,
    /// What the watcher saw last.
    last: Arc<Mutex<Option<Health>>>,
    /// Reads it served, for the metrics.
    pub(crate) reads: Arc<AtomicU64>,
}

/// What one look at the standby found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// Streaming (or not a standby at all) and at most the bound behind.
    Usable { lag_secs: f64 },
    /// Too far behind, or not receiving from the primary.
    Behind {
        lag_secs: Option<f64>,
        streaming: bool,
    },
    /// Unreachable or failing.
    Down,
}

impl Health {
    /// Whether reads go to the standby.
    pub fn is_usable(&self) -> bool {
        matches!(self, Health::Usable { .. })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Usable { lag_secs } => {
                write!(f, "product_db replica in use (lag {lag_secs:.1} s)")
            }
            Health::Behind {
                lag_secs,
                streaming,
            } => {
                f.write_str("product_db replica not used: ")?;
                match (streaming, lag_secs) {
                    (false, _) => f.write_str("not streaming from the primary")?,
                    (true, Some(lag)) => write!(f, "{lag:.1} s behind")?,
                    (true, None) => f.write_str("behind")?,
                }
                f.write_str("; reads go to the primary")
            }
            Health::Down => f.write_str("product_db replica unreachable; reads go to the primary"),
        }
    }
}

/// Whether the standby is usable under `max_lag`: a server that is not in
/// recovery is not a standby (a test pointing at the primary): usable; a
/// standby must be streaming, and be caught up or have replayed its last
/// transaction at most `max_lag` ago.
const CHECK_SQL: &str = "SELECT pg_is_in_recovery() AS recovering,
        coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false) AS streaming,
        CASE WHEN NOT pg_is_in_recovery() THEN 0
             WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
             ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
        END AS lag_secs";

impl Replica {
    /// The standby at `url`, and its watcher thread.
    ///
    /// # Errors
    /// `Internal` for a malformed URL.
    pub(crate) fn open(url: &str, settings: &DbSettings) -> Result<Replica, StoreError> {
        // Its own failure count: a standby that goes away must not have the
        // primary's connections checked again.
        let failures = Arc::new(AtomicU64::new(0));
        let db = pool(
            url,
            settings,
            &failures,
            Some("-c plan_cache_mode=force_generic_plan"),
        )?;
        let replica = Replica {
            db,
            usable: Arc::new(AtomicBool::new(false)),
            last: Arc::new(Mutex::new(None)),
            reads: Arc::new(AtomicU64::new(0)),
        };
        let watched = replica.clone();
        let max_lag = settings.replica_max_lag.as_secs_f64();
        std::thread::Builder::new()
            .name("replica-watcher".into())
            .spawn(move || watched.watch(max_lag))
            .map_err(|e| StoreError::Internal(format!("replica watcher: {e}")))?;
        Ok(replica)
    }

    fn watch(&self, max_lag: f64) {
        let mut was = None;
        let mut behind = 0u32;
        loop {
            let health = self.check(max_lag);
            // The lag is the age of the last replayed transaction while WAL
            // waits to be replayed: after a quiet minute the first new
            // transaction reads as a minute behind for the few milliseconds
            // before it is replayed. So "behind" counts when two looks in a
            // row say so; "down" counts at once.
            behind = match health {
                Health::Behind { .. } => behind + 1,
                _ => 0,
            };
            let usable = match health {
                Health::Usable { .. } => true,
                Health::Behind { .. } => behind < 2 && was == Some(true),
                Health::Down => false,
            };
            self.usable.store(usable, Ordering::SeqCst);
            // What is reported is the state reads follow: a first "behind"
            // that is not yet believed leaves the last report standing.
            if usable == health.is_usable() {
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(health);
            }
            was = Some(usable);
            std::thread::sleep(CHECK_EVERY);
        }
    }

    /// What the watcher saw last (None before its first look).
    pub(crate) fn health(&self) -> Option<Health> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at the standby once.
    pub(crate) fn check(&self, max_lag: f64) -> Health {
        let row = self.db.get().and_then(|mut c| c.query_one(CHECK_SQL, &[]));
        let Ok(row) = row else {
            return Health::Down;
        };
        let (Ok(recovering), Ok(streaming), Ok(lag)) = (
            row.try_get::<_, bool>("recovering"),
            row.try_get::<_, bool>("streaming"),
            row.try_get::<_, Option<f64>>("lag_secs"),
        ) else {
            return Health::Down;
        };
        match lag {
            Some(lag) if (!recovering || streaming) && lag <= max_lag => {
                Health::Usable { lag_secs: lag }
            }
            lag_secs => Health::Behind {
                lag_secs,
                streaming,
            },
        }
    }

    /// A connection to the standby, when it is usable now.
    fn get(&self) -> Option<Pooled> {
        if !self.usable.load(Ordering::SeqCst) {
            return None;
        }
        match self.db.get() {
            Ok(conn) => Some(conn),
            Err(_) => {
                self.usable.store(false, Ordering::SeqCst);
                None
            }
        }
    }

    /// Runs `read` on the standby if it is usable; `None` when it is not, or
    /// when the read failed there (a broken connection also marks it
    /// unusable until the watcher sees it well again): the primary must
    /// answer.
    pub(crate) fn read<T>(
        &self,
        read: &impl Fn(&mut Pooled) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let mut conn = self.get()?;
        match read(&mut conn) {
            Err(StoreError::Unavailable(_)) => {
                self.usable.store(false, Ordering::SeqCst);
                None
            }
            // E.g. a query cancelled by a conflict with recovery: the
            // primary answers this one.
            Err(StoreError::Internal(_) | StoreError::Refused { .. }) => None,
            result => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Some(result)
            }
        }
    }

    /// Its pool, for the metrics.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
}
