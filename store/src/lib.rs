//! PostgreSQL access for the marketplace: the only crate that speaks SQL.
//!
//! It owns the connection pools of customer_db and product_db ([`db`], with
//! the product_db standby for searches: `replica`), the migration runner
//! ([`migrate`]), password hashing ([`password`]), exactly-once writes
//! ([`once`]), and one method of [`Store`] per use case, grouped by concept:
//! [`session`] (who is asking: [`SessionId`], log in and out), `account`,
//! [`item`], `cart`, [`search`] and [`purchase`] (the saga and the history).
//! Each returns protocol types or a [`StoreError`] that names its protocol
//! code ([`error`]).
//!
//! It must not keep per-user state in memory (sessions and carts are rows), build
//! SQL from user input (every value is a bound parameter), or assume that both
//! databases live on one server (no statement or transaction spans the two). It
//! is a library: no flags, no logging, no process settings (the `server` crate
//! has those).

mod account;
mod cart;
pub mod db;
pub mod error;
pub mod item;
pub mod migrate;
pub mod once;
pub mod password;
pub mod purchase;
mod replica;
pub mod search;
pub mod session;
pub mod settings;

pub use db::{DbStats, SettledCounts, Store};
pub use error::StoreError;
pub use item::NewItem;
pub use once::{Keyed, Scope};
pub use replica::{Health, CHECK_EVERY};
pub use session::SessionId;
pub use settings::DbSettings;
