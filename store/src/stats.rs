//! What the pools count for the metrics: errors, and keyed writes settled
//! after their connection broke. A leaf: connections and pools both feed
//! these counts, so they live apart from either.

use std::sync::atomic::{AtomicU64, Ordering};

/// Keyed writes whose connection broke at their commit, by what settling
/// them found (see `once::settle`).
#[derive(Debug, Default)]
pub(crate) struct Settles {
    committed: AtomicU64,
    not_committed: AtomicU64,
    unknown: AtomicU64,
}

/// How a keyed write whose connection broke at its commit was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The key was recorded: the write happened, its result was the answer.
    Committed,
    /// It was not, once the old server process was gone: nothing changed.
    NotCommitted,
    /// The database could not be asked in time: the answer said so.
    Unknown,
}

impl Settles {
    pub(crate) fn count(&self, settled: Settled) {
        let n = match settled {
            Settled::Committed => &self.committed,
            Settled::NotCommitted => &self.not_committed,
            Settled::Unknown => &self.unknown,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> SettledCounts {
        SettledCounts {
            committed: self.committed.load(Ordering::Relaxed),
            not_committed: self.not_committed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }
}

/// A pool's settled commits so far, by outcome (see
/// [`Store::db_stats`](crate::Store::db_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettledCounts {
    pub committed: u64,
    pub not_committed: u64,
    pub unknown: u64,
}

/// One pool's connections and errors, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStats {
    /// `customer`, `product` or `product_replica`.
    pub db: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    /// Of those, idle in the pool.
    pub idle: u32,
    /// Database errors so far (failed connections and statements that failed
    /// for another reason than a constraint the request broke).
    pub errors: u64,
    /// Keyed writes whose connection broke at their commit, by how they
    /// were settled.
    pub settled: SettledCounts,
}
