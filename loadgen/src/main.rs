//! `loadgen`: runs the 1x1 / 10x10 / 100x100 evaluation against a local stack
//! it starts itself, or against servers given by address. See `--help`.

use indicatif::{ProgressBar, ProgressStyle};
use loadgen::mix::Mix;
use loadgen::report::{self, Conditions, Report, ServerUse};
use loadgen::stats::{merge_into, BySide, OpStats, Side};
use loadgen::workload::{self, Plan};
use loadgen::{chart, local, procfs};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: loadgen [flags]

Runs S sellers and B buyers at once, each with its own connection, account and
session, N calls each per run (CreateAccount, Login and Logout included), R runs
per scenario. Without --seller/--buyer it starts the local stack itself
(`marketplace up` with a fresh PostgreSQL cluster and both servers as
processes) and stops it at the end.

  --scenario LIST     scenarios as SxB, comma-separated [default: 1x1,10x10,100x100]
  --ops N             calls per client per run (at least 3) [default: 1000]
  --runs R            runs per scenario [default: 10]
  --seed S            random seed of the workload [default: 1]
  --think MS          each client pauses before each call of its mix, uniformly
                      0 to 2 x MS (not timed): people between clicks rather
                      than clients calling back to back [default: 0]
  --mix NAME          default, browse, seed (the course evaluation), search
                      (the query shapes of --catalogue, timed per shape), or
                      register (sellers only list items, kept on sale)
                      [default: default]
  --catalogue N       first add N items to product_db (in PostgreSQL, through
                      the registration triggers; the distribution is in
                      loadgen/src/catalogue.rs): the local stack's, or --product-db's
  --product-db URL    the product_db --catalogue fills when --seller/--buyer are
                      given (e.g. marketplace up's)
  --seller ADDR       load this seller server instead of starting a stack;
                      several as ADDR,ADDR,...: each client starts at one
                      (in turn) and moves to the next when its connection fails
  --buyer ADDR        load this buyer server, or several (with --seller)
  --tls               speak TLS to --seller and --buyer (a proxy's TLS ports),
                      checking that each proves the host name of its address
  --ca FILE           the certificate authorities to trust, PEM (implies --tls)
  --workers N         worker threads (and connections per database) per server of
                      the local stack [default: 4, the lowest p99 measured on 2 cores]
  --commit MODE       the local stack's PostgreSQL commits: sync (acknowledged once
                      on disk) or async (synchronous_commit=off: a crash can lose
                      the last ~0.6 s of commits) [default: async]
  --data-dir DIR      where the local stack's cluster goes [default: a fresh temp dir]
  --marketplace PATH  the marketplace binary that starts the local stack
                      [default: the one beside loadgen]
  --out FILE          the JSON report [default: loadgen-report.json]
  --svg FILE          the SVG chart [default: the --out file with .svg]
  --label TEXT        the commit shown in the report [default: git rev-parse --short HEAD]
  --retry-attempts N  connection attempts per call, with backoff capped at 1 s,
                      before the call counts as failed [default: 3]
  --tolerate          count malformed replies (errors without a code, results
                      missing a field: servers written for the predecessor's
                      clients) as expected errors, by kind, not as failures
  --no-start-line     clients start their mix as soon as they have logged in
                      (the default of the seed mix, whose login storm overlaps
                      the other calls); otherwise, every client waits after its
                      Login until all have logged in, so that the steady phase
                      (all logged in, none logging out) spans the mix
  --start-line        wait for each other after Login, in the seed mix too
  --no-keys           send writes without idempotency keys (to measure what keys
                      cost; clients then never resend a write)
  --metrics URLS      the servers' metrics endpoints (comma-separated), read
                      before and after each scenario to put the servers' own p99
                      per operation beside the clients' [default: the local
                      stack's own endpoints; none with --seller/--buyer]
  --no-metrics        do not read (or, for the local stack, serve) metrics";

struct Options {
    scenarios: Vec<(usize, usize)>,
    ops: usize,
    runs: usize,
    seed: u64,
    mix: Mix,
    target: Option<(String, String)>,
    workers: usize,
    /// The local stack's commits are answered before their WAL is on disk.
    async_commit: bool,
    data_dir: Option<PathBuf>,
    marketplace: Option<PathBuf>,
    out: PathBuf,
    svg: PathBuf,
    label: Option<String>,
    keys: bool,
    retry_attempts: u32,
    tolerate: bool,
    /// Clients wait for each other after Login.
    start_line: bool,
    /// Mean pause before each mix call.
    think: Duration,
    /// Items to add to product_db before the runs.
    catalogue: Option<i64>,
    product_db: Option<String>,
    /// Metrics endpoints to read; None: the local stack's, if any.
    metrics: Option<Vec<String>>,
    no_metrics: bool,
    /// TLS to the seller and to the buyer server.
    tls: Option<(client::tls::Tls, client::tls::Tls)>,
}

fn options(mut args: pico_args::Arguments) -> Result<Options, String> {
    let value =
        |args: &mut pico_args::Arguments, flag: &'static str| -> Result<Option<String>, String> {
            args.opt_value_from_str(flag)
                .map_err(|e| format!("{flag}: {e}"))
        };
    let number = |v: Option<String>, flag: &str, default: u64| -> Result<u64, String> {
        v.map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        })
    };
    let scenarios = value(&mut args, "--scenario")?
        .unwrap_or_else(|| "1x1,10x10,100x100".into())
        .split(',')
        .map(|s| {
            let (a, b) = s
                .trim()
                .split_once('x')
                .ok_or(format!("--scenario: {s:?} is not SxB"))?;
            match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if a + b > 0 => Ok((a, b)),
                _ => Err(format!("--scenario: {s:?} is not SxB")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ops = number(value(&mut args, "--ops")?, "--ops", 1000)? as usize;
    if ops < 3 {
        return Err("--ops must be at least 3 (CreateAccount, Login, Logout)".into());
    }
    let runs = number(value(&mut args, "--runs")?, "--runs", 10)? as usize;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let seed = number(value(&mut args, "--seed")?, "--seed", 1)?;
    let think = Duration::from_millis(number(value(&mut args, "--think")?, "--think", 0)?);
    let mix = match value(&mut args, "--mix")? {
        Some(m) => Mix::parse(&m).ok_or(format!(
            "--mix: {m:?} is not default, browse, seed, search or register"
        ))?,
        None => Mix::Default,
    };
    let target = match (value(&mut args, "--seller")?, value(&mut args, "--buyer")?) {
        (Some(s), Some(b)) => Some((s, b)),
        (None, None) => None,
        _ => return Err("--seller and --buyer go together".into()),
    };
    let workers = number(value(&mut args, "--workers")?, "--workers", 4)? as usize;
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let async_commit = match value(&mut args, "--commit")?.as_deref() {
        None | Some("async") => true,
        Some("sync") => false,
        Some(other) => return Err(format!("--commit: {other:?} is not sync or async")),
    };
    let data_dir = value(&mut args, "--data-dir")?.map(PathBuf::from);
    let marketplace = value(&mut args, "--marketplace")?.map(PathBuf::from);
    let out =
        PathBuf::from(value(&mut args, "--out")?.unwrap_or_else(|| "loadgen-report.json".into()));
    let svg = value(&mut args, "--svg")?.map_or_else(|| out.with_extension("svg"), PathBuf::from);
    let label = value(&mut args, "--label")?;
    let keys = !args.contains("--no-keys");
    let tolerate = args.contains("--tolerate");
    let start_line = match (
        args.contains("--start-line"),
        args.contains("--no-start-line"),
    ) {
        (true, true) => return Err("--start-line and --no-start-line contradict".into()),
        (true, false) => true,
        (false, true) => false,
        (false, false) => mix != Mix::Seed,
    };
    let catalogue = match value(&mut args, "--catalogue")? {
        Some(n) => Some(
            n.parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(format!("--catalogue: {n:?} is not a number of items"))?,
        ),
        None => None,
    };
    let product_db = value(&mut args, "--product-db")?;
    if catalogue.is_some() && target.is_some() && product_db.is_none() {
        return Err("--catalogue with --seller/--buyer needs --product-db URL".into());
    }
    let no_metrics = args.contains("--no-metrics");
    let metrics = value(&mut args, "--metrics")?.map(|list| {
        list.split(',')
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(|u| {
                if u.contains("://") {
                    u.to_owned()
                } else {
                    format!("http://{u}/metrics")
                }
            })
            .collect::<Vec<_>>()
    });
    let retry_attempts = number(value(&mut args, "--retry-attempts")?, "--retry-attempts", 3)?;
    let retry_attempts = u32::try_from(retry_attempts)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or("--retry-attempts must be 1 to 4294967295")?;
    let tls_flag = args.contains("--tls");
    let ca: Option<PathBuf> = value(&mut args, "--ca")?.map(PathBuf::from);
    let tls = match (&ca, &target) {
        (None, _) if tls_flag => return Err("--tls needs --ca FILE".into()),
        (None, _) => None,
        (Some(_), None) => {
            return Err("--tls and --ca are for --seller/--buyer (a proxy's TLS ports)".into())
        }
        (Some(ca), Some((seller, buyer))) => {
            // The name the certificate must prove: the first server's (a
            // list of proxies shares one certificate).
            let tls = |addr: &str| {
                let first = addr.split(',').next().unwrap_or(addr);
                client::tls::Tls::from_ca_file(ca, client::tls::host_of(first))
            };
            Some((tls(seller)?, tls(buyer)?))
        }
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments {rest:?}"));
    }
    Ok(Options {
        tls,
        scenarios,
        ops,
        runs,
        seed,
        mix,
        target,
        workers,
        async_commit,
        data_dir,
        marketplace,
        out,
        svg,
        label,
        keys,
        retry_attempts,
        tolerate,
        start_line,
        think,
        metrics,
        no_metrics,
        catalogue,
        product_db,
    })
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            // Outside a git checkout: the build's version at least.
            || format!("loadgen {}", env!("CARGO_PKG_VERSION")),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map_or_else(String::new, |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// Runs one run of a scenario on `runtime`; returns its report and merged
/// stats.
fn one_run(
    o: &Options,
    runtime: &tokio::runtime::Runtime,
    tag: &str,
    (sellers, buyers): (usize, usize),
    run: usize,
    addrs: &(Arc<[SocketAddr]>, Arc<[SocketAddr]>),
    pids: &[(&'static str, u32)],
) -> (report::RunReport, report::RunStats) {
    let clients = sellers + buyers;
    let progress = Arc::new(AtomicU64::new(0));
    let start_line = o
        .start_line
        .then(|| Arc::new(tokio::sync::Barrier::new(clients)));
    let before: Vec<_> = pids.iter().map(|(_, pid)| procfs::sample(*pid)).collect();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new((clients * o.ops) as u64);
        bar.set_style(
            ProgressStyle::with_template("  run {msg} [{bar:40}] {pos}/{len} calls {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{run}"));
        bar
    });
    // Every client is a task; they all start at once.
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let (side, index, addr) = if k < sellers {
                (Side::Seller, k, addrs.0.clone())
            } else {
                (Side::Buyer, k - sellers, addrs.1.clone())
            };
            let tls = o.tls.as_ref().map(|(seller, buyer)| match side {
                Side::Seller => seller.clone(),
                Side::Buyer => buyer.clone(),
            });
            let plan = Plan {
                side,
                index,
                run,
                calls: o.ops,
                seed: o.seed,
                mix: o.mix,
                tag: tag.to_owned(),
                keys: o.keys,
                retry_attempts: o.retry_attempts,
                tolerate: o.tolerate,
                start_line: start_line.clone(),
                think: o.think,
                tls,
            };
            let progress = progress.clone();
            runtime.spawn(async move {
                let stats = workload::run(plan, addr, progress).await;
                (stats, Instant::now())
            })
        })
        .collect();
    while !tasks.iter().all(|t| t.is_finished()) {
        if let Some(bar) = &bar {
            bar.set_position(progress.load(std::sync::atomic::Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let finished: Vec<_> = tasks
        .into_iter()
        .filter_map(|t| runtime.block_on(t).ok())
        .collect();
    // From the common start to the last client's last reply (the polling above
    // only feeds the progress bar).
    let wall = finished
        .iter()
        .map(|(_, at)| at.duration_since(started))
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let stats: Vec<_> = finished.into_iter().map(|(stats, _)| stats).collect();
    let servers: Vec<ServerUse> = pids
        .iter()
        .zip(before)
        .filter_map(|((name, pid), before)| report::server_use(name, before, procfs::sample(*pid)))
        .collect();
    report::run_report(run, wall, &stats, servers)
}

/// Refuses a seller address that answers as a buyer server or the reverse
/// (Ping's `server`), before any client starts: swapped addresses would
/// otherwise show up as every call's MISSING_FIELD. A server that does not
/// say which side it serves (one written elsewhere) is taken at its word.
fn check_sides(o: &Options, addrs: &(String, String)) -> Result<(), String> {
    let ping = wire::seller::Request::Ping(wire::request::NoFields {});
    for (flag, side, addr, index) in [
        ("--seller", "seller", &addrs.0, 0),
        ("--buyer", "buyer", &addrs.1, 1),
    ] {
        let config = client::ClientConfig {
            retry: client::Retry {
                attempts: 3,
                ..client::Retry::default()
            },
            ..client::ClientConfig::default()
        };
        let Ok(mut conn) = client::Client::lazy(addr, config) else {
            continue;
        };
        if let Some((seller_tls, buyer_tls)) = &o.tls {
            conn.use_tls(if index == 0 { seller_tls } else { buyer_tls }.clone());
        }
        let answer = conn.call_request::<_, wire::response::Pong>(&ping);
        if let Ok(wire::Response {
            body: Some(pong), ..
        }) = answer
        {
            if pong.server != side && (pong.server == "seller" || pong.server == "buyer") {
                return Err(format!(
                    "{flag} {addr} is a {} server; swap --seller and --buyer?",
                    pong.server
                ));
            }
        }
    }
    Ok(())
}

/// `host:port` (or several, comma-separated) as socket addresses (the first
/// each resolves to).
fn resolve(addrs: &str) -> Result<Arc<[SocketAddr]>, String> {
    let servers = client::Servers::parse(addrs)?;
    servers
        .all()
        .iter()
        .map(|addr| {
            addr.to_socket_addrs()
                .map_err(|e| format!("{addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr} resolves to no address"))
        })
        .collect()
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut args = pico_args::Arguments::from_vec(raw);
    if args.contains(["-h", "--help"]) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (stack, temp, addrs) = match &o.target {
        Some(addrs) => {
            if let Err(e) = check_sides(&o, addrs) {
                eprintln!("loadgen: {e}");
                return ExitCode::from(2);
            }
            (None, None, addrs.clone())
        }
        None => {
            let Some(exe) = o.marketplace.clone().or_else(local::beside_this_program) else {
                eprintln!(
                    "loadgen: no marketplace binary beside loadgen to start the local stack: \
                     build it (cargo build --release -p deploy), name it with --marketplace \
                     PATH, or load running servers with --seller/--buyer"
                );
                return ExitCode::FAILURE;
            };
            let dir = o.data_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("marketplace-loadgen-{}", std::process::id()))
            });
            let options = local::Options {
                exe,
                data_dir: dir.join("cluster"),
                workers: o.workers,
                async_commit: o.async_commit,
                metrics: !o.no_metrics,
            };
            match local::LocalStack::start(&options) {
                Ok(stack) => {
                    let addrs = (stack.ready.seller.clone(), stack.ready.buyer.clone());
                    (Some(stack), o.data_dir.is_none().then_some(dir), addrs)
                }
                Err(e) => {
                    eprintln!("loadgen: cannot start the local stack: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    // Interrupted: clients stop before their next call, the runs end, and the
    // normal path below stops what we started (PostgreSQL included).
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    eprintln!("loadgen: interrupted; stopping");
                    workload::ABORT.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        Err(e) => eprintln!("loadgen: cannot watch for signals: {e}"),
    }
    if let Some(n) = o.catalogue {
        let url = o
            .product_db
            .clone()
            .map(Ok)
            .or_else(|| stack.as_ref().map(|s| s.product_db_url()));
        let loaded = url
            .unwrap_or_else(|| Err("no product_db to fill".to_owned()))
            .and_then(|url| loadgen::catalogue::load(&url, n));
        if let Err(e) = loaded {
            eprintln!("loadgen: --catalogue: {e}");
            return ExitCode::FAILURE;
        }
    }
    let pids = stack
        .as_ref()
        .map(|s| s.ready.pids.clone())
        .unwrap_or_default();
    let resolved = match (resolve(&addrs.0), resolve(&addrs.1)) {
        (Ok(seller), Ok(buyer)) => (seller, buyer),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The clients' threads: one per core, as many as the servers' reactors.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("loadgen-client")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the clients' runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics: Vec<String> = if o.no_metrics {
        Vec::new()
    } else {
        o.metrics.clone().unwrap_or_else(|| {
            stack
                .as_ref()
                .map_or_else(Vec::new, |s| s.ready.metrics.clone())
        })
    };
    let scrape = |when: &str| -> Option<loadgen::scrape::Buckets> {
        if metrics.is_empty() {
            return None;
        }
        loadgen::scrape::read(&metrics)
            .map_err(|e| eprintln!("loadgen: {e} ({when} the scenario; no server p99)"))
            .ok()
    };
    let conditions = Conditions {
        date: today(),
        commit: o.label.clone().unwrap_or_else(commit),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        target: match &o.target {
            Some((s, b)) => format!("servers at {s} and {b}"),
            None => format!(
                "local stack, {} workers per server, {} commits, all co-located",
                o.workers,
                if o.async_commit { "async" } else { "sync" }
            ),
        },
        mix: o.mix.name().into(),
        calls_per_client: o.ops,
        runs: o.runs,
        seed: o.seed,
        start_line: o.start_line,
        think_ms: o.think.as_millis() as u64,
    };
    println!(
        "loadgen: {}, {} CPUs, commit {}, seed {}\n{}",
        conditions.target, conditions.cpus, conditions.commit, o.seed, o.mix
    );
    // Usernames unique to this invocation, so servers that already ran a load
    // test take another.
    let tag = format!(
        "lg{:x}",
        std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8)
    );
    let mut scenarios = Vec::new();
    for &(sellers, buyers) in &o.scenarios {
        if workload::ABORT.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        println!(
            "\nscenario {sellers}x{buyers}: {} calls per client, {} run{}",
            o.ops,
            o.runs,
            if o.runs == 1 { "" } else { "s" }
        );
        let mut runs = Vec::new();
        let mut merged = BySide::new();
        let mut steady: Option<OpStats> = None;
        let before = scrape("before");
        for run in 1..=o.runs {
            if workload::ABORT.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let (report, stats) = one_run(
                &o,
                &runtime,
                &format!("{tag}s{sellers}x{buyers}"),
                (sellers, buyers),
                run,
                &resolved,
                &pids,
            );
            println!("  {}", report::run_line(&report));
            merge_into(&mut merged, &stats.by_side);
            if let Some(phase) = &stats.steady {
                steady.get_or_insert_with(OpStats::default).merge(phase);
            }
            runs.push(report);
        }
        let mut s = report::scenario_report(sellers, buyers, runs, &merged, steady.as_ref());
        if let (Some(before), Some(after)) = (before, scrape("after")) {
            s.server_p99_ms = loadgen::scrape::p99_between(&before, &after);
        }
        println!(
            "  mean {:.0} ops/s (system); last run / first run = {:.3}; unexpected errors {}",
            s.system_throughput_mean, s.last_over_first, s.unexpected_errors
        );
        print!("{}", report::table(&s));
        scenarios.push(s);
    }
    let report = Report {
        conditions,
        scenarios,
    };
    let mut failed = report.scenarios.iter().any(|s| s.unexpected_errors > 0);
    match simd_json::to_string_pretty(&report) {
        Ok(json) => {
            if let Err(e) = std::fs::write(&o.out, json) {
                eprintln!("loadgen: cannot write {}: {e}", o.out.display());
                failed = true;
            }
        }
        Err(e) => {
            eprintln!("loadgen: cannot encode the report: {e}");
            failed = true;
        }
    }
    if let Err(e) = chart::write_svg(&o.svg, &report) {
        eprintln!("loadgen: {e}");
        failed = true;
    }
    println!("\nreport: {}  chart: {}", o.out.display(), o.svg.display());
    if let Some(stack) = stack {
        stack.stop();
    }
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
    if workload::ABORT.load(std::sync::atomic::Ordering::SeqCst) {
        return ExitCode::from(130);
    }
    if failed {
        eprintln!("loadgen: unexpected errors or unwritten outputs: the run failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
