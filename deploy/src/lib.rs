//! Starting the marketplace on one machine.
//!
//! - [`pg`]: a private PostgreSQL cluster in a directory (the `pgcluster`
//!   crate, re-exported: initdb/pg_ctl from the installed server binaries, run
//!   as the `postgres` user when we are root).
//! - [`stack`]: that cluster (or existing databases) plus both servers in this
//!   process: what `marketplace up`, the integration tests and loadgen start.
//! - [`testing`]: one stack per test binary, stopped when the binary exits.
//!
//! Nothing here serves requests; it only starts and stops what does.

pub use pgcluster as pg;
pub mod stack;
pub mod testing;

pub use stack::{ServerMode, Stack, StackConfig};

use std::ffi::OsString;
use std::process::ExitCode;

/// Runs one server when `raw` (the arguments after the program name) starts
/// with `seller` or `buyer`: how a multi-call binary (`marketplace`, `loadgen`)
/// serves [`ServerMode::Processes`]. `None` for any other first argument.
pub fn serve_subcommand(raw: &[OsString]) -> Option<ExitCode> {
    let (first, rest) = raw.split_first()?;
    match first.to_str()? {
        "seller" => Some(server::main(&seller_srv::SIDE, rest.to_vec())),
        "buyer" => Some(server::main(&buyer_srv::SIDE, rest.to_vec())),
        _ => None,
    }
}
