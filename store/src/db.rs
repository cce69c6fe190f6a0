//! Connection pools with a prepared-statement cache per connection.
//!
//! Each pooled [`Conn`] prepares a statement the first time it runs it and reuses
//! the prepared statement afterwards, so a request costs one round trip per
//! statement instead of a parse and an execute. A transaction costs no round
//! trip of its own either: [`Conn::begin`] sends nothing, its BEGIN goes out
//! with the first statement, and [`Conn::commit_after`] sends the last
//! statement and COMMIT together (tokio-postgres pipelines requests polled at
//! once; each connection drives its own on a current-thread runtime, as the
//! `postgres` crate does). A connection that fails at the connection level is
//! marked broken and the pool replaces it; the request that met it gets
//! `UNAVAILABLE`.

use crate::error::connection_broken;
use crate::{DbSettings, StoreError};
use futures_util::future;
use r2d2::{Pool, PooledConnection};
use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, SimpleQueryMessage, Socket, Statement};

/// Statement parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The half of a connection that reads and writes its socket.
type Link = Pin<Box<tokio_postgres::Connection<Socket, NoTlsStream>>>;

/// Where a connection is in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    /// None open.
    Idle,
    /// Begun, BEGIN not sent yet: it goes with the next statement.
    Pending,
    /// BEGIN sent.
    Open,
}

/// A database connection with its prepared statements.
pub struct Conn {
    runtime: Runtime,
    /// None once the socket has closed (the client's requests then fail).
    link: Option<Link>,
    client: Client,
    statements: HashMap<&'static str, Statement>,
    txn: Txn,
    broken: bool,
    /// The pool's failure epoch when this connection was last known good.
    epoch: u64,
    /// When it was last handed out.
    last_used: std::time::Instant,
    failures: Arc<AtomicU64>,
    /// The pool's error count, for the metrics.
    errors: Arc<AtomicU64>,
    /// The server process at the other end.
    backend: Backend,
    /// The pool's counts of settled commits.
    settles: Arc<Settles>,
}

/// Keyed writes whose connection broke at their commit, by what settling
/// them found (see `once::settle`).
#[derive(Debug, Default)]
pub(crate) struct Settles {
    committed: AtomicU64,
    not_committed: AtomicU64,
    unknown: AtomicU64,
}

/// How a keyed write whose connection broke at its commit was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The key was recorded: the write happened, its result was the answer.
    Committed,
    /// It was not, once the old server process was gone: nothing changed.
    NotCommitted,
    /// The database could not be asked in time: the answer said so.
    Unknown,
}

impl Settles {
    pub(crate) fn count(&self, settled: Settled) {
        let n = match settled {
            Settled::Committed => &self.committed,
            Settled::NotCommitted => &self.not_committed,
            Settled::Unknown => &self.unknown,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> SettledCounts {
        SettledCounts {
            committed: self.committed.load(Ordering::Relaxed),
            not_committed: self.not_committed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }
}

/// A pool's settled commits so far, by outcome (see [`Store::db_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettledCounts {
    pub committed: u64,
    pub not_committed: u64,
    pub unknown: u64,
}

/// The server process that serves a connection: its pid, and when it
/// started (in microseconds since the epoch), since a pid alone may name
/// another process after a restart or on another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backend {
    pid: i32,
    started: i64,
}

/// The [`Backend`] of the connection that runs it.
const WHO_AM_I: &str = "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8
                          FROM pg_stat_activity WHERE pid = pg_backend_pid()";

/// Ends a [`Backend`] (`$1`, `$2`) and waits up to `$3` ms for it to be gone;
/// a row `true` when it went, `false` when it is still there, no row when it
/// was gone already.
const FENCE: &str = "SELECT pg_terminate_backend(pid, $3)
                       FROM pg_stat_activity
                      WHERE pid = $1
                        AND (extract(epoch FROM backend_start) * 1000000)::int8 = $2";

/// How long [`Conn::fence`] waits for a server process to end, in ms.
const FENCE_WAIT_MS: i64 = 1000;

/// Runs `work` to completion, driving the connection's socket meanwhile.
fn drive<T>(runtime: &Runtime, link: &mut Option<Link>, work: impl Future<Output = T>) -> T {
    let mut work = pin!(work);
    runtime.block_on(future::poll_fn(|cx| {
        // The socket first: it sends what `work` queued at its last poll and
        // hands `work` the replies. It ends (Ready) when the server or the
        // network closed it; the client's requests then fail as closed.
        if let Some(l) = link {
            if l.as_mut().poll(cx).is_ready() {
                *link = None;
            }
        }
        // A request queued by this poll is sent by the link's next one,
        // which the channel's wake-up asks for.
        work.as_mut().poll(cx)
    }))
}

/// `statement` preceded by BEGIN when `begin`, both sent before either reply is
/// awaited.
async fn after_begin<T>(
    client: &Client,
    begin: bool,
    statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    if !begin {
        return statement.await;
    }
    // `join` polls in order: BEGIN is queued before the statement.
    let (begun, result) = future::join(client.batch_execute("BEGIN"), statement).await;
    begun.and(result)
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = drive(&self.runtime, &mut self.link, self.client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Whether a BEGIN is to go with the next statement (and is then sent).
    fn take_begin(&mut self) -> bool {
        let begin = self.txn == Txn::Pending;
        if begin {
            self.txn = Txn::Open;
        }
        begin
    }

    fn note<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            if connection_broken(&e) {
                self.broken = true;
                // Its siblings in the pool probably died with it (a database
                // restart): each is checked once before its next use.
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
            let e = StoreError::from(e);
            if matches!(e, StoreError::Unavailable(_) | StoreError::Internal(_)) {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            e
        })
    }

    /// Runs a cached statement and returns its rows.
    ///
    /// # Errors
    /// `Unavailable` when the connection failed, `Internal` otherwise.
    pub fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let result = self.statement(sql).and_then(|s| {
            let begin = self.take_begin();
            let run = after_begin(&self.client, begin, self.client.query(&s, params));
            drive(&self.runtime, &mut self.link, run)
        });
        self.note(result)
    }

    /// Runs a cached statement that returns at most one row.
    ///
    /// # Errors
    /// As [`Conn::query`], and `Internal` for more than one row.
    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let result = self.statement(sql).and_then(|s| {
            let begin = self.take_begin();
            let run = after_begin(&self.client, begin, self.client.query_opt(&s, params));
            drive(&self.runtime, &mut self.link, run)
        });
        self.note(result)
    }

    /// Runs a cached statement that returns exactly one row.
    ///
    /// # Errors
    /// As [`Conn::query`], and `Internal` for any other number of rows.
    pub fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        let result = self.statement(sql).and_then(|s| {
            let begin = self.take_begin();
            let run = after_begin(&self.client, begin, self.client.query_one(&s, params));
            drive(&self.runtime, &mut self.link, run)
        });
        self.note(result)
    }

    /// Runs a cached statement that returns exactly one row, overlapped with
    /// `meanwhile` (work on another connection): the statement is sent, then
    /// `meanwhile` runs while its answer is on its way, then the answer is
    /// read. Two independent reads on two databases cost one round trip's
    /// wait instead of two.
    ///
    /// # Errors
    /// As [`Conn::query_one`], beside `meanwhile`'s own result.
    pub fn query_one_while<B>(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        meanwhile: impl FnOnce() -> B,
    ) -> (Result<Row, StoreError>, B) {
        let statement = match self.statement(sql) {
            Ok(statement) => statement,
            Err(e) => {
                let e = self.note(Err(e));
                return (e, meanwhile());
            }
        };
        let begin = self.take_begin();
        let (result, other) = {
            let run = after_begin(
                &self.client,
                begin,
                self.client.query_one(&statement, params),
            );
            let mut run = pin!(run);
            // One poll of the statement queues it, one of the link writes it.
            let link = &mut self.link;
            let early = self.runtime.block_on(future::poll_fn(|cx| {
                let polled = run.as_mut().poll(cx);
                if let Some(l) = link {
                    if l.as_mut().poll(cx).is_ready() {
                        *link = None;
                    }
                }
                Poll::Ready(polled)
            }));
            let other = meanwhile();
            let result = match early {
                Poll::Ready(result) => result,
                Poll::Pending => drive(&self.runtime, &mut self.link, run.as_mut()),
            };
            (result, other)
        };
        (self.note(result), other)
    }

    /// Runs a cached statement and returns the number of rows it touched.
    ///
    /// # Errors
    /// As [`Conn::query`].
    pub fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let result = self.statement(sql).and_then(|s| {
            let begin = self.take_begin();
            let run = after_begin(&self.client, begin, self.client.execute(&s, params));
            drive(&self.runtime, &mut self.link, run)
        });
        self.note(result)
    }

    /// Runs `sql` (no parameters, e.g. a migration's script) as a simple query.
    ///
    /// # Errors
    /// As [`Conn::query`].
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let begin = self.take_begin();
        let run = after_begin(&self.client, begin, self.client.batch_execute(sql));
        let result = drive(&self.runtime, &mut self.link, run);
        self.note(result)
    }

    /// Begins a transaction. Nothing is sent yet: BEGIN goes with the next
    /// statement.
    pub fn begin(&mut self) {
        debug_assert_eq!(self.txn, Txn::Idle, "a transaction is already open");
        self.txn = Txn::Pending;
    }

    /// Runs a cached statement as the transaction's last and commits, both
    /// sent at once; returns the rows it touched. A transaction that sent no
    /// statement yet (or none begun) needs neither BEGIN nor COMMIT: the
    /// statement runs alone.
    ///
    /// # Errors
    /// The statement's error when it failed (the COMMIT then rolled the
    /// transaction back: nothing was changed); `CommitUnknown` when the
    /// connection failed with the COMMIT sent (it may have committed).
    pub fn commit_after(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, StoreError> {
        let statement = match self.statement(sql) {
            Ok(s) => s,
            Err(e) => {
                let e = self.note(Err::<(), _>(e)).unwrap_err();
                return Err(self.rollback().err().unwrap_or(e));
            }
        };
        let alone = std::mem::replace(&mut self.txn, Txn::Idle) != Txn::Open;
        let result = if alone {
            drive(
                &self.runtime,
                &mut self.link,
                self.client.execute(&statement, params),
            )
        } else {
            let run = future::join(
                self.client.execute(&statement, params),
                self.client.batch_execute("COMMIT"),
            );
            let (done, committed) = drive(&self.runtime, &mut self.link, run);
            // A failed statement has the COMMIT roll back (its error
            // stands); one that did not fail stands or falls with the COMMIT.
            match done {
                Err(e) => Err(e),
                Ok(n) => committed.map(|()| n),
            }
        };
        match self.note(result) {
            // The server may have run both before the connection went.
            Err(StoreError::Unavailable(e)) => Err(StoreError::CommitUnknown(e)),
            other => other,
        }
    }

    /// Rolls the transaction back (nothing to send when BEGIN was not sent).
    ///
    /// # Errors
    /// `Unavailable` when the connection failed (the server rolls back).
    pub fn rollback(&mut self) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Idle | Txn::Pending => Ok(()),
            Txn::Open => {
                let done = drive(
                    &self.runtime,
                    &mut self.link,
                    self.client.batch_execute("ROLLBACK"),
                );
                self.note(done)
            }
        }
    }

    /// An empty query: whether the database answers on this connection.
    fn ping(&mut self) -> Result<(), tokio_postgres::Error> {
        drive(&self.runtime, &mut self.link, self.client.simple_query("")).map(|_| ())
    }

    /// The server process at the other end of this connection.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Its pool's counts of settled commits.
    pub(crate) fn settles(&self) -> Arc<Settles> {
        self.settles.clone()
    }

    /// Ends `backend` (another connection's server process, on this
    /// connection's server) and waits until it is gone: a transaction it
    /// was running has then committed or rolled back, and a statement or
    /// COMMIT still on its way to it can no longer take effect. Whether a
    /// write whose connection broke committed can be read only after this.
    /// Ok(false) when it is still there after [`FENCE_WAIT_MS`].
    ///
    /// # Errors
    /// As [`Conn::query`] (`Internal` when this role may not end it).
    pub(crate) fn fence(&mut self, backend: Backend) -> Result<bool, StoreError> {
        let row = self.query_opt(FENCE, &[&backend.pid, &backend.started, &FENCE_WAIT_MS])?;
        Ok(row.map_or(Ok(true), |r| r.try_get(0))?)
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

/// The pauses of [`Store::settled`]: 150 ms in all, in a case that needs
/// microseconds unless the machine is starved for CPU.
const SETTLE_PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
];

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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Only an exhausted process gets here (no file descriptors left).
            .map_err(|e| StoreError::Unavailable(format!("a connection's runtime: {e}")))?;
        let (client, link) = runtime.block_on(self.config.connect(NoTls))?;
        let mut link: Option<Link> = Some(Box::pin(link));
        let who = drive(&runtime, &mut link, client.simple_query(WHO_AM_I))?;
        let backend = who
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(Backend {
                    pid: row.get(0)?.parse().ok()?,
                    started: row.get(1)?.parse().ok()?,
                }),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Internal("a connection's server process is not listed".into())
            })?;
        Ok(Conn {
            runtime,
            link,
            client,
            backend,
            statements: HashMap::new(),
            txn: Txn::Idle,
            broken: false,
            epoch: self.failures.load(Ordering::SeqCst),
            last_used: std::time::Instant::now(),
            failures: self.failures.clone(),
            errors: self.errors.clone(),
            settles: self.settles.clone(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        conn.ping().map_err(StoreError::from)
    }

    /// Called as a connection goes back to the pool: one left inside a
    /// transaction (a request that returned early) is dropped, and the
    /// server rolls it back.
    fn has_broken(&self, conn: &mut Conn) -> bool {
        if conn.txn == Txn::Pending {
            conn.txn = Txn::Idle;
        }
        conn.broken || conn.txn == Txn::Open || conn.link.is_none() || conn.client.is_closed()
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
    /// Errors met on this database (see [`Store::db_stats`]).
    errors: Arc<AtomicU64>,
    /// Its settled commits (see [`Store::db_stats`]).
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
        let started = std::time::Instant::now();
        loop {
            let mut conn = self.pool.get()?;
            let now = self.failures.load(Ordering::SeqCst);
            let idle = conn.last_used.elapsed() > IDLE_CHECK;
            conn.last_used = std::time::Instant::now();
            if conn.epoch >= now && !idle {
                return Ok(conn);
            }
            if conn.ping().is_ok() {
                conn.epoch = now;
                return Ok(conn);
            }
            conn.broken = true;
            if started.elapsed() >= Duration::from_secs(1) {
                return Err(StoreError::Unavailable(
                    "the database does not answer".into(),
                ));
            }
        }
    }
}

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

/// One pool's connections and errors, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStats {
    /// `customer`, `product` or `product_replica`.
    pub db: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    /// Of those, idle in the pool.
    pub idle: u32,
    /// Database errors so far (failed connections and statements that failed
    /// for another reason than a constraint the request broke).
    pub errors: u64,
    /// Keyed writes whose connection broke at their commit, by how they
    /// were settled.
    pub settled: SettledCounts,
}

/// Both databases, and the session timeout every use case applies.
#[derive(Clone)]
pub struct Store {
    customer: Db,
    product: Db,
    /// product_db's streaming standby, for reads that may lag a little.
    replica: Option<crate::replica::Replica>,
    session_timeout_secs: f64,
}

impl Store {
    /// Creates the pools; connects lazily.
    ///
    /// # Errors
    /// `Internal` for a malformed URL.
    pub fn open(settings: &DbSettings) -> Result<Store, StoreError> {
        // One failure count for both pools: a connection failure on either
        // database has every pooled connection checked once before its next use.
        let failures = Arc::new(AtomicU64::new(0));
        Ok(Store {
            customer: pool(&settings.customer_url, settings, &failures, None)?,
            // A search statement (store/src/search.rs) is planned once per
            // connection: left to choose, PostgreSQL plans it again at each
            // call (milliseconds for five keywords) because the generic
            // plan's guess of LIMIT $2 + $3 costs more than the custom one's.
            product: pool(
                &settings.product_url,
                settings,
                &failures,
                Some("-c plan_cache_mode=force_generic_plan"),
            )?,
            replica: settings
                .product_replica_url
                .as_deref()
                .map(|url| crate::replica::Replica::open(url, settings))
                .transpose()?,
            session_timeout_secs: settings.session_timeout.as_secs_f64(),
        })
    }

    /// Runs `read` on product_db's standby when there is one that keeps up,
    /// else (or when it fails there) on the primary. Only for reads that may
    /// lag the primary by the standby's bound.
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached either.
    pub(crate) fn read_product<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_product_unless(read, |_| false)
    }

    /// [`Store::read_product`], asking the primary again when the standby's
    /// answer is `stale` (e.g. no such item: it may be too new for the
    /// standby, and a buyer who just saw it in a search must find it).
    pub(crate) fn read_product_unless<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        stale: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        match self.replica.as_ref().and_then(|r| r.read(&read)) {
            Some(Ok(value)) if stale(&value) => {}
            Some(result) => return result,
            None => {}
        }
        self.read_primary_settled(read, stale)
    }

    /// Runs `read` on product_db's primary; with a standby in use, an answer
    /// that is `missing` something (no such item) is asked again for a
    /// moment before it stands. A commit becomes visible on the primary only
    /// after its WAL is flushed, and a standby may replay and show that WAL
    /// first: a buyer can find an item in a search served by the standby
    /// a few milliseconds before the primary's new snapshots include it
    /// (longer when the committing backend waits for a CPU).
    ///
    /// # Errors
    /// As `read`; `Unavailable` when the primary cannot be reached.
    pub(crate) fn read_primary_settled<T>(
        &self,
        read: impl Fn(&mut Pooled) -> Result<T, StoreError>,
        missing: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.settled(
            || read(&mut self.product()?),
            |result| matches!(result, Ok(value) if missing(value)),
        )
    }

    /// Runs `attempt` on product_db's primary, again for a moment while its
    /// result is `missing` something and a standby is in use (see
    /// [`Store::read_primary_settled`]).
    pub(crate) fn settled<T>(
        &self,
        attempt: impl Fn() -> Result<T, StoreError>,
        missing: impl Fn(&Result<T, StoreError>) -> bool,
    ) -> Result<T, StoreError> {
        let mut result = attempt();
        if self.replica.is_none() {
            return result;
        }
        for pause in SETTLE_PAUSES {
            if !missing(&result) {
                break;
            }
            std::thread::sleep(pause);
            result = attempt();
        }
        result
    }

    /// What product_db's standby was last seen doing (None without one, or
    /// before its first look).
    pub fn replica_health(&self) -> Option<crate::replica::Health> {
        self.replica.as_ref().and_then(|r| r.health())
    }

    /// Reads served by product_db's standby so far (0 without one).
    pub fn replica_reads(&self) -> u64 {
        self.replica
            .as_ref()
            .map_or(0, |r| r.reads.load(Ordering::Relaxed))
    }

    /// A customer_db connection.
    ///
    /// # Errors
    /// `Unavailable` when none can be had within the connect timeout.
    pub fn customer(&self) -> Result<Pooled, StoreError> {
        self.customer.get()
    }

    /// A product_db connection.
    ///
    /// # Errors
    /// `Unavailable` when none can be had within the connect timeout.
    pub fn product(&self) -> Result<Pooled, StoreError> {
        self.product.get()
    }

    /// The session timeout in seconds, as every session statement takes it.
    pub(crate) fn timeout(&self) -> f64 {
        self.session_timeout_secs
    }

    /// Each pool's connections and the errors met on its database so far:
    /// connections that failed or could not be had, and statements that
    /// failed other than by a constraint (a taken username is not an error);
    /// and its keyed writes settled after their connection broke.
    pub fn db_stats(&self) -> Vec<DbStats> {
        [("customer", &self.customer), ("product", &self.product)]
            .into_iter()
            .chain(self.replica.as_ref().map(|r| ("product_replica", r.db())))
            .map(|(db, d)| {
                let state = d.pool.state();
                DbStats {
                    db,
                    open: state.connections,
                    idle: state.idle_connections,
                    errors: d.errors.load(Ordering::Relaxed),
                    settled: d.settles.read(),
                }
            })
            .collect()
    }
}

impl Store {
    /// Opens the pools and migrates both databases, waiting up to `wait` for
    /// them to accept connections (a container may start before its database).
    ///
    /// # Errors
    /// `Unavailable` when a database is still unreachable after `wait`; any
    /// other error at once.
    pub fn open_migrated(settings: &DbSettings, wait: Duration) -> Result<Store, StoreError> {
        let store = Store::open(settings)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match store.migrate() {
                Ok(()) => return Ok(store),
                Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies pending migrations to both databases.
    ///
    /// # Errors
    /// As [`crate::migrate::apply`].
    pub fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate::apply(&mut *self.customer()?, crate::migrate::CUSTOMER)?;
        crate::migrate::apply(&mut *self.product()?, crate::migrate::PRODUCT)?;
        Ok(())
    }
}
