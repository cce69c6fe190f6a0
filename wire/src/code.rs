//! Response statuses and the machine-readable error codes of the protocol.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The `status` field of every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The request succeeded; the result fields are present.
    #[serde(rename = "OK")]
    Ok,
    /// The request failed; `code` says why.
    Error,
    /// The session is unknown, expired or ended: the client must log in again.
    Timeout,
}

/// The `code` field of every `Error` or `Timeout` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadFrame,
    BadRequest,
    UnknownOperation,
    InvalidArgument,
    UsernameTaken,
    AuthFailed,
    SessionExpired,
    NotFound,
    InsufficientStock,
    CartEmpty,
    PaymentDeclined,
    Unavailable,
    Overloaded,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of PROTOCOL.md's table.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadFrame,
        ErrorCode::BadRequest,
        ErrorCode::UnknownOperation,
        ErrorCode::InvalidArgument,
        ErrorCode::UsernameTaken,
        ErrorCode::AuthFailed,
        ErrorCode::SessionExpired,
        ErrorCode::NotFound,
        ErrorCode::InsufficientStock,
        ErrorCode::CartEmpty,
        ErrorCode::PaymentDeclined,
        ErrorCode::Unavailable,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
    ];

    /// The status a response with this code carries.
    pub fn status(self) -> Status {
        match self {
            ErrorCode::SessionExpired => Status::Timeout,
            _ => Status::Error,
        }
    }

    /// Whether a client may retry the same request later (with backoff).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Overloaded)
    }

    /// The code as it appears on the wire, e.g. `"NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownOperation => "UNKNOWN_OPERATION",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::UsernameTaken => "USERNAME_TAKEN",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::SessionExpired => "SESSION_EXPIRED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InsufficientStock => "INSUFFICIENT_STOCK",
            ErrorCode::CartEmpty => "CART_EMPTY",
            ErrorCode::PaymentDeclined => "PAYMENT_DECLINED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in ErrorCode::ALL {
            let json = simd_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn only_session_expired_is_a_timeout_and_only_transient_codes_retry() {
        for code in ErrorCode::ALL {
            assert_eq!(
                code.status() == Status::Timeout,
                code == ErrorCode::SessionExpired
            );
            assert_eq!(
                code.is_retryable(),
                matches!(code, ErrorCode::Unavailable | ErrorCode::Overloaded)
            );
        }
        assert_eq!(simd_json::to_string(&Status::Ok).unwrap(), "\"OK\"");
    }
}
