//! Starting the marketplace on one machine.
//!
//! - [`pg`]: a private PostgreSQL cluster in a directory (initdb/pg_ctl from the
//!   installed server binaries; run as the `postgres` user when we are root).
//! - [`stack`]: that cluster (or existing databases) plus both servers in this
//!   process: what `marketplace up`, the integration tests and loadgen start.
//! - [`testing`]: one stack per test binary, stopped when the binary exits.
//!
//! Nothing here serves requests; it only starts and stops what does.

pub mod pg;
pub mod stack;
pub mod testing;

pub use stack::{Stack, StackConfig};
