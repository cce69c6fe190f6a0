//! One database connection with a prepared-statement cache, and the
//! statements it runs.
//!
//! A [`Conn`] prepares a statement the first time it runs it and reuses
//! the prepared statement afterwards, so a request costs one round trip per
//! statement instead of a parse and an execute. A transaction costs no round
//! trip of its own either: [`Conn::begin`] sends nothing, its BEGIN goes out
//! with the first statement, and [`Conn::commit_after`] sends the last
//! statement and COMMIT together (tokio-postgres pipelines requests polled at
//! once; each connection drives its own on a current-thread runtime, as the
//! `postgres` crate does). A connection that fails at the connection level is
//! marked broken, for its pool (`pool.rs`) to replace; the request that met
//! it gets `UNAVAILABLE`.

use crate::error::connection_broken;
use crate::stats::Settles;
use crate::StoreError;
use futures_util::future;
use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
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
    /// The pool's failure epoch when this connection was last known good;
    /// kept by the pool's checkout.
    pub(crate) epoch: u64,
    /// When it was last handed out; kept by the pool's checkout.
    pub(crate) last_used: Instant,
    failures: Arc<AtomicU64>,
    /// The pool's error count, for the metrics.
    errors: Arc<AtomicU64>,
    /// The server process at the other end.
    backend: Backend,
    /// The pool's counts of settled commits.
    settles: Arc<Settles>,
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
const WHO_AM_I: &str = "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8 AS started
                          FROM pg_stat_activity WHERE pid = pg_backend_pid()";

/// Ends a [`Backend`] (`$1`, `$2`) and waits up to `$3` ms for it to be gone;
/// a row `true` when it went, `false` when it is still there, no row when it
/// was gone already.
const FENCE: &str = "SELECT pg_terminate_backend(pid, $3) AS gone
                       FROM pg_stat_activity
                      WHERE pid = $1
                        AND (extract(epoch FROM backend_start) * 1000000)::int8 = $2";

/// A transaction of its own that writes WAL (a transactional message for
/// logical decoding, which nothing decodes: a record and no row), so that
/// its COMMIT waits for the synchronous standby (see [`Conn::durable`]). A
/// transaction that only takes an id (`txid_current()`) would not wait:
/// PostgreSQL waits for the standby only after a transaction that wrote WAL
/// before its commit record.
const DURABLE: &str = "SELECT pg_logical_emit_message(true, 'marketplace', 'durable') AS fenced";

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

/// One of [`Client`]'s ways of running a prepared statement (`query`,
/// `query_opt`, `query_one`, `execute`), as [`Conn::run`] takes it. A trait
/// rather than a closure bound because the future it returns borrows the
/// client, statement and parameters it is given, and a closure's return type
/// cannot name their lifetimes; the client's methods themselves can.
trait Request<'a, T> {
    type Reply: Future<Output = Result<T, tokio_postgres::Error>> + 'a;

    fn send(self, client: &'a Client, statement: &'a Statement, params: Params<'a>) -> Self::Reply;
}

impl<'a, T, F, R> Request<'a, T> for F
where
    F: FnOnce(&'a Client, &'a Statement, Params<'a>) -> R,
    R: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
{
    type Reply = R;

    fn send(self, client: &'a Client, statement: &'a Statement, params: Params<'a>) -> R {
        self(client, statement, params)
    }
}

impl Conn {
    /// Connects with `config` and learns which server process it reached;
    /// `failures`, `errors` and `settles` are the pool's counts it adds to.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached, `Internal` when it
    /// does not list the connection's server process.
    pub(crate) fn connect(
        config: &Config,
        failures: &Arc<AtomicU64>,
        errors: &Arc<AtomicU64>,
        settles: &Arc<Settles>,
    ) -> Result<Conn, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Only an exhausted process gets here (no file descriptors left).
            .map_err(|e| StoreError::Unavailable(format!("a connection's runtime: {e}")))?;
        let (client, link) = runtime.block_on(config.connect(NoTls))?;
        let mut link: Option<Link> = Some(Box::pin(link));
        let who = drive(&runtime, &mut link, client.simple_query(WHO_AM_I))?;
        let backend = who
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(Backend {
                    pid: row.get("pid")?.parse().ok()?,
                    started: row.get("started")?.parse().ok()?,
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
            epoch: failures.load(Ordering::SeqCst),
            last_used: Instant::now(),
            failures: failures.clone(),
            errors: errors.clone(),
            settles: settles.clone(),
        })
    }

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
            if matches!(
                e,
                StoreError::Unavailable(_)
                    | StoreError::ReadOnly(_)
                    | StoreError::Internal(_)
                    | StoreError::Refused { .. }
            ) {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            e
        })
    }

    /// Runs a cached statement by `request` (a [`Client`] method), with the
    /// pending BEGIN if there is one, and notes a failure.
    fn run<T>(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        request: impl for<'a> Request<'a, T>,
    ) -> Result<T, StoreError> {
        let result = self.statement(sql).and_then(|s| {
            let begin = self.take_begin();
            let run = after_begin(&self.client, begin, request.send(&self.client, &s, params));
            drive(&self.runtime, &mut self.link, run)
        });
        self.note(result)
    }

    /// Runs a cached statement and returns its rows.
    ///
    /// # Errors
    /// `Unavailable` when the connection failed; `Conflict`, `Orphan` or
    /// `Refused` (with its SQLSTATE) when the database refused the statement.
    pub fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.run(sql, params, Client::query::<Statement>)
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
        self.run(sql, params, Client::query_opt::<Statement>)
    }

    /// Runs a cached statement that returns exactly one row.
    ///
    /// # Errors
    /// As [`Conn::query`], and `Internal` for any other number of rows.
    pub fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        self.run(sql, params, Client::query_one::<Statement>)
    }

    /// Runs a cached statement and returns the number of rows it touched.
    ///
    /// # Errors
    /// As [`Conn::query`].
    pub fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        self.run(sql, params, Client::execute::<Statement>)
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
    pub(crate) fn ping(&mut self) -> Result<(), tokio_postgres::Error> {
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
    /// As [`Conn::query`] (`Refused` when this role may not end it).
    pub(crate) fn fence(&mut self, backend: Backend) -> Result<bool, StoreError> {
        let row = self.query_opt(FENCE, &[&backend.pid, &backend.started, &FENCE_WAIT_MS])?;
        Ok(row.map_or(Ok(true), |r| r.try_get("gone"))?)
    }

    /// Commits a transaction that has an id and nothing else, and waits up
    /// to `within` for its COMMIT to be acknowledged. Under synchronous
    /// replication the acknowledgement comes only when a synchronous
    /// standby has the WAL up to this commit, and so every commit this
    /// server made visible before it: what was read on this connection
    /// before `durable` survives the loss of this server (a promoted
    /// standby has it). Without replication it is an ordinary commit.
    ///
    /// The wait is never cancelled on the server (a cancelled wait for the
    /// standby ends the commit locally with only a warning, which would
    /// read as Ok): past `within` this side gives up on the connection,
    /// which is dropped, and the answer is `Unavailable`.
    ///
    /// # Errors
    /// As [`Conn::query`]; `ReadOnly` on a standby; `Unavailable` when no
    /// acknowledgement came within `within`.
    pub(crate) fn durable(&mut self, within: Duration) -> Result<(), StoreError> {
        let statement = match self.statement(DURABLE) {
            Ok(statement) => statement,
            Err(e) => return self.note(Err(e)),
        };
        // Made inside the runtime, whose timer it needs.
        let query = self.client.query_one(&statement, &[]);
        let run = async { tokio::time::timeout(within, query).await };
        match drive(&self.runtime, &mut self.link, run) {
            Ok(result) => self.note(result).map(|_| ()),
            Err(_) => {
                self.broken = true;
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(format!(
                    "no synchronous standby acknowledged a commit within {} ms",
                    within.as_millis()
                )))
            }
        }
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether it must leave the pool as it goes back: broken, or left
    /// inside a transaction (a request that returned early; the server rolls
    /// that back when it is dropped). One begun but not sent yet has nothing
    /// open on the server, and is simply reset.
    pub(crate) fn has_broken(&mut self) -> bool {
        if self.txn == Txn::Pending {
            self.txn = Txn::Idle;
        }
        self.broken || self.txn == Txn::Open || self.link.is_none() || self.client.is_closed()
    }
}
