//! For the store's own tests only (the `testing` feature, which nothing but
//! store's dev-dependency on itself turns on): a pooled connection of a
//! [`Store`], on which a test runs its own SQL to set up or inspect the
//! database. The servers never get one: every statement they run is a use
//! case's.

use crate::db::{Pooled, Store};
use crate::StoreError;

/// A customer_db connection of `store`'s pool.
///
/// # Errors
/// `Unavailable` when none can be had within the connect timeout.
pub fn customer(store: &Store) -> Result<Pooled, StoreError> {
    store.customer()
}

/// A product_db connection (to the primary) of `store`'s pool.
///
/// # Errors
/// `Unavailable` when none can be had within the connect timeout.
pub fn product(store: &Store) -> Result<Pooled, StoreError> {
    store.product()
}
