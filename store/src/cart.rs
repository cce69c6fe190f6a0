//! The active cart of a session and the saved cart of a buyer, both on
//! customer_db. AddItemToCart first reads the item's units on product_db (no
//! statement spans the two); every cart statement renews the session in the
//! same statement.

use crate::conn::Conn;
use crate::db::Store;
use crate::item::no_item;
use crate::once::{run_once_on, Keyed, Scope};
use crate::session::{session_account, SessionId};
use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Row;
use wire::request::Idempotency;
use wire::response::CartContents;

/// Reads the `(account_id, changed, item_id, quantity)` rows of a cart
/// statement: the session's buyer (NULL when expired), how many cart rows the
/// statement changed, and the resulting cart lines.
fn cart_rows(rows: &[Row]) -> Result<(i64, CartContents), StoreError> {
    let first = rows.first().ok_or(StoreError::SessionExpired)?;
    session_account(first)?;
    let changed: i64 = first.try_get("changed")?;
    let mut cart_items = BTreeMap::new();
    for row in rows {
        if let (Some(item), Some(quantity)) = (
            row.try_get::<_, Option<i64>>("item_id")?,
            row.try_get::<_, Option<i64>>("quantity")?,
        ) {
            cart_items.insert(item.to_string(), quantity);
        }
    }
    Ok((changed, CartContents { cart_items }))
}

impl Store {
    /// Adds units to the session's active cart, refusing to hold more than the
    /// item's units available; returns the cart.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `InsufficientStock`, `Unavailable`.
    pub fn add_to_cart(
        &self,
        session: SessionId,
        item_id: i64,
        quantity: i64,
        once: Option<&Idempotency>,
    ) -> Result<CartContents, StoreError> {
        let id = session.0;
        // The buyer may have found the item on the standby (see
        // read_primary_settled).
        let available: Option<i64> = self
            .read_primary_settled(
                |product| {
                    product.query_opt("SELECT quantity FROM items WHERE item_id = $1", &[&item_id])
                },
                Option::is_none,
            )?
            .map(|row| row.try_get("quantity"))
            .transpose()?;
        let Some(available) = available else {
            // An expired session hears so before it learns anything of items.
            self.buyer_session(session)?;
            return Err(no_item(item_id));
        };
        self.cart_write(session, once, |c| {
            let rows = c.query(
                "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id),
             up AS (
                 INSERT INTO active_carts AS c (session_id, item_id, quantity)
                 SELECT $1, $3::bigint, $4::bigint FROM s
                  WHERE s.buyer_id IS NOT NULL AND $4::bigint <= $5::bigint
                 ON CONFLICT (session_id, item_id) DO UPDATE
                    SET quantity = c.quantity + EXCLUDED.quantity
                  WHERE c.quantity + EXCLUDED.quantity <= $5::bigint
                 RETURNING c.item_id, c.quantity
             )
             SELECT s.buyer_id AS account_id, (SELECT count(*) FROM up) AS changed,
                    l.item_id, l.quantity
               FROM s LEFT JOIN (
                   SELECT item_id, quantity FROM active_carts
                    WHERE session_id = $1 AND item_id <> $3
                   UNION ALL SELECT item_id, quantity FROM up
               ) l ON s.buyer_id IS NOT NULL",
                &[&id, &self.timeout(), &item_id, &quantity, &available],
            );
            // The session checked out live but ended before its cart row went in.
            let rows = match rows {
                Err(StoreError::Orphan(_)) => return Err(StoreError::SessionExpired),
                other => other?,
            };
            let (changed, cart) = cart_rows(&rows)?;
            if changed == 0 {
                return Err(StoreError::InsufficientStock(crate::error::units_left(
                    item_id, available,
                )));
            }
            Ok(cart)
        })
    }

    /// Removes units from the session's active cart (the line goes when none are
    /// left); returns the cart.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound` when the item is not in the cart, `Unavailable`.
    pub fn remove_from_cart(
        &self,
        session: SessionId,
        item_id: i64,
        quantity: i64,
        once: Option<&Idempotency>,
    ) -> Result<CartContents, StoreError> {
        let id = session.0;
        self.cart_write(session, once, |c| {
            let rows = c.query(
                "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id),
             cut AS (
                 UPDATE active_carts c SET quantity = c.quantity - $4 FROM s
                  WHERE s.buyer_id IS NOT NULL AND c.session_id = $1 AND c.item_id = $3
                    AND c.quantity > $4
                 RETURNING c.item_id, c.quantity
             ),
             gone AS (
                 DELETE FROM active_carts c USING s
                  WHERE s.buyer_id IS NOT NULL AND c.session_id = $1 AND c.item_id = $3
                    AND c.quantity <= $4
                 RETURNING c.item_id
             )
             SELECT s.buyer_id AS account_id,
                    (SELECT count(*) FROM cut) + (SELECT count(*) FROM gone) AS changed,
                    l.item_id, l.quantity
               FROM s LEFT JOIN (
                   SELECT item_id, quantity FROM active_carts
                    WHERE session_id = $1 AND item_id <> $3
                   UNION ALL SELECT item_id, quantity FROM cut
               ) l ON s.buyer_id IS NOT NULL",
                &[&id, &self.timeout(), &item_id, &quantity],
            )?;
            let (changed, cart) = cart_rows(&rows)?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!(
                    "item {item_id} is not in your cart"
                )));
            }
            Ok(cart)
        })
    }

    /// The session's active cart.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn display_cart(&self, session: SessionId) -> Result<CartContents, StoreError> {
        let id = session.0;
        let rows = self.customer()?.query(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id AS account_id, 0::bigint AS changed, c.item_id, c.quantity
               FROM s LEFT JOIN active_carts c
                 ON s.buyer_id IS NOT NULL AND c.session_id = $1",
            &[&id, &self.timeout()],
        )?;
        Ok(cart_rows(&rows)?.1)
    }

    /// Overwrites the buyer's saved cart with the session's active cart.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn save_cart(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.whole_cart_write(session, once, "SELECT save_cart($1, $2) AS account_id")
    }

    /// Empties the session's active cart and the buyer's saved cart.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn clear_cart(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.whole_cart_write(
            session,
            once,
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id),
             a AS (DELETE FROM active_carts c USING s
                    WHERE s.buyer_id IS NOT NULL AND c.session_id = $1),
             b AS (DELETE FROM saved_carts c USING s WHERE c.buyer_id = s.buyer_id)
             SELECT buyer_id AS account_id FROM s",
        )
    }

    /// Runs `sql` once per idempotency key: a statement on the session's
    /// carts that takes the session and the timeout, renews the session and
    /// returns its buyer as `account_id` (NULL when it has expired).
    fn whole_cart_write(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
        sql: &'static str,
    ) -> Result<(), StoreError> {
        self.cart_write(session, once, |c| {
            let row = c.query_one(sql, &[&session.0, &self.timeout()])?;
            session_account(&row).map(|_| ())
        })
    }

    /// Runs `effect` on customer_db once per idempotency key, whose scope is
    /// the session's buyer, looked up by the key's own statements: every
    /// cart statement renews the session itself, so a cart write costs no
    /// round trip to learn its buyer.
    fn cart_write<T: Serialize + DeserializeOwned>(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
        effect: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let keyed = once.map(|once| Keyed {
            once,
            scope: Scope::BuyerOfSession(session.0),
        });
        run_once_on(|| self.customer(), keyed.as_ref(), effect)
    }
}
