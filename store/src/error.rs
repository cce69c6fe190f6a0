//! The store's error type, with the protocol code of every variant.

use std::fmt;
use tokio_postgres::error::SqlState;
use wire::ErrorCode;

/// Why a use case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    UsernameTaken,
    AuthFailed,
    SessionExpired,
    NotFound(String),
    InsufficientStock(String),
    /// MakePurchase on an empty active cart.
    CartEmpty,
    /// A value the database side refuses (e.g. a stock count over 10^9).
    Invalid(String),
    /// A database is unreachable or went away mid-request; nothing was changed.
    Unavailable(String),
    /// The database reached takes no writes (SQLSTATE 25006): a standby, or
    /// a primary being demoted in a failover. The statement was refused, so
    /// nothing was changed; the connection is replaced (its next one finds
    /// the new primary).
    ReadOnly(String),
    /// A database failed after a purchase began: it is neither done nor
    /// undone yet; recovery finishes or cancels it shortly.
    InDoubt(String),
    /// A keyed write's COMMIT was sent and the database went away before it
    /// answered, and stayed away long enough that the store could not learn
    /// whether it committed: a resend with the same key will tell.
    CommitUnknown(String),
    /// A unique constraint refused a write; use cases that expect one (a taken
    /// username) turn it into their own error, anywhere else it is a bug.
    Conflict(String),
    /// A foreign key refused a write: the row it points at is gone (a session
    /// ended while its cart was being changed). Use cases that expect one say
    /// what it means; anywhere else it is a bug.
    Orphan(String),
    /// The database refused a statement for another reason, named by its
    /// SQLSTATE (e.g. a NOT NULL violation): use cases that expect one
    /// match on `state`; anywhere else it is a bug, answered and logged as
    /// `Internal`.
    Refused {
        state: SqlState,
        detail: String,
    },
    /// Anything else: a bug, logged by the server.
    Internal(String),
}

impl StoreError {
    /// The protocol code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::UsernameTaken => ErrorCode::UsernameTaken,
            StoreError::AuthFailed => ErrorCode::AuthFailed,
            StoreError::SessionExpired => ErrorCode::SessionExpired,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::InsufficientStock(_) => ErrorCode::InsufficientStock,
            StoreError::CartEmpty => ErrorCode::CartEmpty,
            StoreError::Invalid(_) => ErrorCode::InvalidArgument,
            StoreError::Unavailable(_)
            | StoreError::ReadOnly(_)
            | StoreError::InDoubt(_)
            | StoreError::CommitUnknown(_) => ErrorCode::Unavailable,
            StoreError::Conflict(_)
            | StoreError::Orphan(_)
            | StoreError::Refused { .. }
            | StoreError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sentence for the client. Internal details stay in the server log.
    pub fn client_message(&self) -> String {
        match self {
            StoreError::UsernameTaken => "that username is already registered".into(),
            StoreError::AuthFailed => "wrong username or password".into(),
            StoreError::SessionExpired => "the session has expired or ended; log in again".into(),
            StoreError::NotFound(m) | StoreError::InsufficientStock(m) | StoreError::Invalid(m) => {
                m.clone()
            }
            StoreError::CartEmpty => "the cart is empty; there is nothing to buy".into(),
            StoreError::Unavailable(_) | StoreError::ReadOnly(_) => {
                "a database is unavailable right now; nothing was changed, retry later".into()
            }
            StoreError::InDoubt(_) => "a database failed during the purchase; it will be \
                completed or cancelled automatically within a minute: check your purchase \
                history before buying again"
                .into(),
            StoreError::CommitUnknown(_) => "a database went away while this was being saved, \
                so it may or may not have been applied: a resend with the same idempotency_key \
                learns which (without one, check before sending it again)"
                .into(),
            StoreError::Conflict(_)
            | StoreError::Orphan(_)
            | StoreError::Refused { .. }
            | StoreError::Internal(_) => "internal error".into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(detail) => write!(f, "database unavailable: {detail}"),
            StoreError::ReadOnly(detail) => write!(f, "database read-only: {detail}"),
            StoreError::InDoubt(detail) => write!(f, "purchase in doubt: {detail}"),
            StoreError::CommitUnknown(detail) => write!(f, "commit outcome unknown: {detail}"),
            StoreError::Internal(detail) | StoreError::Refused { detail, .. } => {
                write!(f, "internal: {detail}")
            }
            StoreError::Conflict(detail) => write!(f, "conflict: {detail}"),
            StoreError::Orphan(detail) => write!(f, "orphan: {detail}"),
            other => f.write_str(&other.client_message()),
        }
    }
}

impl std::error::Error for StoreError {}

/// SQLSTATEs that mean "the connection or server is gone".
const GONE: [SqlState; 4] = [
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
];

/// Whether `e` says the connection or server is gone: its SQLSTATE is one of
/// [`GONE`] or of class 08 (connection exception, every code of it, the
/// ones PostgreSQL may add too).
fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(state) => state.code().starts_with("08") || GONE.contains(state),
        // No SQLSTATE: an I/O error on the socket, or a protocol failure.
        None => e.as_db_error().is_none(),
    }
}

/// Whether the connection that met `e` must be replaced: it failed, or it
/// reached a server that takes no writes (a demoted primary keeps its
/// connections only until it restarts as a standby; a new one finds the
/// primary).
pub(crate) fn connection_broken(e: &tokio_postgres::Error) -> bool {
    is_connection_failure(e) || e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// The server's own words for a database error ("db error" alone says nothing).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let detail = describe(&e);
        if is_connection_failure(&e) {
            return StoreError::Unavailable(detail);
        }
        match e.code() {
            Some(state) if *state == SqlState::READ_ONLY_SQL_TRANSACTION => {
                StoreError::ReadOnly(detail)
            }
            Some(state) if *state == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(detail),
            Some(state) if *state == SqlState::FOREIGN_KEY_VIOLATION => StoreError::Orphan(detail),
            Some(state) => StoreError::Refused {
                state: state.clone(),
                detail,
            },
            // Not reached: an error without a SQLSTATE is a connection failure.
            None => StoreError::Internal(detail),
        }
    }
}

impl From<StoreError> for wire::Refusal {
    fn from(e: StoreError) -> Self {
        let detail = match &e {
            StoreError::Unavailable(d)
            | StoreError::ReadOnly(d)
            | StoreError::InDoubt(d)
            | StoreError::CommitUnknown(d)
            | StoreError::Internal(d)
            | StoreError::Refused { detail: d, .. }
            | StoreError::Conflict(d)
            | StoreError::Orphan(d) => Some(d.clone()),
            _ => None,
        };
        wire::Refusal {
            code: e.code(),
            message: e.client_message(),
            detail,
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(format!("no database connection: {e}"))
    }
}

/// How many units an item has left, in words: `is sold out`, `has only 1
/// unit`, `has only 3 units` (a stock refusal's message).
pub(crate) fn units_left(item_id: i64, left: i64) -> String {
    match left {
        ..=0 => format!("item {item_id} is sold out"),
        1 => format!("item {item_id} has only 1 unit"),
        n => format!("item {item_id} has only {n} units"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_left_are_counted_in_words() {
        assert_eq!(units_left(4, 0), "item 4 is sold out");
        assert_eq!(units_left(4, 1), "item 4 has only 1 unit");
        assert_eq!(units_left(4, 7), "item 4 has only 7 units");
    }

    #[test]
    fn every_variant_maps_to_its_protocol_code() {
        let cases = [
            (StoreError::UsernameTaken, ErrorCode::UsernameTaken),
            (StoreError::AuthFailed, ErrorCode::AuthFailed),
            (StoreError::SessionExpired, ErrorCode::SessionExpired),
            (StoreError::NotFound("x".into()), ErrorCode::NotFound),
            (
                StoreError::InsufficientStock("x".into()),
                ErrorCode::InsufficientStock,
            ),
            (StoreError::Invalid("x".into()), ErrorCode::InvalidArgument),
            (StoreError::Unavailable("x".into()), ErrorCode::Unavailable),
            (StoreError::InDoubt("x".into()), ErrorCode::Unavailable),
            (
                StoreError::CommitUnknown("x".into()),
                ErrorCode::Unavailable,
            ),
            (StoreError::CartEmpty, ErrorCode::CartEmpty),
            (StoreError::Conflict("x".into()), ErrorCode::Internal),
            (StoreError::Orphan("x".into()), ErrorCode::Internal),
            (
                StoreError::Refused {
                    state: SqlState::NOT_NULL_VIOLATION,
                    detail: "x".into(),
                },
                ErrorCode::Internal,
            ),
            (StoreError::Internal("x".into()), ErrorCode::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
            assert!(!error.client_message().is_empty());
        }
    }

    #[test]
    fn internal_details_never_reach_the_client_message() {
        let e = StoreError::Internal("relation \"secret_table\" does not exist".into());
        assert!(!e.client_message().contains("secret_table"));
        let e = StoreError::Unavailable("connection refused at 10.0.0.5".into());
        assert!(!e.client_message().contains("10.0.0.5"));
    }
}
