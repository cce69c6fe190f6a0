//! The transport's counters: requests by operation and response code with
//! their latency, connections and why they closed, frames rejected, the
//! worker lanes. Counted with plain atomics on the request path; read through
//! the accessors here by whoever exports them (the `server` crate's
//! Prometheus exporter), never encoded here.
//!
//! The request path only indexes arrays built at start-up and adds to atomics:
//! no lock, no allocation, no map that grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use wire::ErrorCode;

/// Upper bounds (seconds) of the request duration buckets: 100 µs to 10 s,
/// 1-2.5-5 per decade.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The `operation` label of a frame that could not be decoded as any operation.
pub const UNKNOWN_OPERATION: &str = "unknown";

/// What one request came to, for the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The operation; `None` when the frame named none this server knows.
    pub operation: Option<&'static str>,
    /// The error code; `None` for `OK`.
    pub code: Option<ErrorCode>,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    /// Its address already held `max_per_peer` connections.
    PerPeer,
    /// The server held `max_connections` and none could give way.
    Capacity,
}

impl Refused {
    /// Every reason with its label.
    pub const ALL: [(&'static str, Refused); 2] = [
        ("per_peer", Refused::PerPeer),
        ("capacity", Refused::Capacity),
    ];
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer ended it, and everything it asked was answered.
    Finished,
    /// Its socket failed (reset, broken pipe).
    Io,
    /// No request within the idle timeout.
    Idle,
    /// A frame begun and not finished within the frame deadline.
    FrameDeadline,
    /// A frame refused with `BAD_FRAME` (empty or over the limit).
    BadFrame,
    /// Its PROXY header named an address already at its limit (`OVERLOADED`).
    PeerLimit,
    /// On the PROXY listener: no PROXY v2 header, or ended before it.
    ProxyHeader,
    /// Closed idle at the connection limit to admit a newcomer.
    Evicted,
    /// The server was stopping.
    Draining,
}

impl Closed {
    /// Every reason with its label.
    pub const ALL: [(&'static str, Closed); 9] = [
        ("finished", Closed::Finished),
        ("io", Closed::Io),
        ("idle", Closed::Idle),
        ("frame_deadline", Closed::FrameDeadline),
        ("bad_frame", Closed::BadFrame),
        ("peer_limit", Closed::PeerLimit),
        ("proxy_header", Closed::ProxyHeader),
        ("evicted", Closed::Evicted),
        ("draining", Closed::Draining),
    ];
}

/// Why a frame was rejected before it reached a handler.
#[derive(Debug, Clone, Copy)]
pub enum FrameRejected {
    /// Its header announced zero bytes.
    Empty,
    /// Its header announced more than the frame limit.
    TooLarge,
    /// It was begun and not finished within the frame deadline.
    Deadline,
}

impl FrameRejected {
    /// Every reason with its label.
    pub const ALL: [(&'static str, FrameRejected); 3] = [
        ("empty", FrameRejected::Empty),
        ("too_large", FrameRejected::TooLarge),
        ("deadline", FrameRejected::Deadline),
    ];
}

/// One operation's latencies as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// How many (the buckets' total).
    pub count: u64,
    /// Per bucket: its upper bound ([`BUCKETS`], then infinity) and the
    /// observations in it alone (not cumulative).
    pub buckets: Vec<(f64, u64)>,
}

/// A latency histogram of atomics: a count per bucket (the last one past
/// every bound) and the sum in nanoseconds.
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // `le` is inclusive: the first bound at or above the value.
        let bucket = BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The count is the buckets' total, so a reading racing an observation
    /// stays consistent with itself.
    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        let mut count = 0;
        for (i, slot) in self.buckets.iter().enumerate() {
            let n = slot.load(Relaxed);
            count += n;
            buckets.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        HistogramSnapshot {
            sum,
            count,
            buckets,
        }
    }
}

fn code_slot(code: Option<ErrorCode>) -> usize {
    code.map_or(0, |c| c as usize + 1)
}

/// The response codes a request can be counted under: `None` (OK), then
/// every error code.
pub fn codes() -> impl Iterator<Item = Option<ErrorCode>> {
    std::iter::once(None).chain(ErrorCode::ALL.iter().copied().map(Some))
}

const CODES: usize = ErrorCode::ALL.len() + 1;

/// The transport counters of one server (named, for whoever exports them).
pub struct ServerMetrics {
    server: &'static str,
    /// The operations, then [`UNKNOWN_OPERATION`].
    operations: Vec<&'static str>,
    index: HashMap<&'static str, usize>,
    /// `operations.len() * CODES` request counters.
    requests: Vec<AtomicU64>,
    durations: Vec<Histogram>,
    connections: AtomicI64,
    accepted: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
    closed: [AtomicU64; Closed::ALL.len()],
    frames_rejected: [AtomicU64; FrameRejected::ALL.len()],
    jobs_queued: AtomicI64,
    hashes_waiting: AtomicI64,
    workers_busy: AtomicI64,
    workers: AtomicI64,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Counters of a server named `server` that serves `operations`.
    pub fn new(server: &'static str, operations: &[&'static str]) -> Self {
        let mut names: Vec<&'static str> = operations.to_vec();
        names.push(UNKNOWN_OPERATION);
        let index = names.iter().enumerate().map(|(i, op)| (*op, i)).collect();
        ServerMetrics {
            server,
            requests: (0..names.len() * CODES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            durations: (0..names.len()).map(|_| Histogram::new()).collect(),
            operations: names,
            index,
            connections: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            closed: Default::default(),
            frames_rejected: Default::default(),
            jobs_queued: AtomicI64::new(0),
            hashes_waiting: AtomicI64::new(0),
            workers_busy: AtomicI64::new(0),
            workers: AtomicI64::new(0),
        }
    }

    /// The server's name (the `server` label).
    pub fn server(&self) -> &'static str {
        self.server
    }

    /// The operations counted, then [`UNKNOWN_OPERATION`].
    pub fn operations(&self) -> &[&'static str] {
        &self.operations
    }

    /// Whether `operation` is one this server serves.
    pub fn serves(&self, operation: &str) -> bool {
        operation != UNKNOWN_OPERATION && self.index.contains_key(operation)
    }

    fn operation_slot(&self, operation: Option<&'static str>) -> usize {
        let unknown = self.operations.len() - 1;
        operation
            .and_then(|op| self.index.get(op).copied())
            .unwrap_or(unknown)
    }

    /// Counts one answered request that took `elapsed` from its arrival.
    pub fn request(&self, outcome: Outcome, elapsed: Duration) {
        let op = self.operation_slot(outcome.operation);
        self.requests[op * CODES + code_slot(outcome.code)].fetch_add(1, Relaxed);
        self.durations[op].observe(elapsed);
    }

    /// Requests of `operation` (one of [`Self::operations`], `unknown`
    /// included) answered with `code` (`None`: OK) so far.
    pub fn requests(&self, operation: &str, code: Option<ErrorCode>) -> u64 {
        self.index.get(operation).map_or(0, |op| {
            self.requests[op * CODES + code_slot(code)].load(Relaxed)
        })
    }

    /// The latencies of `operation`'s requests so far (an empty histogram
    /// for an operation this server does not serve).
    pub fn durations(&self, operation: &str) -> HistogramSnapshot {
        self.index.get(operation).map_or_else(
            || Histogram::new().snapshot(),
            |op| self.durations[*op].snapshot(),
        )
    }

    pub(crate) fn connection_opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self, why: Closed) {
        self.connections.fetch_sub(1, Relaxed);
        self.closed[why as usize].fetch_add(1, Relaxed);
    }

    /// Connections open now.
    pub fn connections(&self) -> i64 {
        self.connections.load(Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Connections closed for `why` so far.
    pub fn closed(&self, why: Closed) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }

    pub(crate) fn count_refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Connections refused at accept for `why` so far.
    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    pub(crate) fn count_frame_rejected(&self, why: FrameRejected) {
        self.frames_rejected[why as usize].fetch_add(1, Relaxed);
    }

    /// Frames rejected for `why` so far.
    pub fn frames_rejected(&self, why: FrameRejected) -> u64 {
        self.frames_rejected[why as usize].load(Relaxed)
    }

    /// A job entered (`1`) or left (`-1`) a lane's queue; `slow` is the
    /// password lane.
    pub(crate) fn queued(&self, slow: bool, change: i64) {
        let gauge = if slow {
            &self.hashes_waiting
        } else {
            &self.jobs_queued
        };
        gauge.fetch_add(change, Relaxed);
    }

    /// Requests waiting for a worker of the main lane now.
    pub fn jobs_queued(&self) -> i64 {
        self.jobs_queued.load(Relaxed)
    }

    /// Requests waiting for the password lane now.
    pub fn hashes_waiting(&self) -> i64 {
        self.hashes_waiting.load(Relaxed)
    }

    /// A worker of the main lane began (`1`) or finished (`-1`) a request.
    pub(crate) fn busy(&self, change: i64) {
        self.workers_busy.fetch_add(change, Relaxed);
    }

    /// Workers of the main lane running a request now.
    pub fn workers_busy(&self) -> i64 {
        self.workers_busy.load(Relaxed)
    }

    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers
            .store(i64::try_from(workers).unwrap_or(i64::MAX), Relaxed);
    }

    /// Workers of the main lane.
    pub fn workers(&self) -> i64 {
        self.workers.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_operation_code_and_bucket() {
        let buyer = ServerMetrics::new("buyer", &["Login", "GetItem"]);
        let get_item = |code| Outcome {
            operation: Some("GetItem"),
            code,
        };
        buyer.request(get_item(None), Duration::from_micros(100));
        buyer.request(
            get_item(Some(ErrorCode::NotFound)),
            Duration::from_millis(3),
        );
        buyer.request(
            Outcome {
                operation: None,
                code: Some(ErrorCode::BadRequest),
            },
            Duration::from_secs(20),
        );
        assert_eq!(buyer.requests("GetItem", None), 1);
        assert_eq!(buyer.requests("GetItem", Some(ErrorCode::NotFound)), 1);
        assert_eq!(buyer.requests("Login", None), 0);
        assert_eq!(
            buyer.requests(UNKNOWN_OPERATION, Some(ErrorCode::BadRequest)),
            1
        );
        // 100 µs sits in the first bucket (le is inclusive), 3 ms in le=0.005.
        let h = buyer.durations("GetItem");
        assert_eq!(h.count, 2);
        let at = |le: f64| h.buckets.iter().find(|(b, _)| *b == le).map(|(_, n)| *n);
        assert_eq!(at(0.0001), Some(1));
        assert_eq!(at(0.005), Some(1));
        assert_eq!(at(f64::INFINITY), Some(0));
        let over = buyer.durations(UNKNOWN_OPERATION);
        assert_eq!(over.buckets.last(), Some(&(f64::INFINITY, 1)), "20 s");
        assert!(buyer.serves("Login") && !buyer.serves(UNKNOWN_OPERATION));
        assert_eq!(codes().count(), ErrorCode::ALL.len() + 1);
    }
}
