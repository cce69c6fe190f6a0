//! `marketplace`: runs the whole marketplace on this machine.
//!
//! `marketplace up` starts a private PostgreSQL cluster (or uses the databases
//! given), both servers, writes the databases' URLs to `DATA_DIR/urls.env`,
//! prints `ready seller=ADDR buyer=ADDR ... urls=PATH`, and on SIGINT or
//! SIGTERM stops everything it started.

use deploy::pg::Durability;
use deploy::{ServerMode, Stack, StackConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The servers allocate with mimalloc rather than glibc's malloc: a
/// password hash's 19 MiB of working memory is then reused by the next hash
/// instead of mapped and faulted afresh, and a request's buffers, rows and
/// JSON come and go a little faster (docs/BENCHMARKS.md, "The servers'
/// allocator"). Transparent huge pages are off (the crate's `no_thp`): with
/// them an idle server held ~60 MB more for ~5% less CPU. Set here, in the
/// binary, so that libraries and their tests keep the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: marketplace up [flags]
       marketplace seller [flags]   (one seller server: see marketplace seller --help)
       marketplace buyer [flags]    (one buyer server: see marketplace buyer --help)

Starts PostgreSQL (a private cluster in --data-dir, created on first use),
both databases, the seller server and the buyer server; Ctrl-C stops them all.
Once all answer it writes the private cluster's database URLs to
DATA_DIR/urls.env (mode 0600) and prints one line (a space in FILE as %20):
  ready seller=ADDR buyer=ADDR [metrics=URL ...] [urls=FILE] [seller_pid=N buyer_pid=N]

  --data-dir DIR           cluster directory [default: ~/.local/share/marketplace,
                           or /var/lib/marketplace as root]
  --seller-listen ADDR     seller server address [default: 0.0.0.0:5001]
  --buyer-listen ADDR      buyer server address [default: 0.0.0.0:6001]
  --session-timeout SECS   session inactivity limit [default: 300]
  --workers N              worker threads (and database connections) per
                           server [default: 2 per core with the private
                           cluster, the lowest p99 measured with everything
                           on one machine; 16 with --customer-db/--product-db]
  --pg-port PORT           port of the private PostgreSQL [default: a free one]
  --customer-db URL        use this customer_db instead of a private cluster
  --product-db URL         use this product_db instead of a private cluster
  --log-requests           one log line per request
  --log-format text|json   log lines as text or as JSON objects [default: text]
  --metrics-listen ADDR    serve both servers' Prometheus metrics at
                           http://ADDR/metrics (and /health) [default: off]
  --server-processes       run each server as a process of its own
                           (marketplace seller|buyer), so that each has its
                           own CPU time; the ready line gives their pids
  --commit sync|async      async: PostgreSQL answers a commit before its WAL
                           is on disk (a crash loses the last writes; for
                           benchmarks only) [default: sync]";

fn default_data_dir() -> PathBuf {
    // PostgreSQL refuses to run as root, so as root it runs as `postgres`, which
    // must reach its directory: one outside any home directory.
    if deploy::pg::is_root() {
        return PathBuf::from(deploy::pg::ROOT_DATA_DIR);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("marketplace")
}

/// Worker threads per server when `--workers` is not given. With the private
/// cluster on the same machine, 2 per core: on 2 cores, 4 gave the best
/// throughput and p99 with durable commits at 100x100 (docs/BENCHMARKS.md;
/// more workers only add PostgreSQL backends competing for the same cores).
/// Databases elsewhere leave the cores to the servers, and a worker waits on
/// the network for each statement: 16.
fn default_workers(external_databases: bool, cores: usize) -> usize {
    if external_databases {
        16
    } else {
        2 * cores.max(1)
    }
}

fn config(args: &mut pico_args::Arguments) -> Result<StackConfig, String> {
    let value =
        |args: &mut pico_args::Arguments, flag: &'static str| -> Result<Option<String>, String> {
            args.opt_value_from_str(flag)
                .map_err(|e| format!("{flag}: {e}"))
        };
    let addr = |v: Option<String>, default: &str, flag: &str| -> Result<SocketAddr, String> {
        let v = v.unwrap_or_else(|| default.to_owned());
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not an address like 0.0.0.0:5001"))
    };
    let mut config =
        StackConfig::local(value(args, "--data-dir")?.map_or_else(default_data_dir, PathBuf::from));
    config.durability = match value(args, "--commit")?.as_deref() {
        None | Some("sync") => Durability::Durable,
        Some("async") => Durability::AsyncCommit,
        Some(other) => return Err(format!("--commit: {other:?} is not sync or async")),
    };
    config.seller_listen = addr(
        value(args, "--seller-listen")?,
        "0.0.0.0:5001",
        "--seller-listen",
    )?;
    config.buyer_listen = addr(
        value(args, "--buyer-listen")?,
        "0.0.0.0:6001",
        "--buyer-listen",
    )?;
    if let Some(secs) = value(args, "--session-timeout")? {
        let secs: f64 = match secs.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => s,
            Ok(_) => {
                return Err(format!(
                    "--session-timeout: {secs:?} is not above 0 seconds"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "--session-timeout: {}",
                    server::settings::not_seconds(&secs)
                ))
            }
        };
        config.session_timeout = Duration::from_secs_f64(secs);
    }
    let workers = match value(args, "--workers")? {
        Some(n) => Some(
            n.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("--workers must be at least 1")?,
        ),
        None => None,
    };
    if let Some(port) = value(args, "--pg-port")? {
        config.pg_port = port
            .parse()
            .map_err(|_| "--pg-port must be a port number")?;
    }
    config.external = match (value(args, "--customer-db")?, value(args, "--product-db")?) {
        (Some(c), Some(p)) => Some((c, p)),
        (None, None) => None,
        _ => return Err("--customer-db and --product-db go together".into()),
    };
    config.workers = workers.unwrap_or_else(|| {
        default_workers(
            config.external.is_some(),
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )
    });
    config.trace = args.contains("--log-requests");
    if args.contains("--server-processes") {
        let exe = std::env::current_exe()
            .map_err(|e| format!("--server-processes: cannot find this program: {e}"))?;
        config.servers = ServerMode::Processes {
            exe,
            prefix: vec![],
        };
    }
    if let Some(addr) = value(args, "--metrics-listen")? {
        config.metrics_listen = Some(addr.parse().map_err(|_| {
            format!("--metrics-listen: {addr:?} is not an address like 127.0.0.1:9101")
        })?);
    }
    if let Some(format) = value(args, "--log-format")? {
        let format = net::log::Format::parse(&format)
            .ok_or_else(|| format!("--log-format: {format:?} is not text or json"))?;
        net::log::set_format(format);
    }
    Ok(config)
}

/// `DATA_DIR/urls.env`: the databases' URLs as `NAME=URL` lines, for a
/// second server, a tool or psql pointed at this stack. Written anew (mode
/// 0600 from its creation: a URL may carry a password) and moved into place.
fn write_urls(path: &std::path::Path, db: &store::DbSettings) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("env.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    writeln!(file, "CUSTOMER_DB_URL={}", db.customer_url)?;
    writeln!(file, "PRODUCT_DB_URL={}", db.product_url)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// `ready seller=ADDR buyer=ADDR [metrics=URL ...] [urls=FILE] [seller_pid=N
/// buyer_pid=N]`: what a script or loadgen reads to use the stack. Fields are
/// separated by spaces, so a space in FILE is written `%20` (and `%` as `%25`).
fn ready_line(stack: &Stack, urls: Option<&std::path::Path>) -> String {
    let mut line = format!(
        "ready seller={} buyer={}",
        stack.seller_addr(),
        stack.buyer_addr()
    );
    for addr in stack.metrics_addrs() {
        line.push_str(&format!(" metrics=http://{addr}/metrics"));
    }
    if let Some(urls) = urls {
        let file = urls.display().to_string();
        line.push_str(&format!(
            " urls={}",
            file.replace('%', "%25").replace(' ', "%20")
        ));
    }
    for (name, pid) in stack.server_pids() {
        line.push_str(&format!(" {name}_pid={pid}"));
    }
    line
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = deploy::serve_subcommand(&raw) {
        return code;
    }
    let mut args = pico_args::Arguments::from_vec(raw);
    if args.contains(["-h", "--help"]) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match args.subcommand() {
        Ok(Some(cmd)) if cmd == "up" => {}
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let config = match config(&mut args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("marketplace: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rest = args.finish();
    if !rest.is_empty() {
        eprintln!("marketplace: unexpected arguments {rest:?}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("marketplace: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stack = match Stack::start(&config) {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("marketplace: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With databases of its own, their URLs for other programs; given
    // databases' URLs the caller has already.
    let urls = config
        .external
        .is_none()
        .then(|| config.data_dir.join("urls.env"));
    if let Some(urls) = &urls {
        if let Err(e) = write_urls(urls, stack.db()) {
            eprintln!("marketplace: cannot write {}: {e}", urls.display());
            stack.stop();
            return ExitCode::FAILURE;
        }
    }
    println!("{}", ready_line(&stack, urls.as_deref()));
    if signals.forever().next().is_some() {
        net::log::line("marketplace", "INFO", "stopping");
    }
    stack.stop();
    ExitCode::SUCCESS
}
