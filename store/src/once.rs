//! Idempotency keys: a state-changing request with a key is applied at most
//! once per key (PROTOCOL.md, "Retries").
//!
//! The effect runs in a transaction on the connection of the database that
//! holds it; the key, with the effect's result, is inserted into that
//! database's `idempotency_keys` in the same transaction before it commits. If
//! the key is already there, the transaction is rolled back and the recorded
//! result is returned instead. Two attempts with one key at once serialise on
//! the key's primary key: the second waits for the first to commit, then sees
//! the key and rolls back. So a resend never has a second effect, and it gets
//! the first attempt's result (same ids). A request without a key runs as
//! before, outside any explicit transaction.
//!
//! A write whose effect is one statement (`OneStatement`: the seller's
//! item writes) needs no explicit transaction for its key either: the key's
//! insert joins the effect's own statement, which commits or fails as a
//! whole.
//!
//! MakePurchase records its key on the purchase itself (see `purchase.rs`).

use crate::conn::{Conn, Params};
use crate::db::Store;
use crate::pool::Pooled;
use crate::stats::Settled;
use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use wire::request::Idempotency;

/// How long a key is remembered, in hours (PROTOCOL.md: 24 hours).
pub const RETENTION_HOURS: i32 = 24;

/// An idempotent request and its caller: the key's scope.
#[derive(Debug, Clone)]
pub struct Keyed<'a> {
    pub once: &'a Idempotency,
    pub scope: Scope,
}

/// Whose keys a key is among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `seller:<id>`, `buyer:<id>`, `seller-name:<username>` or
    /// `buyer-name:<username>`.
    Named(String),
    /// `buyer:<id>` of the buyer of this session, looked up by the key's
    /// own statements (on customer_db, which holds the sessions): a cart
    /// write needs no round trip of its own to learn its buyer.
    BuyerOfSession(uuid::Uuid),
}

impl Scope {
    /// The statements that claim a key and read a recorded one in this
    /// scope, and the scope's parameter to both.
    fn statements(&self) -> (&'static str, &'static str, &(dyn ToSql + Sync)) {
        match self {
            Scope::Named(scope) => (CLAIM, RECORDED, scope),
            Scope::BuyerOfSession(session) => (CLAIM_BY_SESSION, RECORDED_BY_SESSION, session),
        }
    }
}

/// Fails (a unique violation, which aborts the transaction) when the key is
/// taken: it is sent with the COMMIT, which then rolls the effect back.
const CLAIM: &str = "INSERT INTO idempotency_keys (scope, key, operation, fingerprint, response)
                     VALUES ($1, $2, $3, $4, $5)";

/// [`CLAIM`] for [`Scope::BuyerOfSession`]; a session gone since the effect
/// renewed it leaves the scope NULL, which fails as the NOT NULL violation
/// and rolls the effect back too.
const CLAIM_BY_SESSION: &str =
    "INSERT INTO idempotency_keys (scope, key, operation, fingerprint, response)
     VALUES ((SELECT 'buyer:' || buyer_id FROM buyer_sessions WHERE session_id = $1),
             $2, $3, $4, $5)";

const RECORDED: &str = "SELECT operation, fingerprint, response FROM idempotency_keys
                         WHERE scope = $1 AND key = $2";

const RECORDED_BY_SESSION: &str = "SELECT k.operation, k.fingerprint, k.response
     FROM buyer_sessions s JOIN idempotency_keys k ON k.scope = 'buyer:' || s.buyer_id
    WHERE s.session_id = $1 AND k.key = $2";

/// How long a keyed write whose COMMIT went unanswered keeps asking the
/// database whether it committed (a restart takes a second or two).
const SETTLE: Duration = Duration::from_secs(5);

/// The shortest wait for a synchronous standby while settling (the last
/// try may start just before the settling time is up).
const MIN_DURABLE_WAIT: Duration = Duration::from_millis(500);

/// How long a resend's recorded result waits for a synchronous standby to
/// acknowledge it before the answer is "outcome unknown": a failover's
/// promotion takes about Patroni's ttl (12 s in compose.ha.yaml).
pub(crate) const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// [`run_once`] on a connection from `connect`; when the connection broke
/// while COMMIT was on its way, the outcome is learned from the key on a fresh
/// connection: recorded, the write happened (its result is returned); absent
/// while the database answers, it did not (`Unavailable`, nothing changed).
/// Only when the database stays away for [`SETTLE`] is the answer
/// `CommitUnknown`.
///
/// # Errors
/// As [`run_once`], and `CommitUnknown`.
pub(crate) fn run_once_on<T: Serialize + DeserializeOwned>(
    connect: impl Fn() -> Result<Pooled, StoreError>,
    keyed: Option<&Keyed<'_>>,
    effect: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut conn = connect()?;
    let result = run_once(&mut conn, keyed, effect);
    settle(connect, keyed, conn, result)
}

/// A write whose effect is one statement that returns at most one row, in
/// two versions: `plain` alone, and `keyed`, the same effect with its key's
/// INSERT in one statement (a CTE that records the key with the result read
/// from the effect's own row). One statement is a transaction of its own,
/// so a keyed write costs one round trip and no BEGIN or COMMIT, where
/// [`run_once`] sends four statements in two round trips.
pub(crate) struct OneStatement {
    /// The effect: its parameters `$1` to `$n`, at most one row.
    pub plain: &'static str,
    /// The effect and the key: the same parameters, then `$n+1` the scope,
    /// `$n+2` the key, `$n+3` the operation, `$n+4` the fingerprint; the same
    /// row as `plain`, and the key recorded with a response that decodes as
    /// the value `read` makes of that row.
    pub keyed: &'static str,
}

/// A [`OneStatement`] from its effect (without `RETURNING`), the columns it
/// returns, the SQL of the response to record (over those columns) and the
/// numbers of the key's four parameters (`"$4, $5, $6, $7"`).
macro_rules! one_statement {
    ($effect:literal, returning $columns:literal, response $response:literal, key $key:literal) => {
        $crate::once::OneStatement {
            plain: concat!($effect, " RETURNING ", $columns),
            keyed: concat!(
                "WITH e AS (",
                $effect,
                " RETURNING ",
                $columns,
                "), k AS (INSERT INTO idempotency_keys (scope, key, operation, fingerprint, response) \
                 SELECT ",
                $key,
                ", ",
                $response,
                " FROM e) SELECT ",
                $columns,
                " FROM e"
            ),
        }
    };
}
pub(crate) use one_statement;

/// Runs `statement` at most once per key (as [`run_once_on`], in one
/// statement): `read` makes the result of its row; `missing` says why there
/// was none (the effect did not apply), and may ask the database.
///
/// # Errors
/// As [`run_once_on`]; `missing`'s error when there was no row and nothing
/// is recorded under the key.
pub(crate) fn run_statement_once_on<T: Serialize + DeserializeOwned>(
    connect: impl Fn() -> Result<Pooled, StoreError>,
    keyed: Option<&Keyed<'_>>,
    statement: &OneStatement,
    params: Params<'_>,
    read: impl FnOnce(&Row) -> Result<T, StoreError>,
    missing: impl FnOnce(&mut Conn) -> StoreError,
) -> Result<T, StoreError> {
    let mut conn = connect()?;
    let Some(keyed) = keyed else {
        return match conn
            .query_opt(statement.plain, params)
            .map_err(unknown_if_broken)?
        {
            Some(row) => read(&row),
            None => Err(missing(&mut conn)),
        };
    };
    let Scope::Named(scope) = &keyed.scope else {
        return Err(StoreError::Internal(
            "a one-statement write is keyed by a named scope".into(),
        ));
    };
    let once = keyed.once;
    let mut all = params.to_vec();
    all.extend_from_slice(&[scope, &once.key, &once.operation, &once.fingerprint]);
    let result = match conn.query_opt(statement.keyed, &all) {
        Ok(Some(row)) => read(&row),
        // The effect did not apply; perhaps because the first attempt did
        // (the units it removed are gone): the first result stands.
        Ok(None) => {
            let why = missing(&mut conn);
            replayed(&mut conn, keyed).and_then(|first| first.ok_or(why))
        }
        // The key is taken: the effect was undone with the statement.
        Err(StoreError::Conflict(_)) => replayed(&mut conn, keyed)?
            .ok_or_else(|| StoreError::Internal("an idempotency key vanished while read".into())),
        // The server may have run it before the connection went.
        Err(StoreError::Unavailable(detail)) => Err(StoreError::CommitUnknown(detail)),
        Err(e) => Err(e),
    };
    settle(connect, Some(keyed), conn, result)
}

/// When `result` is `CommitUnknown` (the connection broke while the write's
/// commit was on its way), the outcome is learned from the key on a fresh
/// connection (see [`run_once_on`]); any other result stands. `used` is the
/// connection the write ran on, given back to its pool here.
///
/// The key is read only once the broken connection's server process is
/// gone: until then a COMMIT delayed on its way, or one the
/// process is still running, may yet commit, and a key read absent would be
/// a false "nothing was changed". A process that is not gone within the
/// settling time, or that this role may not end, leaves the outcome unknown.
///
/// "Outcome known" across a failover (docs/architecture.md, "Outcome
/// known"): what the key read says holds only if the server it was read on
/// is the one whose commits survive. Ending the old process ends a COMMIT
/// that was waiting for the synchronous standby *locally*: its key is then
/// visible here though no standby may have it, and a promotion would lose
/// it. And the fresh connection may have reached another server than the
/// old one (a new primary: the old process cannot be ended from here, but
/// nothing it commits on the old server can reach this one; or an isolated
/// old primary that still takes connections: a key read absent there says
/// nothing about the new one). So after reading, a commit of its own is
/// waited for ([`Conn::durable`]): acknowledged, every commit this server
/// showed before it is on a synchronous standby, and this server is the
/// primary whose history survives; a key present is the truth and a key
/// absent can no longer appear. Not acknowledged within the settling time
/// (no standby answers, or the server was demoted), the outcome stays
/// unknown.
fn settle<T: DeserializeOwned>(
    connect: impl Fn() -> Result<Pooled, StoreError>,
    keyed: Option<&Keyed<'_>>,
    used: Pooled,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    let (Err(StoreError::CommitUnknown(detail)), Some(keyed)) = (&result, keyed) else {
        return result;
    };
    // Given back (broken, so replaced) before a fresh one is asked for: the
    // pool may hold no other.
    let (backend, settles) = (used.backend(), used.settles());
    drop(used);
    let deadline = Instant::now() + SETTLE;
    loop {
        let looked = connect().and_then(|mut c| {
            if !c.fence(backend)? {
                return Err(StoreError::Unavailable(
                    "the broken connection's server process is still running".into(),
                ));
            }
            let found = recorded(&mut c, keyed)?;
            // What was read stands only if this server's commits survive
            // it: see "outcome known" above.
            let left = deadline.saturating_duration_since(Instant::now());
            c.durable(left.max(MIN_DURABLE_WAIT))?;
            Ok(found)
        });
        match looked {
            Ok(Some(value)) => {
                settles.count(Settled::Committed);
                return Ok(value);
            }
            Ok(None) => {
                settles.count(Settled::NotCommitted);
                return Err(StoreError::Unavailable(format!(
                    "{detail}; the key is not recorded, so it did not commit"
                )));
            }
            Err(StoreError::Unavailable(_) | StoreError::ReadOnly(_))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(
                StoreError::Unavailable(_)
                | StoreError::ReadOnly(_)
                | StoreError::Internal(_)
                | StoreError::Refused { .. },
            ) => {
                settles.count(Settled::Unknown);
                return result;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs `effect` on `conn` at most once per key: with `keyed`, in a transaction
/// that also records the key and the result; without, as it is.
///
/// # Errors
/// The effect's error when nothing was recorded under the key;
/// `Invalid` when the key was used for a different request; `CommitUnknown`
/// when the connection broke while COMMIT was on its way (see
/// [`run_once_on`]).
fn run_once<T: Serialize + DeserializeOwned>(
    conn: &mut Conn,
    keyed: Option<&Keyed<'_>>,
    effect: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let Some(keyed) = keyed else {
        return effect(conn).map_err(unknown_if_broken);
    };
    // Two round trips for a one-statement effect: BEGIN goes with the
    // effect's first statement, the key's INSERT with the COMMIT.
    conn.begin();
    match effect(conn) {
        Ok(value) => {
            let response = match serde_json::to_string(&value) {
                Ok(response) => response,
                Err(e) => {
                    conn.rollback()?;
                    return Err(StoreError::Internal(format!("encoding a result: {e}")));
                }
            };
            let once = keyed.once;
            let (claim, _, scope) = keyed.scope.statements();
            let claimed = conn.commit_after(
                claim,
                &[
                    scope,
                    &once.key,
                    &once.operation,
                    &once.fingerprint,
                    &response,
                ],
            );
            match claimed {
                Ok(_) => Ok(value),
                // The key is taken: the effect was rolled back with it.
                Err(StoreError::Conflict(_)) => replayed(conn, keyed)?.ok_or_else(|| {
                    StoreError::Internal("an idempotency key vanished while read".into())
                }),
                // No buyer for the scope: the session ended meanwhile.
                Err(StoreError::Refused { state, .. })
                    if matches!(keyed.scope, Scope::BuyerOfSession(_))
                        && state == SqlState::NOT_NULL_VIOLATION =>
                {
                    Err(StoreError::SessionExpired)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => {
            // A dead connection cannot roll back; the server rolls back for it.
            if matches!(
                e,
                StoreError::Unavailable(_) | StoreError::ReadOnly(_) | StoreError::InDoubt(_)
            ) || conn.rollback().is_err()
            {
                return Err(e);
            }
            // The effect may have failed *because* the first attempt applied it
            // (the units it removed are gone): the first result stands.
            match replayed(conn, keyed)? {
                Some(value) => Ok(value),
                None => Err(e),
            }
        }
    }
}

/// A write without a key whose connection broke while it was on its way
/// may have been applied, and nothing can tell (there is no key to read):
/// its answer says the outcome is unknown, not "nothing was changed".
fn unknown_if_broken(e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(detail) => StoreError::CommitUnknown(detail),
        e => e,
    }
}

/// The result recorded under the key, if any, to be answered again: only
/// once it is known to outlive this server ([`Conn::durable`]). A first
/// attempt whose wait for the standby was ended (its server stopping, say)
/// is visible here although no standby may have it; answered as done and
/// then lost to a promotion, it would be an acknowledged write lost.
fn replayed<T: DeserializeOwned>(
    conn: &mut Conn,
    keyed: &Keyed<'_>,
) -> Result<Option<T>, StoreError> {
    let found = recorded(conn, keyed)?;
    if found.is_some() {
        // Not known to have outlived this server: perhaps done, perhaps
        // not (a resend later tells).
        conn.durable(REPLAY_WAIT).map_err(unknown_if_broken)?;
    }
    Ok(found)
}

/// The result recorded under the key, if any.
fn recorded<T: DeserializeOwned>(
    conn: &mut Conn,
    keyed: &Keyed<'_>,
) -> Result<Option<T>, StoreError> {
    let (_, read, scope) = keyed.scope.statements();
    let Some(row) = conn.query_opt(read, &[scope, &keyed.once.key])? else {
        return Ok(None);
    };
    let operation: String = row.try_get("operation")?;
    let fingerprint: String = row.try_get("fingerprint")?;
    if operation != keyed.once.operation || fingerprint != keyed.once.fingerprint {
        return Err(StoreError::Invalid(format!(
            "idempotency_key {:?} was already used for a different request ({operation}); \
             use a fresh key for each request",
            keyed.once.key
        )));
    }
    let response: String = row.try_get("response")?;
    serde_json::from_str(&response)
        .map(Some)
        .map_err(|e| StoreError::Internal(format!("a recorded result does not decode: {e}")))
}

impl Store {
    /// Forgets idempotency keys older than the retention, in both databases
    /// (and on purchases); returns how many.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn sweep_idempotency_keys(&self) -> Result<u64, StoreError> {
        const SWEEP: &str = "DELETE FROM idempotency_keys
                              WHERE created_at < now() - make_interval(hours => $1)";
        let mut swept = self.customer()?.execute(SWEEP, &[&RETENTION_HOURS])?;
        swept += self.customer()?.execute(
            "UPDATE purchases SET idempotency_key = NULL
              WHERE idempotency_key IS NOT NULL
                AND purchased_at < now() - make_interval(hours => $1)",
            &[&RETENTION_HOURS],
        )?;
        swept += self.product()?.execute(SWEEP, &[&RETENTION_HOURS])?;
        Ok(swept)
    }
}
