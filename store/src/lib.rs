//! PostgreSQL access for the marketplace: the only crate that speaks SQL.
//!
//! It owns the connections to customer_db and product_db and what runs on
//! them. From the bottom up: `conn` (one connection, its prepared-statement
//! cache and pipelined transactions), `pool` (the pools and the checks that
//! keep dead connections from requests, with their counts in `stats`),
//! `replica` (product_db's standby and its watcher) and `routing` (which of
//! product_db's primary and standby a read goes to), the migration runner
//! ([`migrate`], over a connection), and [`db`], the [`Store`] facade that
//! holds them all. Above it, password hashing ([`password`]), exactly-once
//! writes ([`once`]), and one method of [`Store`] per use case, grouped by
//! concept: [`session`] (who is asking: [`SessionId`], log in and out),
//! `account`, [`item`], `cart`, [`search`] and [`purchase`] (the saga and the
//! history). Each returns protocol types or a [`StoreError`] that names its
//! protocol code ([`error`]).
//!
//! It must not keep per-user state in memory (sessions and carts are rows), build
//! SQL from user input (every value is a bound parameter), or assume that both
//! databases live on one server (no statement or transaction spans the two). It
//! is a library: no flags, no logging, no process settings (the `server` crate
//! has those).

mod account;
mod cart;
mod conn;
pub mod db;
pub mod error;
pub mod item;
pub mod migrate;
pub mod once;
pub mod password;
mod pool;
pub mod purchase;
mod replica;
mod routing;
pub mod search;
pub mod session;
pub mod settings;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use db::{DbStats, SettledCounts, Store};
pub use error::StoreError;
pub use item::NewItem;
pub use once::{Keyed, Scope};
pub use replica::{Health, CHECK_EVERY};
pub use session::SessionId;
pub use settings::DbSettings;
