//! Server settings from flags, with environment-variable fallbacks: the
//! reactor's and the databases'.
//!
//! Every flag has an environment twin (the same names in the README, the
//! containers and the local stack); a flag on the command line wins.

use net::{Config, Server};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;
use store::DbSettings;

/// Value flags of the reactor and their environment variables.
pub const ENV: &[(&str, &str)] = &[
    ("--listen", "LISTEN_ADDR"),
    ("--workers", "WORKERS"),
    ("--frame-limit", "FRAME_LIMIT_BYTES"),
    ("--idle-timeout", "IDLE_TIMEOUT_SECS"),
    ("--max-connections", "MAX_CONNECTIONS"),
    ("--max-connections-per-peer", "MAX_CONNECTIONS_PER_PEER"),
    ("--frame-deadline", "FRAME_DEADLINE_SECS"),
    ("--hash-workers", "HASH_WORKERS"),
    ("--log-format", "LOG_FORMAT"),
    ("--metrics-listen", "METRICS_LISTEN"),
    ("--proxy-listen", "PROXY_LISTEN_ADDR"),
];

/// Switches and their environment variables (`1` or `true` turns them on).
pub const SWITCHES: &[(&str, &str)] = &[("--log-requests", "LOG_REQUESTS")];

/// The flags this module reads, for `--help`.
pub const USAGE: &str = "\
  --listen ADDR            address to listen on          [LISTEN_ADDR]
  --workers N              blocking worker threads       [WORKERS] (default 16)
  --frame-limit BYTES      largest request frame         [FRAME_LIMIT_BYTES] (default 1048576)
  --idle-timeout SECS      close idle connections after  [IDLE_TIMEOUT_SECS] (default 900)
  --max-connections N      at most this many connections [MAX_CONNECTIONS] (default 10000)
  --max-connections-per-peer N
                           at most this many per address [MAX_CONNECTIONS_PER_PEER] (default 2000)
  --frame-deadline SECS    a begun frame must end within [FRAME_DEADLINE_SECS] (default 30)
  --hash-workers N         threads of the password lane  [HASH_WORKERS] (default: one per core)
  --log-format text|json   log lines as text or JSON     [LOG_FORMAT] (default text)
  --metrics-listen ADDR    serve Prometheus metrics at http://ADDR/metrics
                           (and /health)                 [METRICS_LISTEN] (default: off)
  --log-requests           one log line per request      [LOG_REQUESTS=1]
  --proxy-listen ADDR      also listen here for a TCP load balancer: each
                           connection starts with a PROXY protocol v2 header
                           (HAProxy's send-proxy-v2), and limits and logs see
                           the client it names. Only the proxy may reach it
                                                         [PROXY_LISTEN_ADDR]";

/// The database flags and their environment variables.
pub const DB_ENV: &[(&str, &str)] = &[
    ("--customer-db", "CUSTOMER_DB_URL"),
    ("--product-db", "PRODUCT_DB_URL"),
    ("--pool-size", "POOL_SIZE"),
    ("--session-timeout", "SESSION_TIMEOUT_SECS"),
    ("--product-db-replica", "PRODUCT_DB_REPLICA_URL"),
    ("--replica-max-lag", "REPLICA_MAX_LAG_SECS"),
];

/// The database flags, for `--help`.
pub const DB_USAGE: &str = "\
  --customer-db URL        customer_db connection URL   [CUSTOMER_DB_URL]
  --product-db URL         product_db connection URL    [PRODUCT_DB_URL]
  --pool-size N            connections per database     [POOL_SIZE] (default: workers)
  --session-timeout SECS   session inactivity limit     [SESSION_TIMEOUT_SECS] (default 300)
  --product-db-replica URL a streaming standby of product_db for searches and
                           GetItem (buyer server)       [PRODUCT_DB_REPLICA_URL]
  --replica-max-lag SECS   read the standby only while it is at most this far
                           behind                       [REPLICA_MAX_LAG_SECS] (default 5)";

/// Reads the database flags (environment fallbacks are merged in by
/// [`arguments`]), defaulting the pool size to `workers` (every thread that
/// may hold a connection: the workers and the password lane).
///
/// # Errors
/// A message naming the flag that does not parse or is out of range.
pub fn db_from_args(args: &mut pico_args::Arguments, workers: usize) -> Result<DbSettings, String> {
    let d = DbSettings::default();
    let pool_size =
        value(args, "--pool-size")?.unwrap_or_else(|| u32::try_from(workers).unwrap_or(u32::MAX));
    if pool_size == 0 {
        return Err("--pool-size must be at least 1".into());
    }
    let timeout: f64 = value(args, "--session-timeout")?.unwrap_or(d.session_timeout.as_secs_f64());
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err("--session-timeout must be a positive number of seconds".into());
    }
    let max_lag: f64 = value(args, "--replica-max-lag")?.unwrap_or(d.replica_max_lag.as_secs_f64());
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

/// Builds the argument list from `raw` (the command line after the program
/// name) plus, for every flag not given there, its environment variable.
pub fn arguments(raw: Vec<OsString>, groups: &[&[(&str, &str)]]) -> pico_args::Arguments {
    pico_args::Arguments::from_vec(merge_env(raw, groups, |name| std::env::var_os(name)))
}

/// `raw` plus `flag value` for every flag of `groups` missing from `raw` whose
/// variable `env` gives a non-empty value (and each switch whose variable is
/// `1` or `true`).
fn merge_env(
    mut raw: Vec<OsString>,
    groups: &[&[(&str, &str)]],
    env: impl Fn(&str) -> Option<OsString>,
) -> Vec<OsString> {
    let given = |raw: &[OsString], flag: &str| {
        raw.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        })
    };
    for (flag, name) in groups.iter().flat_map(|g| g.iter()) {
        if given(&raw, flag) {
            continue;
        }
        if let Some(value) = env(name).filter(|v| !v.is_empty()) {
            raw.push(OsString::from(flag));
            raw.push(value);
        }
    }
    for (flag, name) in SWITCHES {
        let on = env(name).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if on && !given(&raw, flag) {
            raw.push(OsString::from(flag));
        }
    }
    raw
}

/// Reads an optional `--flag VALUE`.
///
/// # Errors
/// A message naming the flag when its value does not parse.
pub fn value<T: std::str::FromStr>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<T>, String> {
    let Some(text) = args
        .opt_value_from_str::<_, String>(flag)
        .map_err(|e| format!("{flag}: {e}"))?
    else {
        return Ok(None);
    };
    text.parse::<T>()
        .map(Some)
        .map_err(|_| format!("{flag}: {}", what_is_wrong(flag, &text)))
}

/// What is wrong with `value` given to `flag`, in words a person can act on.
fn what_is_wrong(flag: &str, value: &str) -> String {
    if flag.ends_with("-timeout") || flag.ends_with("-deadline") || flag.ends_with("-lag") {
        return not_seconds(value);
    }
    format!("{value:?} is not a number")
}

/// Why `value` is not a number of seconds: a unit after the number (`10s`),
/// or no number at all. For every flag that takes seconds, here and in
/// `marketplace up`.
pub fn not_seconds(value: &str) -> String {
    let number = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if number != value && number.parse::<f64>().is_ok() {
        return format!("{value:?} has a unit; give seconds as a bare number, like {number}");
    }
    format!("{value:?} is not a number of seconds (like 300, or 0.5)")
}

/// Threads of the password lane by default: one per core (a hash is CPU-bound).
pub fn hash_lane() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The reactor part of a server's settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// A second listener whose connections start with a PROXY v2 header.
    pub proxy_listen: Option<SocketAddr>,
    pub reactor: Config,
    /// Log one line per request.
    pub trace: bool,
    /// Where to serve `/metrics` and `/health` (None: nowhere).
    pub metrics_listen: Option<SocketAddr>,
}

impl ServerSettings {
    /// Reads the reactor flags; `name` names the server in logs.
    ///
    /// # Errors
    /// A message naming a flag that does not parse or is out of range.
    pub fn from_args(
        args: &mut pico_args::Arguments,
        name: &str,
        default_listen: &str,
    ) -> Result<Self, String> {
        let d = Config::default();
        let listen = match value::<String>(args, "--listen")? {
            Some(addr) => addr,
            None => default_listen.to_owned(),
        };
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| format!("--listen: {listen:?} is not an address like 0.0.0.0:5001"))?;
        let workers: usize = value(args, "--workers")?.unwrap_or(16);
        let frame_limit: usize = value(args, "--frame-limit")?.unwrap_or(d.frame_limit);
        let idle: f64 = value(args, "--idle-timeout")?.unwrap_or(d.idle_timeout.as_secs_f64());
        let max_connections: usize = value(args, "--max-connections")?.unwrap_or(d.max_connections);
        let max_per_peer: usize =
            value(args, "--max-connections-per-peer")?.unwrap_or(d.max_per_peer);
        let frame_deadline: f64 =
            value(args, "--frame-deadline")?.unwrap_or(d.frame_deadline.as_secs_f64());
        let hash_workers: usize = value(args, "--hash-workers")?.unwrap_or_else(hash_lane);
        let proxy_listen = match value::<String>(args, "--proxy-listen")? {
            Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|_| {
                format!("--proxy-listen: {addr:?} is not an address like 0.0.0.0:5002")
            })?),
            None => None,
        };
        let metrics_listen = match value::<String>(args, "--metrics-listen")? {
            Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|_| {
                format!("--metrics-listen: {addr:?} is not an address like 0.0.0.0:9101")
            })?),
            None => None,
        };
        if let Some(format) = value::<String>(args, "--log-format")? {
            let format = net::log::Format::parse(&format)
                .ok_or_else(|| format!("--log-format: {format:?} is not text or json"))?;
            net::log::set_format(format);
        }
        if workers == 0 || frame_limit == 0 || max_connections == 0 || max_per_peer == 0 {
            return Err("--workers, --frame-limit, --max-connections and \
                        --max-connections-per-peer must be at least 1"
                .into());
        }
        if !(idle.is_finite() && idle > 0.0) {
            return Err("--idle-timeout must be a positive number of seconds".into());
        }
        if !(frame_deadline.is_finite() && frame_deadline > 0.0) {
            return Err("--frame-deadline must be a positive number of seconds".into());
        }
        Ok(ServerSettings {
            listen,
            proxy_listen,
            reactor: Config {
                name: name.to_owned(),
                workers,
                frame_limit,
                idle_timeout: Duration::from_secs_f64(idle),
                max_connections,
                max_per_peer,
                frame_deadline: Duration::from_secs_f64(frame_deadline),
                slow_workers: hash_workers,
                ..d
            },
            trace: args.contains("--log-requests"),
            metrics_listen,
        })
    }

    /// Binds the listener.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(&self) -> std::io::Result<Server> {
        let mut server = Server::bind(self.listen, self.reactor.clone())?;
        if let Some(addr) = self.proxy_listen {
            server.with_proxy_listener(addr)?;
        }
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cli: &[&str], env: &[(&str, &str)]) -> Result<ServerSettings, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let raw = merge_env(cli.iter().map(OsString::from).collect(), &[ENV], |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        });
        let mut args = pico_args::Arguments::from_vec(raw);
        ServerSettings::from_args(&mut args, "test", "0.0.0.0:5001")
    }

    #[test]
    fn defaults_apply_without_flags_or_environment() {
        let s = parse(&[], &[]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:5001".parse().unwrap());
        assert_eq!(s.reactor.workers, 16);
        assert_eq!(s.reactor.frame_limit, wire::DEFAULT_FRAME_LIMIT);
        assert_eq!(s.reactor.idle_timeout, Duration::from_secs(900));
        assert!(!s.trace);
    }

    #[test]
    fn environment_fills_in_and_a_flag_wins_over_it() {
        let env = [
            ("LISTEN_ADDR", "127.0.0.1:7000"),
            ("WORKERS", "3"),
            ("IDLE_TIMEOUT_SECS", "2.5"),
            ("MAX_CONNECTIONS", "9"),
            ("FRAME_LIMIT_BYTES", "4096"),
            ("LOG_REQUESTS", "1"),
        ];
        let s = parse(&[], &env).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(
            (
                s.reactor.workers,
                s.reactor.max_connections,
                s.reactor.frame_limit
            ),
            (3, 9, 4096)
        );
        assert_eq!(s.reactor.idle_timeout, Duration::from_millis(2500));
        assert!(s.trace);
        let s = parse(&["--workers", "5", "--listen=127.0.0.1:7001"], &env).unwrap();
        assert_eq!(s.reactor.workers, 5);
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (cli, env) in [
            (vec!["--workers", "many"], vec![]),
            (vec!["--workers", "0"], vec![]),
            (vec!["--listen", "nowhere"], vec![]),
            (vec![], vec![("IDLE_TIMEOUT_SECS", "-1")]),
            (vec!["--log-format", "xml"], vec![]),
            (vec![], vec![("LOG_FORMAT", "yaml")]),
        ] {
            let err = parse(&cli, &env).unwrap_err();
            assert!(err.starts_with("--"), "{err}");
        }
        let err = parse(&["--idle-timeout", "10s"], &[]).unwrap_err();
        assert_eq!(
            err,
            "--idle-timeout: \"10s\" has a unit; give seconds as a bare number, like 10"
        );
        let err = parse(&["--workers", "many"], &[]).unwrap_err();
        assert_eq!(err, "--workers: \"many\" is not a number");
    }
}
