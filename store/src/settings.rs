//! Database settings of a server, from flags with environment fallbacks.

use net::settings::value;
use std::time::Duration;

/// Where the databases are and how the server uses them.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `postgres://` URL (or key=value string) of customer_db.
    pub customer_url: String,
    /// `postgres://` URL (or key=value string) of product_db.
    pub product_url: String,
    /// Connections per database; at least the number of workers, so a worker
    /// never waits for a connection.
    pub pool_size: u32,
    /// A session without a request for this long expires.
    pub session_timeout: Duration,
    /// How long a request waits for a database connection before `UNAVAILABLE`.
    pub connect_timeout: Duration,
    /// A streaming standby of product_db for the buyer server's searches and
    /// item reads (store/src/replica.rs); None: the primary serves them.
    pub product_replica_url: Option<String>,
    /// The standby serves only while it is this close behind the primary.
    pub replica_max_lag: Duration,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            customer_url: "postgres://postgres@127.0.0.1:5432/customer_db".into(),
            product_url: "postgres://postgres@127.0.0.1:5432/product_db".into(),
            pool_size: 16,
            session_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_millis(500),
            product_replica_url: None,
            replica_max_lag: Duration::from_secs(5),
        }
    }
}

impl DbSettings {
    /// The flags read here and their environment variables.
    pub const ENV: &'static [(&'static str, &'static str)] = &[
        ("--customer-db", "CUSTOMER_DB_URL"),
        ("--product-db", "PRODUCT_DB_URL"),
        ("--pool-size", "POOL_SIZE"),
        ("--session-timeout", "SESSION_TIMEOUT_SECS"),
        ("--product-db-replica", "PRODUCT_DB_REPLICA_URL"),
        ("--replica-max-lag", "REPLICA_MAX_LAG_SECS"),
    ];

    /// The flags this module reads, for `--help`.
    pub const USAGE: &'static str = "\
  --customer-db URL        customer_db connection URL   [CUSTOMER_DB_URL]
  --product-db URL         product_db connection URL    [PRODUCT_DB_URL]
  --pool-size N            connections per database     [POOL_SIZE] (default: workers)
  --session-timeout SECS   session inactivity limit     [SESSION_TIMEOUT_SECS] (default 300)
  --product-db-replica URL a streaming standby of product_db for searches and
                           GetItem (buyer server)       [PRODUCT_DB_REPLICA_URL]
  --replica-max-lag SECS   read the standby only while it is at most this far
                           behind                       [REPLICA_MAX_LAG_SECS] (default 5)";

    /// How often expired sessions are swept: half the timeout, between 1 s and
    /// 60 s. Expiry itself is judged on every access; the sweep only removes
    /// sessions nobody comes back to.
    pub fn sweep_interval(&self) -> Duration {
        (self.session_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Reads the database flags (environment fallbacks are merged in by the
    /// caller, see `net::settings::arguments`), defaulting the pool size to
    /// `workers` (every thread that may hold a connection: the workers and the
    /// password lane).
    ///
    /// # Errors
    /// A message naming the flag that does not parse or is out of range.
    pub fn from_args(args: &mut pico_args::Arguments, workers: usize) -> Result<Self, String> {
        let d = DbSettings::default();
        let pool_size = value(args, "--pool-size")?
            .unwrap_or_else(|| u32::try_from(workers).unwrap_or(u32::MAX));
        if pool_size == 0 {
            return Err("--pool-size must be at least 1".into());
        }
        let timeout: f64 =
            value(args, "--session-timeout")?.unwrap_or(d.session_timeout.as_secs_f64());
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err("--session-timeout must be a positive number of seconds".into());
        }
        let max_lag: f64 =
            value(args, "--replica-max-lag")?.unwrap_or(d.replica_max_lag.as_secs_f64());
        if !(max_lag.is_finite() && max_lag >= 0.0) {
            return Err("--replica-max-lag must be a number of seconds, 0 or more".into());
        }
        Ok(DbSettings {
            product_replica_url: value(args, "--product-db-replica")?,
            replica_max_lag: Duration::from_secs_f64(max_lag),
            customer_url: value(args, "--customer-db")?.unwrap_or(d.customer_url),
            product_url: value(args, "--product-db")?.unwrap_or(d.product_url),
            pool_size,
            session_timeout: Duration::from_secs_f64(timeout),
            connect_timeout: d.connect_timeout,
        })
    }
}

/// The whole `main` of a server on the databases: its reactor flags, these
/// database flags, then `prepare` (which opens and migrates the databases,
/// waiting up to 30 s for them, and binds the server).
pub fn server_main(
    raw: Vec<std::ffi::OsString>,
    name: &str,
    default_listen: &str,
    prepare: fn(
        &net::settings::ServerSettings,
        &DbSettings,
        Duration,
    ) -> Result<net::Server, String>,
) -> std::process::ExitCode {
    net::settings::main(
        raw,
        name,
        default_listen,
        DbSettings::ENV,
        DbSettings::USAGE,
        |settings, args| {
            let db = DbSettings::from_args(
                args,
                settings.reactor.workers + settings.reactor.slow_workers,
            )?;
            prepare(settings, &db, Duration::from_secs(30))
        },
    )
}
