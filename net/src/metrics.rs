//! Prometheus metrics: counted with plain atomics on the request path, encoded
//! by the `prometheus-client` crate when scraped, served over HTTP on a
//! listener of their own (never the reactor's).
//!
//! One [`Exporter`] per process holds every server that runs in it
//! (`marketplace up` runs two), each a [`ServerMetrics`] with its `server`
//! label, and encodes them as one exposition: each metric family once, one
//! sample per server and label set.
//!
//! The request path only indexes arrays built at start-up and adds to atomics:
//! no lock, no allocation, no map that grows.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
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

/// The version and commit this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit (`git rev-parse --short=12 HEAD` at build time, or `unknown`).
pub const COMMIT: &str = env!("MARKETPLACE_COMMIT");

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

/// Why a connection was closed (its label on `marketplace_connections_closed_total`).
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
    const ALL: [(&'static str, Closed); 9] = [
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

/// One database pool as a scrape sees it.
#[derive(Debug, Clone, Copy)]
pub struct DbStats {
    /// `customer` or `product`.
    pub db: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    /// Of those, idle in the pool.
    pub idle: u32,
    /// Database errors so far (failed connections and statements that failed
    /// for another reason than a constraint the request broke).
    pub errors: u64,
    /// Keyed writes whose connection broke at their commit, by how they
    /// were settled: `committed`, `not_committed`, `unknown`, with counts.
    pub commits_settled: [(&'static str, u64); 3],
}

type DbProbe = Box<dyn Fn() -> Vec<DbStats> + Send + Sync>;

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

    /// (sum in seconds, count, per-bucket counts with their bounds). The count
    /// is the buckets' total, so a scrape racing an observation stays
    /// consistent with itself.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        let mut count = 0;
        for (i, slot) in self.buckets.iter().enumerate() {
            let n = slot.load(Relaxed);
            count += n;
            buckets.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

fn code_slot(code: Option<ErrorCode>) -> usize {
    code.map_or(0, |c| c as usize + 1)
}

fn code_label(slot: usize) -> &'static str {
    match slot {
        0 => "OK",
        n => ErrorCode::ALL[n - 1].as_str(),
    }
}

const CODES: usize = ErrorCode::ALL.len() + 1;

/// The metrics of one server, labelled `server="NAME"`.
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
    refused: [AtomicU64; 2],
    closed: [AtomicU64; Closed::ALL.len()],
    frames_rejected: [AtomicU64; 3],
    jobs_queued: AtomicI64,
    hashes_waiting: AtomicI64,
    workers_busy: AtomicI64,
    workers: AtomicI64,
    sessions_swept: AtomicU64,
    purchases_completed: AtomicU64,
    purchases_abandoned: AtomicU64,
    databases: Mutex<Option<DbProbe>>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Metrics of a server labelled `server` that serves `operations`.
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
            sessions_swept: AtomicU64::new(0),
            purchases_completed: AtomicU64::new(0),
            purchases_abandoned: AtomicU64::new(0),
            databases: Mutex::new(None),
        }
    }

    /// The `server` label.
    pub fn server(&self) -> &'static str {
        self.server
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

    /// Requests of `operation` answered with `code` (`None`: OK) so far.
    pub fn requests(&self, operation: &str, code: Option<ErrorCode>) -> u64 {
        self.index.get(operation).map_or(0, |op| {
            self.requests[op * CODES + code_slot(code)].load(Relaxed)
        })
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

    /// Connections closed for `why` so far.
    pub fn closed(&self, why: Closed) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }

    pub(crate) fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn frame_rejected(&self, why: FrameRejected) {
        self.frames_rejected[why as usize].fetch_add(1, Relaxed);
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

    /// A worker of the main lane began (`1`) or finished (`-1`) a request.
    pub(crate) fn busy(&self, change: i64) {
        self.workers_busy.fetch_add(change, Relaxed);
    }

    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers
            .store(i64::try_from(workers).unwrap_or(i64::MAX), Relaxed);
    }

    /// Counts expired sessions removed by the housekeeping sweep.
    pub fn sessions_swept(&self, n: u64) {
        self.sessions_swept.fetch_add(n, Relaxed);
    }

    /// Counts interrupted purchases recovery settled: `completed` finished,
    /// `abandoned` released.
    pub fn purchases_recovered(&self, completed: u64, abandoned: u64) {
        self.purchases_completed.fetch_add(completed, Relaxed);
        self.purchases_abandoned.fetch_add(abandoned, Relaxed);
    }

    /// Sets what a scrape asks about the server's database pools (replacing
    /// the previous probe: a restarted server opens new pools).
    pub fn watch_databases(&self, probe: impl Fn() -> Vec<DbStats> + Send + Sync + 'static) {
        *self
            .databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(probe));
    }

    fn database_stats(&self) -> Vec<DbStats> {
        self.databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|probe| probe())
            .unwrap_or_default()
    }
}

/// Every server of this process, encoded as one exposition.
#[derive(Debug, Default)]
struct Servers(Mutex<Vec<Arc<ServerMetrics>>>);

/// The metrics of this process: hands out each server's [`ServerMetrics`],
/// renders the exposition and serves it.
#[derive(Clone)]
pub struct Exporter {
    servers: Arc<Servers>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Default for Exporter {
    fn default() -> Self {
        let servers = Arc::new(Servers::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(servers.clone()));
        Exporter {
            servers,
            registry: Arc::new(registry),
        }
    }
}

impl Exporter {
    /// The metrics of the server labelled `server`, created on first use: a
    /// server restarted in the same process goes on counting where it was.
    pub fn server(&self, server: &'static str, operations: &[&'static str]) -> Arc<ServerMetrics> {
        let mut servers = self
            .servers
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = servers.iter().find(|s| s.server == server) {
            return found.clone();
        }
        let metrics = Arc::new(ServerMetrics::new(server, operations));
        servers.push(metrics.clone());
        metrics
    }

    /// The Prometheus text exposition (format 0.0.4) of every server.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and the collector never fails.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Serves `GET /metrics` (the exposition) and `GET /health` on `addr`, on
    /// threads of their own, until the returned [`Endpoint`] is dropped.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub fn serve(&self, addr: SocketAddr) -> std::io::Result<Endpoint> {
        let http = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the metrics listener has no IP address"))?;
        let http = Arc::new(http);
        let exporter = self.clone();
        let server = http.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    exporter.answer(request);
                }
            })?;
        Ok(Endpoint {
            addr,
            http,
            thread: Some(thread),
        })
    }

    fn answer(&self, request: tiny_http::Request) {
        use tiny_http::{Header, Method, Response};
        let header = |value: &str| {
            Header::from_bytes(&b"Content-Type"[..], value.as_bytes()).expect("a valid header")
        };
        let get = matches!(request.method(), Method::Get | Method::Head);
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (get, path) {
            (true, "/metrics") => Response::from_string(self.render()).with_header(header(
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )),
            (true, "/health") => Response::from_string("ok\n"),
            (false, "/metrics" | "/health") => {
                Response::from_string("only GET\n").with_status_code(405)
            }
            _ => {
                Response::from_string("not found: try /metrics or /health\n").with_status_code(404)
            }
        };
        // A scraper that hung up is its own business.
        let _ = request.respond(response);
    }
}

/// A running metrics listener; dropping it stops it.
pub struct Endpoint {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// The address bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, samples: &Samples<u64>) -> Fmt {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, samples: &Samples<i64>) -> Fmt {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

type Samples<T> = Vec<(Vec<(&'static str, &'static str)>, T)>;

/// One sample per server, labelled with it.
fn per_server<T>(
    servers: &[Arc<ServerMetrics>],
    value: impl Fn(&ServerMetrics) -> T,
) -> Samples<T> {
    servers
        .iter()
        .map(|s| (vec![("server", s.server)], value(s)))
        .collect()
}

/// One sample per server and `reason`: `reasons` name the slots of the
/// counters `counts` gives (an enum's `as usize`).
fn per_reason(
    servers: &[Arc<ServerMetrics>],
    reasons: &[(&'static str, usize)],
    counts: impl Fn(&ServerMetrics) -> &[AtomicU64],
) -> Samples<u64> {
    servers
        .iter()
        .flat_map(|s| {
            let counts = counts(s);
            reasons.iter().map(move |&(reason, slot)| {
                let n = counts[slot].load(Relaxed);
                (vec![("server", s.server), ("reason", reason)], n)
            })
        })
        .collect()
}

impl Collector for Servers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let servers: Vec<Arc<ServerMetrics>> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let e = &mut encoder;

        let mut requests = Vec::new();
        for s in &servers {
            for (op, name) in s.operations.iter().enumerate() {
                for slot in 0..CODES {
                    let n = s.requests[op * CODES + slot].load(Relaxed);
                    // Every operation's OK series exists from the start (so a
                    // rate is defined at once); the others once they happen.
                    if n > 0 || (slot == 0 && *name != UNKNOWN_OPERATION) {
                        let labels = vec![
                            ("server", s.server),
                            ("operation", *name),
                            ("code", code_label(slot)),
                        ];
                        requests.push((labels, n));
                    }
                }
            }
        }
        counter(
            e,
            "marketplace_requests",
            "Requests answered, by operation and response code (OK or the error code).",
            &requests,
        )?;

        {
            let mut metric = e.encode_descriptor(
                "marketplace_request_duration_seconds",
                "Time from a request's whole frame arriving to its answer being ready, by operation.",
                None,
                MetricType::Histogram,
            )?;
            for s in &servers {
                for (op, name) in s.operations.iter().enumerate() {
                    let (sum, count, buckets) = s.durations[op].snapshot();
                    if count == 0 && *name == UNKNOWN_OPERATION {
                        continue;
                    }
                    let labels = [("server", s.server), ("operation", *name)];
                    metric
                        .encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                }
            }
        }

        gauge(
            e,
            "marketplace_connections",
            "Client connections open.",
            &per_server(&servers, |s| s.connections.load(Relaxed)),
        )?;
        counter(
            e,
            "marketplace_connections_accepted",
            "Client connections accepted.",
            &per_server(&servers, |s| s.accepted.load(Relaxed)),
        )?;
        let refused = per_reason(
            &servers,
            &[
                ("per_peer", Refused::PerPeer as usize),
                ("capacity", Refused::Capacity as usize),
            ],
            |s| &s.refused,
        );
        counter(
            e,
            "marketplace_connections_refused",
            "Connections answered OVERLOADED and closed at accept: per_peer (the address holds \
             its limit), capacity (the server is full and no idle connection could give way).",
            &refused,
        )?;
        let reasons = Closed::ALL.map(|(label, why)| (label, why as usize));
        let closed = per_reason(&servers, &reasons, |s| &s.closed);
        counter(
            e,
            "marketplace_connections_closed",
            "Client connections closed, by reason: finished (the client hung up, all answered), \
             io (socket error), idle, frame_deadline, bad_frame, peer_limit (a PROXY header \
             named an address at its limit), proxy_header (none, on the PROXY port), evicted \
             (made room for a newcomer), draining (the server stopped).",
            &closed,
        )?;
        let rejected = per_reason(
            &servers,
            &[
                ("empty", FrameRejected::Empty as usize),
                ("too_large", FrameRejected::TooLarge as usize),
                ("deadline", FrameRejected::Deadline as usize),
            ],
            |s| &s.frames_rejected,
        );
        counter(
            e,
            "marketplace_frames_rejected",
            "Frames rejected before any handler, closing the connection: empty (length 0), \
             too_large (over the frame limit), deadline (begun and not finished in time).",
            &rejected,
        )?;
        gauge(
            e,
            "marketplace_jobs_queued",
            "Requests waiting for a worker (the main lane).",
            &per_server(&servers, |s| s.jobs_queued.load(Relaxed)),
        )?;
        gauge(
            e,
            "marketplace_workers_busy",
            "Workers of the main lane running a request.",
            &per_server(&servers, |s| s.workers_busy.load(Relaxed)),
        )?;
        gauge(
            e,
            "marketplace_workers",
            "Workers of the main lane.",
            &per_server(&servers, |s| s.workers.load(Relaxed)),
        )?;
        gauge(
            e,
            "marketplace_password_hashes_waiting",
            "Account requests (CreateAccount, Login) waiting for the password lane.",
            &per_server(&servers, |s| s.hashes_waiting.load(Relaxed)),
        )?;

        let databases: Vec<(&'static str, Vec<DbStats>)> = servers
            .iter()
            .map(|s| (s.server, s.database_stats()))
            .collect();
        let mut pool = Vec::new();
        let mut errors = Vec::new();
        let mut settled = Vec::new();
        for (server, stats) in &databases {
            for d in stats {
                let busy = d.open.saturating_sub(d.idle);
                for (state, n) in [("busy", busy), ("idle", d.idle)] {
                    pool.push((
                        vec![("server", *server), ("db", d.db), ("state", state)],
                        i64::from(n),
                    ));
                }
                errors.push((vec![("server", *server), ("db", d.db)], d.errors));
                for (outcome, n) in d.commits_settled {
                    settled.push((
                        vec![("server", *server), ("db", d.db), ("outcome", outcome)],
                        n,
                    ));
                }
            }
        }
        gauge(
            e,
            "marketplace_db_pool_connections",
            "Database connections in the server's pool, busy (lent to a request) or idle.",
            &pool,
        )?;
        counter(
            e,
            "marketplace_db_errors",
            "Database errors: connections that failed or could not be had, and statements \
             that failed other than by a constraint the request broke.",
            &errors,
        )?;
        counter(
            e,
            "marketplace_db_commits_settled",
            "Keyed writes whose database connection broke at their commit, by what their \
             key said once the old connection's server process was gone: committed (the \
             write happened and its result was the answer), not_committed (nothing changed; \
             UNAVAILABLE), unknown (the database could not be asked in time; UNAVAILABLE \
             saying so).",
            &settled,
        )?;
        counter(
            e,
            "marketplace_sessions_swept",
            "Expired sessions removed by the housekeeping sweep.",
            &per_server(&servers, |s| s.sessions_swept.load(Relaxed)),
        )?;
        let mut recovered = Vec::new();
        for s in &servers {
            for (outcome, n) in [
                ("completed", &s.purchases_completed),
                ("abandoned", &s.purchases_abandoned),
            ] {
                // Only the buyer server settles purchases.
                if s.index.contains_key("MakePurchase") {
                    recovered.push((
                        vec![("server", s.server), ("outcome", outcome)],
                        n.load(Relaxed),
                    ));
                }
            }
        }
        counter(
            e,
            "marketplace_purchases_recovered",
            "Interrupted purchases settled by recovery: completed (the stock was taken) or \
             abandoned (it was not; nothing charged).",
            &recovered,
        )?;
        gauge(
            e,
            "marketplace_build_info",
            "The version and commit of the running server (always 1).",
            &servers
                .iter()
                .map(|s| {
                    (
                        vec![
                            ("server", s.server),
                            ("version", VERSION),
                            ("commit", COMMIT),
                        ],
                        1,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counts_land_in_their_operation_code_and_bucket() {
        let exporter = Exporter::default();
        let buyer = exporter.server("buyer", &["Login", "GetItem"]);
        buyer.request(
            Outcome {
                operation: Some("GetItem"),
                code: None,
            },
            Duration::from_micros(100),
        );
        buyer.request(
            Outcome {
                operation: Some("GetItem"),
                code: Some(ErrorCode::NotFound),
            },
            Duration::from_millis(3),
        );
        buyer.request(
            Outcome {
                operation: None,
                code: Some(ErrorCode::BadRequest),
            },
            Duration::from_secs(20),
        );
        let text = exporter.render();
        let get = |s: &str| sample(&text, s);
        assert_eq!(
            get(r#"marketplace_requests_total{server="buyer",operation="GetItem",code="OK"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(
                r#"marketplace_requests_total{server="buyer",operation="GetItem",code="NOT_FOUND"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            get(r#"marketplace_requests_total{server="buyer",operation="Login",code="OK"}"#),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            get(
                r#"marketplace_requests_total{server="buyer",operation="unknown",code="BAD_REQUEST"}"#
            ),
            Some(1.0)
        );
        // 100 µs sits in the first bucket (le is inclusive), 3 ms in le=0.005.
        let bucket = |le: &str| {
            get(&format!(
                r#"marketplace_request_duration_seconds_bucket{{server="buyer",operation="GetItem",le="{le}"}}"#
            ))
        };
        assert_eq!(bucket("0.0001"), Some(1.0));
        assert_eq!(bucket("0.0025"), Some(1.0));
        assert_eq!(bucket("0.005"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        let over = get(
            r#"marketplace_request_duration_seconds_bucket{server="buyer",operation="unknown",le="10"}"#,
        );
        assert_eq!(over, Some(0.0), "20 s is past every bound: {text}");
        assert_eq!(
            get(
                r#"marketplace_request_duration_seconds_count{server="buyer",operation="unknown"}"#
            ),
            Some(1.0)
        );
        assert_eq!(buyer.requests("GetItem", None), 1);
    }

    #[test]
    fn two_servers_share_each_family_and_a_restart_keeps_counting() {
        let exporter = Exporter::default();
        let seller = exporter.server("seller", &["Ping"]);
        let _buyer = exporter.server("buyer", &["Ping"]);
        seller.connection_opened();
        let again = exporter.server("seller", &["Ping"]);
        again.connection_opened();
        let text = exporter.render();
        assert_eq!(
            text.matches("# TYPE marketplace_connections gauge").count(),
            1,
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"marketplace_connections_accepted_total{server="seller"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"marketplace_connections_accepted_total{server="buyer"}"#
            ),
            Some(0.0)
        );
        assert!(text.contains(r#"marketplace_build_info{server="buyer",version=""#));
    }
}
