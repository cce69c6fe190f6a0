//! The marketplace wire protocol of `docs/PROTOCOL.md`, and nothing else.
//!
//! This crate owns the frame codec ([`frame`]), the error codes ([`ErrorCode`]), the
//! typed requests of both servers ([`seller`], [`buyer`]), the typed responses
//! ([`response`]) and the validation rules ([`validate`]). Servers, CLIs and the load
//! generator all use these types; no other crate defines a message.
//!
//! It must not do I/O or hold policy about connections: no sockets, no threads, no
//! timeouts. Those live in `net`.

pub mod code;
pub mod frame;
pub mod request;
pub mod response;
pub mod validate;

pub use code::{ErrorCode, Status};
pub use frame::{FrameDecoder, FrameError, DEFAULT_FRAME_LIMIT};
pub use request::{buyer, seller, Answer, Decoded, Op, Operation, Rejection, RequestId};
pub use response::{Refusal, Response};

/// The protocol version both servers report from `Ping`.
pub const PROTOCOL_VERSION: u32 = 1;
