//! The load generator: S sellers and B buyers, each a client with its own
//! connection, account and session, making N calls per run, R runs per
//! scenario, timed at the client.
//!
//! [`mix`] holds the workloads as weighted tables, [`workload`] the client loops,
//! [`stats`] the HDR histograms and their summaries, [`report`] the tables and
//! the JSON report, [`chart`] the SVG chart, [`local`] the local stack (a
//! `marketplace up` process), [`procfs`] the servers' CPU and
//! memory read from /proc, [`scrape`] the servers' own latency histograms
//! from their metrics endpoints. Requests are `wire` types sent by [`conn`]
//! (client::Client's contract on a tokio runtime, so thousands of clients share a
//! few threads): every request is one a real client could send.

pub mod catalogue;
pub mod chart;
pub mod conn;
pub mod local;
pub mod mix;
pub mod procfs;
pub mod report;
pub mod scrape;
pub mod stats;
pub mod workload;
