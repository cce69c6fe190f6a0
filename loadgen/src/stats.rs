//! Latency histograms (HDR, microseconds) and outcome counts per operation.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wire::{seller, Op};

/// Which kind of client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Seller,
    Buyer,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Seller => "seller",
            Side::Buyer => "buyer",
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 2 significant digits (1% precision, exact below 256 µs):
    // about 25 KiB each, so 200 clients x a dozen operations stay small.
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds")
}

/// One operation's latencies and error counts.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub latency: Histogram<u64>,
    /// Expected errors by code (counted; they do not fail the run).
    pub errors: BTreeMap<String, u64>,
    /// Unexpected errors by code (they fail the run).
    pub unexpected: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: histogram(),
            errors: BTreeMap::new(),
            unexpected: BTreeMap::new(),
        }
    }
}

impl OpStats {
    /// Adds another's samples and counts.
    pub fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        for (code, n) in &other.unexpected {
            *self.unexpected.entry(code.clone()).or_default() += n;
        }
    }

    /// The figures the report shows.
    pub fn summary(&self) -> Summary {
        let h = &self.latency;
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            avg_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            errors: self.errors.clone(),
            unexpected: self.unexpected.clone(),
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// An error the workload expects now and then (e.g. stock gone).
    Expected(String),
    /// Anything else: the run fails.
    Unexpected(String),
}

/// What a client does before and after its mix (and a failed connect): never
/// part of the steady phase.
pub const ACCOUNT_OPERATIONS: [&str; 4] = [
    CONNECT,
    <seller::op::CreateAccount as Op>::NAME,
    <seller::op::Login as Op>::NAME,
    <seller::op::Logout as Op>::NAME,
];

/// Where a client that could not connect at all is counted.
pub const CONNECT: &str = "Connect";

/// Everything one client measured in one run.
#[derive(Debug, Clone)]
pub struct ClientStats {
    pub side: Side,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub calls: u64,
    /// Sum of this client's response times.
    pub busy: Duration,
    /// A few messages of unexpected errors, for the report.
    pub samples: Vec<String>,
    /// Each mix call's end and its response time in µs, for the steady phase.
    pub timeline: Vec<(Instant, u32)>,
    /// When the client's Login answered OK.
    pub logged_in: Option<Instant>,
    /// When the client sent its Logout.
    pub logging_out: Option<Instant>,
}

impl ClientStats {
    pub fn new(side: Side) -> Self {
        ClientStats {
            side,
            ops: BTreeMap::new(),
            calls: 0,
            busy: Duration::ZERO,
            samples: Vec::new(),
            timeline: Vec::new(),
            logged_in: None,
            logging_out: None,
        }
    }

    /// Records one call that ended now.
    pub fn record(&mut self, op: &'static str, took: Duration, outcome: Outcome) {
        self.record_at(op, Instant::now(), took, outcome);
    }

    /// Records one call that ended at `ended`.
    pub fn record_at(
        &mut self,
        op: &'static str,
        ended: Instant,
        took: Duration,
        outcome: Outcome,
    ) {
        let stats = self.ops.entry(op).or_default();
        let _ = stats
            .latency
            .record((took.as_micros() as u64).clamp(1, 60_000_000));
        match outcome {
            Outcome::Ok => {}
            Outcome::Expected(code) => *stats.errors.entry(code).or_default() += 1,
            Outcome::Unexpected(message) => {
                let code = message.split(':').next().unwrap_or("?").to_owned();
                *stats.unexpected.entry(code).or_default() += 1;
                if self.samples.len() < 5 {
                    self.samples.push(format!("{op}: {message}"));
                }
            }
        }
        self.calls += 1;
        self.busy += took;
        if !ACCOUNT_OPERATIONS.contains(&op) {
            let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            self.timeline.push((ended, micros));
        }
    }

    /// The assignment's per-client throughput: calls / sum of response times.
    pub fn own_throughput(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.calls as f64 / secs
        } else {
            0.0
        }
    }
}

/// The report's figures for one operation (or a whole side).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    pub unexpected: BTreeMap<String, u64>,
}

/// The steady phase of a run: from the moment the last client's Login
/// answered to the moment the first client sent its Logout, when every client
/// is in its mix (no account operation is in flight).
#[derive(Debug, Clone)]
pub struct SteadyPhase {
    pub secs: f64,
    /// Calls completed within the phase (all of them mix operations).
    pub calls: u64,
    /// Their response times.
    pub latency: OpStats,
}

impl SteadyPhase {
    /// The steady phase of `clients`' run, if there is one (every client logged
    /// in before the first logged out; a client that never logged in is left
    /// out).
    pub fn of(clients: &[ClientStats]) -> Option<SteadyPhase> {
        let from = clients.iter().filter_map(|c| c.logged_in).max()?;
        let to = clients.iter().filter_map(|c| c.logging_out).min()?;
        if to <= from {
            return None;
        }
        let mut latency = OpStats::default();
        let mut calls = 0;
        for (end, micros) in clients.iter().flat_map(|c| c.timeline.iter()) {
            if *end > from && *end <= to {
                calls += 1;
                let _ = latency
                    .latency
                    .record(u64::from(*micros).clamp(1, 60_000_000));
            }
        }
        Some(SteadyPhase {
            secs: to.duration_since(from).as_secs_f64(),
            calls,
            latency,
        })
    }

    /// Calls per second within the phase.
    pub fn throughput(&self) -> f64 {
        if self.secs > 0.0 {
            self.calls as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Per side, per operation, with all operations of a side under `"all"`.
pub type BySide = BTreeMap<Side, BTreeMap<&'static str, OpStats>>;

/// Merges the per-operation stats of `clients` into `into`.
pub fn merge_clients<'a>(into: &mut BySide, clients: impl Iterator<Item = &'a ClientStats>) {
    for client in clients {
        let side = into.entry(client.side).or_default();
        for (op, stats) in &client.ops {
            side.entry(op).or_default().merge(stats);
            side.entry("all").or_default().merge(stats);
        }
    }
}

/// Merges two aggregates.
pub fn merge_into(into: &mut BySide, other: &BySide) {
    for (side, ops) in other {
        let target = into.entry(*side).or_default();
        for (op, stats) in ops {
            target.entry(op).or_default().merge(stats);
        }
    }
}

/// The per-side, per-operation stats of `clients`.
pub fn by_side_and_op<'a>(clients: impl Iterator<Item = &'a ClientStats>) -> BySide {
    let mut out = BySide::new();
    merge_clients(&mut out, clients);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge_and_summarise() {
        let mut a = ClientStats::new(Side::Buyer);
        a.record("Search", Duration::from_micros(1000), Outcome::Ok);
        a.record(
            "Search",
            Duration::from_micros(3000),
            Outcome::Expected("NOT_FOUND".into()),
        );
        a.record(
            "GetItem",
            Duration::from_micros(500),
            Outcome::Unexpected("INTERNAL: boom".into()),
        );
        assert_eq!(a.calls, 3);
        assert_eq!(a.busy, Duration::from_micros(4500));
        assert!((a.own_throughput() - 3.0 / 0.0045).abs() < 1e-6);
        let merged = by_side_and_op([&a, &a.clone()].into_iter());
        let all = merged[&Side::Buyer]["all"].summary();
        assert_eq!(all.count, 6);
        assert_eq!(all.errors["NOT_FOUND"], 2);
        assert_eq!(all.unexpected["INTERNAL"], 2);
        let search = merged[&Side::Buyer]["Search"].summary();
        assert!((search.avg_ms - 2.0).abs() < 0.01, "{}", search.avg_ms);
        assert!(search.max_ms >= 2.99 && search.max_ms <= 3.01);
        assert_eq!(a.samples, vec!["GetItem: INTERNAL: boom"]);
    }

    #[test]
    fn the_steady_phase_runs_from_the_last_login_to_the_first_logout() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let client = |login: u64, logout: u64, ends: &[(u64, u32)]| {
            let mut c = ClientStats::new(Side::Buyer);
            c.logged_in = Some(at(login));
            c.logging_out = Some(at(logout));
            c.timeline = ends.iter().map(|(ms, us)| (at(*ms), *us)).collect();
            c
        };
        // Logins end at 10 and 30 ms, logouts start at 130 and 90 ms: the
        // phase is 30-90 ms. Calls ending at 30 (the last login itself) and
        // after 90 are outside.
        let a = client(
            10,
            130,
            &[(10, 900), (40, 1_000), (80, 3_000), (120, 50_000)],
        );
        let b = client(30, 90, &[(30, 800), (60, 2_000), (90, 4_000), (95, 60_000)]);
        let phase = SteadyPhase::of(&[a.clone(), b]).expect("a steady phase");
        assert!((phase.secs - 0.060).abs() < 1e-9, "{}", phase.secs);
        assert_eq!(phase.calls, 4);
        assert!((phase.throughput() - 4.0 / 0.060).abs() < 1e-6);
        let summary = phase.latency.summary();
        assert_eq!(summary.count, 4);
        assert!(
            summary.max_ms > 3.9 && summary.max_ms < 4.1,
            "{}",
            summary.max_ms
        );
        // A client logging out before another logged in: no steady phase.
        let late = client(200, 300, &[]);
        assert!(SteadyPhase::of(&[a.clone(), late]).is_none());
        // A client that never logged in does not hold the phase back: a's
        // own phase is 10-130 ms, with three calls ending inside.
        let mut failed = client(0, 500, &[]);
        failed.logged_in = None;
        assert_eq!(SteadyPhase::of(&[a, failed]).map(|p| p.calls), Some(3));
        // Account operations never enter the timeline: the last Login ends
        // exactly where the phase starts and must not be counted in it.
        let mut c = ClientStats::new(Side::Seller);
        for op in ACCOUNT_OPERATIONS {
            c.record(op, Duration::from_millis(3), Outcome::Ok);
        }
        assert!(c.timeline.is_empty());
        c.record("GetSellerRating", Duration::from_millis(2), Outcome::Ok);
        assert_eq!(c.timeline.len(), 1);
        assert_eq!(c.timeline[0].1, 2_000);
    }
}
