//! The store's error type, with the protocol code of every variant.

use std::fmt;
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
            StoreError::Unavailable(_) | StoreError::InDoubt(_) | StoreError::CommitUnknown(_) => {
                ErrorCode::Unavailable
            }
            StoreError::Conflict(_) | StoreError::Orphan(_) | StoreError::Internal(_) => {
                ErrorCode::Internal
            }
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
            StoreError::Unavailable(_) => {
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
            StoreError::Conflict(_) | StoreError::Orphan(_) | StoreError::Internal(_) => {
                "internal error".into()
            }
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(detail) => write!(f, "database unavailable: {detail}"),
            StoreError::InDoubt(detail) => write!(f, "purchase in doubt: {detail}"),
            StoreError::CommitUnknown(detail) => write!(f, "commit outcome unknown: {detail}"),
            StoreError::Internal(detail) => write!(f, "internal: {detail}"),
            StoreError::Conflict(detail) => write!(f, "conflict: {detail}"),
            StoreError::Orphan(detail) => write!(f, "orphan: {detail}"),
            other => f.write_str(&other.client_message()),
        }
    }
}

impl std::error::Error for StoreError {}

/// SQLSTATE classes and codes that mean "the connection or server is gone".
fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(state) => {
            let code = state.code();
            code.starts_with("08") // connection exception
                || code == "57P01" // admin_shutdown
                || code == "57P02" // crash_shutdown
                || code == "57P03" // cannot_connect_now
                || code == "53300" // too_many_connections
        }
        // No SQLSTATE: an I/O error on the socket, or a protocol failure.
        None => e.as_db_error().is_none(),
    }
}

pub(crate) fn connection_broken(e: &tokio_postgres::Error) -> bool {
    is_connection_failure(e)
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
            StoreError::Unavailable(detail)
        } else if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict(detail)
        } else if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::Orphan(detail)
        } else {
            StoreError::Internal(detail)
        }
    }
}

impl From<StoreError> for wire::Refusal {
    fn from(e: StoreError) -> Self {
        let detail = match &e {
            StoreError::Unavailable(d)
            | StoreError::InDoubt(d)
            | StoreError::CommitUnknown(d)
            | StoreError::Internal(d)
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

#[cfg(test)]
mod tests {
    use super::*;

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
