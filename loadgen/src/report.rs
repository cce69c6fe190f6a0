//! What a load test measured: per run and over all runs of a scenario, per side
//! and per operation; printed as tables and written as JSON.

use crate::procfs::ProcSample;
use crate::stats::{by_side_and_op, BySide, ClientStats, OpStats, Side, SteadyPhase, Summary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The conditions of the whole invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    pub date: String,
    pub commit: String,
    pub cpus: usize,
    pub target: String,
    pub mix: String,
    pub calls_per_client: usize,
    pub runs: usize,
    pub seed: u64,
    /// Whether clients waited for each other after Login.
    pub start_line: bool,
    /// Mean pause before each mix call.
    pub think_ms: u64,
}

/// One server's use of the machine during one run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUse {
    pub server: String,
    pub cpu_secs: f64,
    pub peak_rss_mib: f64,
}

/// One run of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: usize,
    pub wall_secs: f64,
    pub calls: u64,
    /// Calls completed / wall seconds of the run.
    pub system_throughput: f64,
    /// The assignment's figure: per client, calls / sum of its response
    /// times; averaged over the clients of each side.
    pub per_client_throughput: BTreeMap<Side, f64>,
    pub sides: BTreeMap<Side, BTreeMap<String, Summary>>,
    pub unexpected_errors: u64,
    pub unexpected_samples: Vec<String>,
    pub servers: Vec<ServerUse>,
    /// The steady phase: every client logged in and none logging out yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady: Option<Steady>,
}

/// A run's steady phase (see [`SteadyPhase`]).
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    pub secs: f64,
    pub calls: u64,
    /// Calls completed within the phase / its length.
    pub steady_throughput: f64,
    /// The response times of those calls.
    pub latency: Summary,
}

/// A scenario: its runs and the figures over all of them.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub sellers: usize,
    pub buyers: usize,
    pub runs: Vec<RunReport>,
    /// Histograms merged over all runs.
    pub all_runs: BTreeMap<Side, BTreeMap<String, Summary>>,
    pub system_throughput_mean: f64,
    pub per_client_throughput_mean: BTreeMap<Side, f64>,
    /// Last run's system throughput over the first's.
    pub last_over_first: f64,
    pub unexpected_errors: u64,
    /// The servers' own p99 (ms) per operation over all runs, from their
    /// metrics endpoints (empty when they were not read).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub server_p99_ms: BTreeMap<Side, BTreeMap<String, f64>>,
    /// Mean of the runs' steady throughputs (runs without a steady phase
    /// left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_throughput: Option<f64>,
    /// The steady phases' response times, all runs merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_latency: Option<Summary>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub conditions: Conditions,
    pub scenarios: Vec<ScenarioReport>,
}

fn summaries(merged: &BySide) -> BTreeMap<Side, BTreeMap<String, Summary>> {
    merged
        .iter()
        .map(|(side, ops)| {
            (
                *side,
                ops.iter()
                    .map(|(op, s)| ((*op).to_owned(), s.summary()))
                    .collect(),
            )
        })
        .collect()
}

fn unexpected(sides: &BTreeMap<Side, BTreeMap<String, Summary>>) -> u64 {
    sides
        .values()
        .filter_map(|ops| ops.get("all"))
        .map(|s| s.unexpected.values().sum::<u64>())
        .sum()
}

/// One run's stats, for the scenario's figures over all runs.
#[derive(Debug, Default)]
pub struct RunStats {
    pub by_side: BySide,
    /// The steady phase's response times, if the run had one.
    pub steady: Option<OpStats>,
}

/// Builds one run's report from its clients; also returns the run's merged
/// stats, for the scenario's figures over all runs.
pub fn run_report(
    run: usize,
    wall_secs: f64,
    clients: &[ClientStats],
    servers: Vec<ServerUse>,
) -> (RunReport, RunStats) {
    let calls: u64 = clients.iter().map(|c| c.calls).sum();
    let mut per_client = BTreeMap::new();
    for side in [Side::Seller, Side::Buyer] {
        let of_side: Vec<f64> = clients
            .iter()
            .filter(|c| c.side == side)
            .map(ClientStats::own_throughput)
            .collect();
        if !of_side.is_empty() {
            per_client.insert(side, of_side.iter().sum::<f64>() / of_side.len() as f64);
        }
    }
    let merged = by_side_and_op(clients.iter());
    let sides = summaries(&merged);
    let phase = SteadyPhase::of(clients);
    let steady = phase.as_ref().map(|p| Steady {
        secs: p.secs,
        calls: p.calls,
        steady_throughput: p.throughput(),
        latency: p.latency.summary(),
    });
    let report = RunReport {
        run,
        wall_secs,
        calls,
        system_throughput: if wall_secs > 0.0 {
            calls as f64 / wall_secs
        } else {
            0.0
        },
        per_client_throughput: per_client,
        unexpected_errors: unexpected(&sides),
        unexpected_samples: clients
            .iter()
            .flat_map(|c| c.samples.clone())
            .take(10)
            .collect(),
        sides,
        servers,
        steady,
    };
    let stats = RunStats {
        by_side: merged,
        steady: phase.map(|p| p.latency),
    };
    (report, stats)
}

/// Builds a scenario's report from its runs and their merged stats.
pub fn scenario_report(
    sellers: usize,
    buyers: usize,
    runs: Vec<RunReport>,
    merged: &BySide,
    steady: Option<&OpStats>,
) -> ScenarioReport {
    let steady_runs: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.steady.as_ref().map(|s| s.steady_throughput))
        .collect();
    let n = runs.len().max(1) as f64;
    let mut per_client = BTreeMap::new();
    for side in [Side::Seller, Side::Buyer] {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.per_client_throughput.get(&side).copied())
            .collect();
        if !values.is_empty() {
            per_client.insert(side, values.iter().sum::<f64>() / values.len() as f64);
        }
    }
    let first = runs.first().map_or(0.0, |r| r.system_throughput);
    let last = runs.last().map_or(0.0, |r| r.system_throughput);
    let all_runs = summaries(merged);
    ScenarioReport {
        scenario: format!("{sellers}x{buyers}"),
        sellers,
        buyers,
        system_throughput_mean: runs.iter().map(|r| r.system_throughput).sum::<f64>() / n,
        per_client_throughput_mean: per_client,
        last_over_first: if first > 0.0 { last / first } else { 0.0 },
        unexpected_errors: unexpected(&all_runs),
        all_runs,
        runs,
        server_p99_ms: BTreeMap::new(),
        steady_throughput: (!steady_runs.is_empty())
            .then(|| steady_runs.iter().sum::<f64>() / steady_runs.len() as f64),
        steady_latency: steady.map(OpStats::summary),
    }
}

/// One line about one run.
pub fn run_line(r: &RunReport) -> String {
    let mut line = format!(
        "run {:>2}: {} calls in {:.2} s = {:.0} ops/s (system); per client {} ops/s",
        r.run,
        r.calls,
        r.wall_secs,
        r.system_throughput,
        r.per_client_throughput
            .iter()
            .map(|(side, t)| format!("{} {t:.0}", side.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &r.servers {
        let _ = write!(
            line,
            "; {} {:.1} CPU s, peak {:.0} MiB",
            s.server, s.cpu_secs, s.peak_rss_mib
        );
    }
    if r.unexpected_errors > 0 {
        let _ = write!(
            line,
            "; {} UNEXPECTED ERRORS: {:?}",
            r.unexpected_errors, r.unexpected_samples
        );
    }
    line
}

/// The per-operation table of a scenario (all runs merged).
pub fn table(s: &ScenarioReport) -> String {
    // The servers' own p99 beside the clients', when their metrics were read.
    let server = !s.server_p99_ms.is_empty();
    let mut out = format!(
        "{:<8} {:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}{}  errors\n",
        "side",
        "operation",
        "count",
        "avg ms",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        if server { "  srv p99" } else { "" }
    );
    for (side, ops) in &s.all_runs {
        let mut names: Vec<&String> = ops.keys().filter(|k| *k != "all").collect();
        names.push(ops.keys().find(|k| *k == "all").unwrap_or(names[0]));
        for op in names {
            let m = &ops[op];
            let mut errors: Vec<String> =
                m.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
            errors.extend(
                m.unexpected
                    .iter()
                    .map(|(c, n)| format!("UNEXPECTED {c} {n}")),
            );
            let srv = match s.server_p99_ms.get(side).and_then(|ops| ops.get(op)) {
                Some(ms) => format!(" {ms:>8.3}"),
                None if server => format!(" {:>8}", "-"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<8} {:<20} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3}{srv}  {}",
                side.name(),
                op,
                m.count,
                m.avg_ms,
                m.p50_ms,
                m.p90_ms,
                m.p99_ms,
                m.p999_ms,
                m.max_ms,
                errors.join(", ")
            );
        }
    }
    if let (Some(throughput), Some(m)) = (s.steady_throughput, &s.steady_latency) {
        let _ = writeln!(
            out,
            "steady phase: {throughput:.0} ops/s (mean of runs), {} calls; \
             avg {:.3} ms, p50 {:.3}, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
            m.count, m.avg_ms, m.p50_ms, m.p90_ms, m.p99_ms, m.p999_ms, m.max_ms
        );
    } else {
        out.push_str("steady phase: none (a client logged out before the last logged in)\n");
    }
    out
}

/// The server's use of the machine between two readings.
pub fn server_use(
    name: &str,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
) -> Option<ServerUse> {
    let (before, after) = (before?, after?);
    Some(ServerUse {
        server: name.to_owned(),
        cpu_secs: after.cpu_secs - before.cpu_secs,
        peak_rss_mib: after.peak_rss_mib,
    })
}
