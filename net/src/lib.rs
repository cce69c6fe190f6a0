//! The marketplace's transport: the server side of the frame protocol.
//!
//! - [`reactor`]: one mio `Poll` thread that accepts connections, keeps them in a
//!   slab with reusable buffers, splits frames out without copying, and hands each
//!   request to a bounded pool of blocking workers that run a [`Service`].
//! - [`proxy`]: the PROXY protocol v2 header of a load balancer's connections.
//! - [`metrics`]: the transport's counters (requests by operation and code,
//!   connections, closes, rejected frames, lanes), plain atomics that the
//!   `server` crate's exporter reads; [`log`]: one-line logs.
//! - [`signals`]: SIGINT/SIGTERM to a clean shutdown; [`echo`]: the echo service
//!   of the reactor tests and benchmark.
//!
//! The client side (the blocking client, TLS, the retry rules) is the `client`
//! crate's; exporting metrics over HTTP is the `server` crate's.
//!
//! This crate knows frames and error codes (from `wire`) but no operation: what a
//! request means is the service's business. It must never block the reactor thread
//! on anything but `Poll::poll`, and holds no process policy (flags, exit codes):
//! that is the `server` crate's.

pub mod echo;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod reactor;
pub mod signals;

pub use reactor::{Config, Server, Service, ShutdownHandle};
