//! Database settings of a server (read from flags by the `server` crate).

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
    /// How often expired sessions are swept: half the timeout, between 1 s and
    /// 60 s. Expiry itself is judged on every access; the sweep only removes
    /// sessions nobody comes back to.
    pub fn sweep_interval(&self) -> Duration {
        (self.session_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}
