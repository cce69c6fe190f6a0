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
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            customer_url: "postgres://postgres@127.0.0.1:5432/customer_db".into(),
            product_url: "postgres://postgres@127.0.0.1:5432/product_db".into(),
            pool_size: 16,
            session_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_millis(500),
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
    ];

    /// The flags this module reads, for `--help`.
    pub const USAGE: &'static str = "\
  --customer-db URL        customer_db connection URL   [CUSTOMER_DB_URL]
  --product-db URL         product_db connection URL    [PRODUCT_DB_URL]
  --pool-size N            connections per database     [POOL_SIZE] (default: workers)
  --session-timeout SECS   session inactivity limit     [SESSION_TIMEOUT_SECS] (default 300)";

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
        Ok(DbSettings {
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
