//! Connection pools: the r2d2 [`Manager`] that opens [`Conn`]s, the checks
//! that keep dead connections from reaching a request, and [`Db`], one
//! database's pool with its counts.

use crate::conn::Conn;
use crate::stats::{DbStats, Settles};
use crate::{DbSettings, StoreError};
use r2d2::{Pool, PooledConnection};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Config;

/// The r2d2 manager: connects, and wraps each client in a [`Conn`].
pub struct Manager {
    config: Config,
    failures: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    settles: Arc<Settles>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = StoreError;

    fn connect(&self) -> Result<Conn, StoreError> {
        Conn::connect(&self.config, &self.failures, &self.errors, &self.settles)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        conn.ping().map_err(StoreError::from)
    }

    /// Called as a connection goes back to the pool: one broken or left
    /// inside a transaction is dropped (see `Conn::has_broken`).
    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.has_broken()
    }
}

/// A connection idle for longer than this is tested before it is used: the
/// database may have restarted meanwhile (a busy connection is tested by use).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A pooled connection.
pub type Pooled = PooledConnection<Manager>;

/// A pool and the count of connection failures seen on it.
#[derive(Clone)]
pub(crate) struct Db {
    pool: Pool<Manager>,
    failures: Arc<AtomicU64>,
    /// Errors met on this database (see [`Db::stats`]).
    errors: Arc<AtomicU64>,
    /// Its settled commits (see [`Db::stats`]).
    settles: Arc<Settles>,
}

impl Db {
    /// A connection believed alive. Connections are not tested on every
    /// checkout (a round trip per request); only one older than the pool's last
    /// connection failure, or idle for over [`IDLE_CHECK`], is tested, once, and
    /// replaced if it is dead. So a database restarted while a connection sat
    /// idle costs no request, and one restarted under load only the request
    /// that first meets a dead connection.
    ///
    /// Checks that fail at once (a restarted database refuses) go on to the
    /// next connection; once checking has taken a second (a silent network:
    /// each check waits for the TCP user timeout), the request gets
    /// `UNAVAILABLE` instead of waiting through every pooled connection.
    pub(crate) fn get(&self) -> Result<Pooled, StoreError> {
        let got = self.checked_out();
        if got.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    fn checked_out(&self) -> Result<Pooled, StoreError> {
        let started = Instant::now();
        loop {
            let mut conn = self.pool.get()?;
            let now = self.failures.load(Ordering::SeqCst);
            let idle = conn.last_used.elapsed() > IDLE_CHECK;
            conn.last_used = Instant::now();
            if conn.epoch >= now && !idle {
                return Ok(conn);
            }
            if conn.ping().is_ok() {
                conn.epoch = now;
                return Ok(conn);
            }
            conn.mark_broken();
            if started.elapsed() >= Duration::from_secs(1) {
                return Err(StoreError::Unavailable(
                    "the database does not answer".into(),
                ));
            }
        }
    }

    /// Its connections and the errors met on its database so far, as `db`.
    pub(crate) fn stats(&self, db: &'static str) -> DbStats {
        let state = self.pool.state();
        DbStats {
            db,
            open: state.connections,
            idle: state.idle_connections,
            errors: self.errors.load(Ordering::Relaxed),
            settled: self.settles.read(),
        }
    }
}

/// The pool of the database at `url`, with `options` after any the URL
/// carries; `failures` is the count of connection failures it shares with
/// its sibling pools (each failure has their connections checked once).
///
/// # Errors
/// `Internal` for a malformed URL.
pub(crate) fn pool(
    url: &str,
    settings: &DbSettings,
    failures: &Arc<AtomicU64>,
    options: Option<&str>,
) -> Result<Db, StoreError> {
    let mut config = Config::from_str(url)
        .map_err(|e| StoreError::Internal(format!("bad database URL: {e}")))?;
    if let Some(options) = options {
        // After any options the URL itself carries.
        let merged = match config.get_options() {
            Some(given) => format!("{given} {options}"),
            None => options.to_owned(),
        };
        config.options(&merged);
    }
    config
        .connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        // A database behind a silent network (a partition drops packets, it
        // does not refuse them) must not hold a worker for the kernel's
        // retransmission limit (~15 min): a query whose bytes stay
        // unacknowledged this long fails, and the request gets UNAVAILABLE.
        .tcp_user_timeout(Duration::from_millis(1500))
        .application_name("marketplace");
    let errors = Arc::new(AtomicU64::new(0));
    let settles = Arc::new(Settles::default());
    let manager = Manager {
        config,
        failures: failures.clone(),
        errors: errors.clone(),
        settles: settles.clone(),
    };
    // Built unchecked: a server starts (and answers UNAVAILABLE) while a database
    // is down, and recovers when it comes back. Connections are not tested on
    // checkout (a round trip per request); a failed one is marked broken instead.
    // Every connection is opened ahead of need (min_idle = max_size) and
    // replaced in the background: a server just started (or restarted under
    // load, behind a proxy) would otherwise open them on demand, and under a
    // loaded database a connection (a backend forked, SCRAM) can take longer
    // than the checkout timeout, which a request would get as UNAVAILABLE.
    let pool = Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(None)
        .connection_timeout(settings.connect_timeout)
        .test_on_check_out(false)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager);
    Ok(Db {
        pool,
        failures: failures.clone(),
        errors,
        settles,
    })
}
