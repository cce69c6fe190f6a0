//! The client side of the marketplace's frame protocol, shared by the CLIs
//! and the load generator.
//!
//! - [`rules`]: what every client does the same way: the reconnect policy
//!   ([`Retry`], exponential backoff with jitter), which requests carry an
//!   idempotency key and may be resent ([`Call`]), and when a failed attempt
//!   is tried again ([`Attempts`]). The blocking [`Client`] here and
//!   loadgen's asynchronous connection both follow these, so neither can
//!   drift from PROTOCOL.md's "Retries".
//! - [`frames`]: a connection's frame buffers, shared by both clients.
//! - [`blocking`]: one blocking connection with pipelining and reconnects
//!   (the CLIs).
//! - [`tls`]: TLS to a TLS-terminating proxy (HAProxy's TLS ports), with a
//!   test front behind the `test-tls` feature.
//!
//! It knows frames and the typed operations (from `wire`) and nothing of
//! servers: no reactor, no metrics, no database.

pub mod blocking;
pub mod frames;
pub mod rules;
pub mod tls;

pub use blocking::{Client, RetryEvent};
pub use rules::{Attempts, Call, ClientConfig, ClientError, Retry, Retrying, Servers};
