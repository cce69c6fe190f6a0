//! What both marketplace servers are made of besides their handlers: flags
//! with environment twins ([`settings`]), the process `main`, the adapter from
//! a side's typed `Handler` to the reactor ([`Served`]), a server prepared on
//! its databases with its [`housekeeping`] ([`prepare`]), and the Prometheus
//! exporter of the transport's and the marketplace's counters ([`metrics`]).
//!
//! It owns process policy (exit codes, signals, what is logged when); `net`
//! and `store` stay libraries. The allocator is the binaries' choice
//! (`seller_srv`, `buyer_srv` and `marketplace` set mimalloc). `seller_srv` and
//! `buyer_srv` each describe their [`Side`] and implement their handler;
//! everything else is here, once.

mod adapter;
pub mod housekeeping;
pub mod metrics;
pub mod settings;

pub use adapter::{mentions_operation, serve, Served};
pub use settings::ServerSettings;

use metrics::{Exporter, Metrics};
use settings::{arguments, db_from_args, DB_ENV, DB_USAGE, ENV, USAGE};
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use store::search::FOLD_EVERY;
use store::{DbSettings, Store, StoreError};
use wire::Operation;

/// How long a server waits at start for its databases (a container may start
/// before them).
pub const DB_WAIT: Duration = Duration::from_secs(30);

/// What differs between the two servers.
pub struct Side<R: Operation> {
    /// The name in logs (`seller_srv`).
    pub name: &'static str,
    /// The `server` label of the metrics (`seller`).
    pub server: &'static str,
    /// Where it listens unless told otherwise.
    pub default_listen: &'static str,
    /// Every operation it serves.
    pub operations: &'static [&'static str],
    /// The operations that hash a password: they go to the slow lane, so a
    /// login storm never holds the workers that serve everyone else.
    pub slow: &'static [&'static str],
    /// Its handler over the store.
    pub handler: fn(Store) -> Arc<R::Handler>,
    /// Its own chores, once per sweep interval (expired sessions, and on the
    /// buyer side interrupted purchases), beside the common ones.
    pub chores: fn(&Store, &Metrics) -> Result<(), String>,
}

/// Opens and migrates the databases (waiting up to `db_wait` for them), binds
/// the listeners, and returns the server ready to run, with its housekeeping
/// beside it: every second the search counts are folded (and a change of the
/// product_db standby's state is logged); once per sweep interval the side's
/// chores and the sweep of old idempotency keys.
///
/// # Errors
/// A message when a database stays unreachable or an address cannot be bound.
pub fn prepare<R>(
    side: &Side<R>,
    settings: &ServerSettings,
    db: &DbSettings,
    db_wait: Duration,
    exporter: &Exporter,
) -> Result<Prepared, String>
where
    R: Operation + 'static,
    R::Handler: Send + Sync + 'static,
{
    let store = Store::open_migrated(db, db_wait).map_err(|e| e.to_string())?;
    match store.autovacuum_settings() {
        Ok((on, naptime)) => {
            if let Some(warning) = store::search::autovacuum_warning(on, naptime) {
                net::log::line(side.name, "WARN", &warning);
            }
        }
        Err(e) => net::log::line(
            side.name,
            "WARN",
            &format!("product_db's autovacuum settings could not be read: {e}"),
        ),
    }
    let metrics = exporter.server(side.server, side.operations);
    let probe = store.clone();
    metrics.watch_databases(move || probe.db_stats());
    let served = Served::<R>::new(
        (side.handler)(store.clone()),
        side.name,
        settings.trace,
        side.slow,
    );
    let mut sweep = housekeeping::Every::new(db.sweep_interval());
    let mut replica_was = None;
    let (name, chores) = (side.name, side.chores);
    let server = settings
        .bind()
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let counted = metrics.transport().clone();
    let mut tick = move || -> Result<(), String> {
        if let Some(health) = store.replica_health() {
            let usable = health.is_usable();
            if replica_was != Some(usable) {
                let level = if usable { "INFO" } else { "WARN" };
                net::log::line(name, level, &health.to_string());
                replica_was = Some(usable);
            }
        }
        // Counts stay exact unfolded (a read only sums more rows), so a
        // database that is away now is simply folded at a later tick.
        match store.fold_search_counts() {
            Ok(_) | Err(StoreError::Unavailable(_) | StoreError::ReadOnly(_)) => {}
            Err(e) => return Err(format!("search counts: {e}")),
        }
        if !sweep.due() {
            return Ok(());
        }
        chores(&store, &metrics)?;
        store
            .sweep_idempotency_keys()
            .map_err(|e| format!("idempotency keys: {e}"))?;
        Ok(())
    };
    Ok(Prepared {
        name,
        server: server.with_metrics(counted),
        service: Arc::new(served),
        housekeeping: Box::new(move || {
            if let Err(e) = tick() {
                net::log::line(name, "ERROR", &format!("housekeeping failed: {e}"));
            }
        }),
    })
}

/// A server bound and on its databases, with its housekeeping, ready to run.
pub struct Prepared {
    name: &'static str,
    server: net::Server,
    service: Arc<dyn net::Service>,
    housekeeping: Box<dyn FnMut() + Send>,
}

impl Prepared {
    /// The address its listener bound.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// A handle that stops it from any thread.
    pub fn shutdown_handle(&self) -> net::ShutdownHandle {
        self.server.shutdown_handle()
    }

    /// Serves, with the housekeeping beside it every [`FOLD_EVERY`], until
    /// shut down; the housekeeping stops with the server.
    ///
    /// # Errors
    /// As [`net::Server::run`], or when the housekeeping thread cannot start.
    pub fn run(self) -> std::io::Result<()> {
        let _housekeeping = housekeeping::start(self.name, FOLD_EVERY, self.housekeeping)?;
        self.server.run(self.service)
    }
}

/// The whole `main` of a server: read its flags (the reactor's, then the
/// databases'), prepare it, stop on SIGINT/SIGTERM. Logs one line at start
/// and one at stop; exit status 0 after a clean stop, 2 for bad flags, 1 for
/// a failure.
pub fn main<R>(side: &Side<R>, raw: Vec<OsString>) -> ExitCode
where
    R: Operation + 'static,
    R::Handler: Send + Sync + 'static,
{
    let name = side.name;
    let mut args = arguments(raw, &[ENV, DB_ENV]);
    if args.contains(["-h", "--help"]) {
        println!("usage: {name} [flags]   (environment variable in brackets)\n{USAGE}\n{DB_USAGE}");
        return ExitCode::SUCCESS;
    }
    let settings = match ServerSettings::from_args(&mut args, name, side.default_listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let threads = settings.reactor.workers + settings.reactor.slow_workers;
    let db = match db_from_args(&mut args, threads) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{name}: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let rest = args.finish();
    if !rest.is_empty() {
        eprintln!("{name}: unexpected arguments {rest:?} (see --help)");
        return ExitCode::from(2);
    }
    let exporter = Exporter::default();
    let server = match prepare(side, &settings, &db, DB_WAIT, &exporter) {
        Ok(server) => server,
        Err(e) => {
            net::log::line(name, "ERROR", &format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let _endpoint = match settings.metrics_listen {
        Some(addr) => match exporter.serve(addr) {
            Ok(endpoint) => {
                net::log::line(
                    name,
                    "INFO",
                    &format!("metrics at http://{}/metrics", endpoint.local_addr()),
                );
                Some(endpoint)
            }
            Err(e) => {
                net::log::line(
                    name,
                    "ERROR",
                    &format!("cannot serve metrics on {addr}: {e}"),
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    if let Err(e) = net::signals::shutdown_on_signals(vec![server.shutdown_handle()]) {
        net::log::line(
            name,
            "ERROR",
            &format!("cannot install signal handlers: {e}"),
        );
        return ExitCode::FAILURE;
    }
    net::log::line(
        name,
        "INFO",
        &format!(
            "listening on {} with {} workers, frame limit {} B, idle timeout {:?}, max {} connections",
            server.local_addr(),
            settings.reactor.workers,
            settings.reactor.frame_limit,
            settings.reactor.idle_timeout,
            settings.reactor.max_connections
        ),
    );
    match server.run() {
        Ok(()) => {
            net::log::line(name, "INFO", "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            net::log::line(name, "ERROR", &format!("stopped on an error: {e}"));
            ExitCode::FAILURE
        }
    }
}
