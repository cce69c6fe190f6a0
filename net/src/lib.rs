//! Networking for the marketplace: the server reactor and the client.
//!
//! - [`reactor`]: one mio `Poll` thread that accepts connections, keeps them in a
//!   slab with reusable buffers, splits frames out without copying, and hands each
//!   request to a bounded pool of blocking workers that run a [`Service`].
//! - [`client`]: the blocking client used by the CLIs and the load generator, with
//!   pipelining and reconnect with exponential backoff and jitter.
//! - [`signals`]: SIGINT/SIGTERM to a clean shutdown; [`echo`]: the echo service
//!   of the reactor tests and benchmark.
//! - [`metrics`], [`log`]: the servers' counters and log lines; [`proxy`]: the
//!   PROXY protocol header; [`tls`]: TLS for the clients.
//!
//! This crate knows frames and error codes (from `wire`) but no operation: what a
//! request means is the service's business. It must never block the reactor thread
//! on anything but `Poll::poll`, and holds no process policy (flags, exit codes):
//! that is the `server` crate's.

pub mod client;
pub mod echo;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod reactor;
pub mod signals;
pub mod tls;

pub use client::{Client, ClientConfig, ClientError, Retry, RetryEvent};
pub use reactor::{Config, Server, Service, ShutdownHandle};
