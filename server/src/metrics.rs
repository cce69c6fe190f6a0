//! The servers' Prometheus metrics: the transport's counters (`net`'s
//! [`ServerMetrics`], one per server) and the marketplace's own (sessions
//! swept, purchases recovered, the database pools' [`store::DbStats`]),
//! encoded by the `prometheus-client` crate when scraped and served over HTTP
//! on a listener of their own (tiny_http, never the reactor's).
//!
//! One [`Exporter`] per process holds every server that runs in it
//! (`marketplace up` runs two), each a [`Metrics`] with its `server` label,
//! and encodes them as one exposition: each metric family once, one sample
//! per server and label set.

use net::metrics::{codes, Closed, FrameRejected, Refused, ServerMetrics, UNKNOWN_OPERATION};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use store::DbStats;

/// The version this binary was built as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit (`git rev-parse --short=12 HEAD` at build time, or `unknown`).
pub const COMMIT: &str = env!("MARKETPLACE_COMMIT");

type DbProbe = Box<dyn Fn() -> Vec<DbStats> + Send + Sync>;

/// The metrics of one server, labelled `server="NAME"`: the transport's
/// counters, which its reactor counts into, and the marketplace's, which its
/// housekeeping counts into.
pub struct Metrics {
    transport: Arc<ServerMetrics>,
    sessions_swept: AtomicU64,
    purchases_completed: AtomicU64,
    purchases_abandoned: AtomicU64,
    databases: Mutex<Option<DbProbe>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("server", &self.transport.server())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    fn new(server: &'static str, operations: &[&'static str]) -> Metrics {
        Metrics {
            transport: Arc::new(ServerMetrics::new(server, operations)),
            sessions_swept: AtomicU64::new(0),
            purchases_completed: AtomicU64::new(0),
            purchases_abandoned: AtomicU64::new(0),
            databases: Mutex::new(None),
        }
    }

    /// The transport's counters, for the reactor.
    pub fn transport(&self) -> &Arc<ServerMetrics> {
        &self.transport
    }

    /// The `server` label.
    pub fn server(&self) -> &'static str {
        self.transport.server()
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
struct Servers(Mutex<Vec<Arc<Metrics>>>);

/// The metrics of this process: hands out each server's [`Metrics`],
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
    pub fn server(&self, server: &'static str, operations: &[&'static str]) -> Arc<Metrics> {
        let mut servers = self
            .servers
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = servers.iter().find(|s| s.server() == server) {
            return found.clone();
        }
        let metrics = Arc::new(Metrics::new(server, operations));
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
fn per_server<T>(servers: &[Arc<Metrics>], value: impl Fn(&Metrics) -> T) -> Samples<T> {
    servers
        .iter()
        .map(|s| (vec![("server", s.server())], value(s)))
        .collect()
}

/// One sample per server and `reason` of `reasons`, counted by `count`.
fn per_reason<R: Copy>(
    servers: &[Arc<Metrics>],
    reasons: &[(&'static str, R)],
    count: impl Fn(&ServerMetrics, R) -> u64,
) -> Samples<u64> {
    servers
        .iter()
        .flat_map(|s| {
            let count = &count;
            reasons.iter().map(move |&(reason, why)| {
                let n = count(&s.transport, why);
                (vec![("server", s.server()), ("reason", reason)], n)
            })
        })
        .collect()
}

impl Collector for Servers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let servers: Vec<Arc<Metrics>> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let e = &mut encoder;

        let mut requests = Vec::new();
        for s in &servers {
            for name in s.transport.operations() {
                for code in codes() {
                    let n = s.transport.requests(name, code);
                    // Every operation's OK series exists from the start (so a
                    // rate is defined at once); the others once they happen.
                    if n > 0 || (code.is_none() && *name != UNKNOWN_OPERATION) {
                        let labels = vec![
                            ("server", s.server()),
                            ("operation", *name),
                            ("code", code.map_or("OK", |c| c.as_str())),
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
                for name in s.transport.operations() {
                    let h = s.transport.durations(name);
                    if h.count == 0 && *name == UNKNOWN_OPERATION {
                        continue;
                    }
                    let labels = [("server", s.server()), ("operation", *name)];
                    metric
                        .encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
                }
            }
        }

        gauge(
            e,
            "marketplace_connections",
            "Client connections open.",
            &per_server(&servers, |s| s.transport.connections()),
        )?;
        counter(
            e,
            "marketplace_connections_accepted",
            "Client connections accepted.",
            &per_server(&servers, |s| s.transport.accepted()),
        )?;
        let refused = per_reason(&servers, &Refused::ALL, ServerMetrics::refused);
        counter(
            e,
            "marketplace_connections_refused",
            "Connections answered OVERLOADED and closed at accept: per_peer (the address holds \
             its limit), capacity (the server is full and no idle connection could give way).",
            &refused,
        )?;
        let closed = per_reason(&servers, &Closed::ALL, ServerMetrics::closed);
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
            &FrameRejected::ALL,
            ServerMetrics::frames_rejected,
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
            &per_server(&servers, |s| s.transport.jobs_queued()),
        )?;
        gauge(
            e,
            "marketplace_workers_busy",
            "Workers of the main lane running a request.",
            &per_server(&servers, |s| s.transport.workers_busy()),
        )?;
        gauge(
            e,
            "marketplace_workers",
            "Workers of the main lane.",
            &per_server(&servers, |s| s.transport.workers()),
        )?;
        gauge(
            e,
            "marketplace_password_hashes_waiting",
            "Account requests (CreateAccount, Login) waiting for the password lane.",
            &per_server(&servers, |s| s.transport.hashes_waiting()),
        )?;

        let databases: Vec<(&'static str, Vec<DbStats>)> = servers
            .iter()
            .map(|s| (s.server(), s.database_stats()))
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
                for (outcome, n) in [
                    ("committed", d.settled.committed),
                    ("not_committed", d.settled.not_committed),
                    ("unknown", d.settled.unknown),
                ] {
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
                if s.transport.serves("MakePurchase") {
                    recovered.push((
                        vec![("server", s.server()), ("outcome", outcome)],
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
                            ("server", s.server()),
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
    use net::metrics::Outcome;
    use std::time::Duration;
    use wire::ErrorCode;

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counts_land_in_their_operation_code_and_bucket() {
        let exporter = Exporter::default();
        let metrics = exporter.server("buyer", &["Login", "GetItem"]);
        let buyer = metrics.transport();
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
        let ping = Outcome {
            operation: Some("Ping"),
            code: None,
        };
        seller.sessions_swept(2);
        seller.transport().request(ping, Duration::from_micros(50));
        let again = exporter.server("seller", &["Ping"]);
        again.sessions_swept(1);
        again.transport().request(ping, Duration::from_micros(50));
        let text = exporter.render();
        // The transport's counters and the marketplace's both go on counting.
        assert_eq!(
            sample(
                &text,
                r#"marketplace_requests_total{server="seller",operation="Ping",code="OK"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"marketplace_requests_total{server="buyer",operation="Ping",code="OK"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            text.matches("# TYPE marketplace_connections gauge").count(),
            1,
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"marketplace_sessions_swept_total{server="seller"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, r#"marketplace_sessions_swept_total{server="buyer"}"#),
            Some(0.0)
        );
        assert!(text.contains(r#"marketplace_build_info{server="buyer",version=""#));
    }
}
