//! Buyer use cases. Cart statements renew the session in the same statement
//! (customer_db holds both); item reads renew it first, then read product_db.

use crate::account::Accounts;
use crate::db::Store;
use crate::once::{run_once_on, Keyed};
use crate::search::{self, Levels};
use crate::seller::{item_at, item_columns, seller_votes, session_uuid};
use crate::StoreError;
use postgres::Row;
use std::collections::BTreeMap;
use uuid::Uuid;
use wire::request::Idempotency;
use wire::response::{cents_to_price, CartContents, Item, PurchaseRecord, SellerRating};

const BUYERS: Accounts = Accounts {
    insert: "INSERT INTO buyers (username, password_hash) VALUES ($1, $2) RETURNING buyer_id",
    credentials: "SELECT buyer_id, password_hash FROM buyers WHERE username = $1",
    end_session: "DELETE FROM buyer_sessions WHERE session_id = $1",
    touch_session: "SELECT touch_buyer_session($1, $2)",
    side: "buyer",
};

/// Reads `(buyer_id, changed, item_id, quantity)` rows of a cart statement: the
/// session's buyer (NULL when expired), how many cart rows the statement changed,
/// and the resulting cart lines.
fn cart_rows(rows: &[Row]) -> Result<(i64, CartContents), StoreError> {
    let first = rows.first().ok_or(StoreError::SessionExpired)?;
    let _buyer: i64 = first
        .try_get::<_, Option<i64>>(0)?
        .ok_or(StoreError::SessionExpired)?;
    let changed: i64 = first.try_get(1)?;
    let mut cart_items = BTreeMap::new();
    for row in rows {
        if let (Some(item), Some(quantity)) = (
            row.try_get::<_, Option<i64>>(2)?,
            row.try_get::<_, Option<i64>>(3)?,
        ) {
            cart_items.insert(item.to_string(), quantity);
        }
    }
    Ok((changed, CartContents { cart_items }))
}

impl Store {
    /// Registers a buyer; the password is stored only as an argon2id hash.
    ///
    /// # Errors
    /// `UsernameTaken`, `Unavailable`.
    pub fn create_buyer(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        self.create_account(&BUYERS, username, password, once)
    }

    /// The idempotency scope of a keyed request on `session`: its buyer. The
    /// session is checked (and renewed) only for a keyed request.
    fn buyer_keyed<'a>(
        &self,
        session: &str,
        once: Option<&'a Idempotency>,
    ) -> Result<Option<Keyed<'a>>, StoreError> {
        match once {
            Some(_) => Ok(BUYERS.keyed(once, self.buyer_session(session)?)),
            None => Ok(None),
        }
    }

    /// Checks the password and opens a session whose active cart starts as a
    /// copy of the saved cart (one statement).
    ///
    /// # Errors
    /// `AuthFailed` for an unknown username or a wrong password alike.
    pub fn login_buyer(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<(String, i64), StoreError> {
        let buyer_id = self.check_password(&BUYERS, username, password)?;
        let keyed = BUYERS.keyed_by_name(once, username);
        run_once_on(|| self.customer(), keyed.as_ref(), |c| login(c, buyer_id))
    }

    /// Ends a session and discards its active cart; succeeds also for an
    /// unknown or ended one.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn logout_buyer(
        &self,
        session: &str,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.end_session(&BUYERS, session, once)
    }

    /// Renews the session and returns its buyer.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn buyer_session(&self, session: &str) -> Result<i64, StoreError> {
        self.touch_session(&BUYERS, session)
    }

    /// Items of `category` with units left: with no keywords all of them, newest
    /// first; with keywords those sharing at least one, ranked by shared keywords,
    /// then score, then id. Returns one page and the number of all matches.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn search(
        &self,
        session: &str,
        category: i32,
        keywords: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Item>, i64), StoreError> {
        self.buyer_session(session)?;
        // Searches may lag the primary a little: the standby serves them
        // while it keeps up.
        let rows = self.read_product(|product| {
            if keywords.is_empty() {
                return product.query(search::CATEGORY_SQL, &[&category, &limit, &offset]);
            }
            let (sorted, keys) = search::keyword_params(keywords);
            let m = sorted.len();
            let params: [&(dyn postgres::types::ToSql + Sync); 5] =
                [&category, &limit, &offset, &sorted, &keys];
            if m >= search::PROBE_FROM {
                let pairs = search::pair_keys(m, &keys);
                let shared: bool = product
                    .query_one(search::PAIRS_SQL, &[&category, &pairs])?
                    .try_get(0)?;
                if !shared {
                    let one = product.query(search::keyword_statement(m, Levels::One), &params)?;
                    // -1: an item sharing two of them was listed meanwhile.
                    let raced = match one.first() {
                        Some(row) => row.try_get::<_, i64>(0)? < 0,
                        None => false,
                    };
                    if !raced {
                        return Ok(one);
                    }
                }
            }
            product.query(search::keyword_statement(m, Levels::All), &params)
        })?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                items.push(item_at(row, 1)?);
            }
        }
        Ok((items, total))
    }

    /// One item by id (sold-out items too).
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `Unavailable`.
    pub fn get_item(&self, session: &str, item_id: i64) -> Result<Item, StoreError> {
        self.buyer_session(session)?;
        let row = self.read_product_unless(
            |product| {
                product.query_opt(
                    concat!(
                        "SELECT ",
                        item_columns!(),
                        " FROM items i WHERE i.item_id = $1"
                    ),
                    &[&item_id],
                )
            },
            Option::is_none,
        )?;
        match row {
            Some(row) => item_at(&row, 0),
            None => Err(no_item(item_id)),
        }
    }

    /// Adds units to the session's active cart, refusing to hold more than the
    /// item's units available; returns the cart.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `InsufficientStock`, `Unavailable`.
    pub fn add_to_cart(
        &self,
        session: &str,
        item_id: i64,
        quantity: i64,
        once: Option<&Idempotency>,
    ) -> Result<CartContents, StoreError> {
        let id = session_uuid(session)?;
        let available: Option<i64> = self
            .product()?
            .query_opt("SELECT quantity FROM items WHERE item_id = $1", &[&item_id])?
            .map(|row| row.try_get(0))
            .transpose()?;
        let Some(available) = available else {
            // An expired session hears so before it learns anything of items.
            self.buyer_session(session)?;
            return Err(no_item(item_id));
        };
        let keyed = self.buyer_keyed(session, once)?;
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
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
             SELECT s.buyer_id, (SELECT count(*) FROM up), l.item_id, l.quantity
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
                    return Err(StoreError::InsufficientStock(format!(
                        "item {item_id} has only {available} units available"
                    )));
                }
                Ok(cart)
            },
        )
    }

    /// Removes units from the session's active cart (the line goes when none are
    /// left); returns the cart.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound` when the item is not in the cart, `Unavailable`.
    pub fn remove_from_cart(
        &self,
        session: &str,
        item_id: i64,
        quantity: i64,
        once: Option<&Idempotency>,
    ) -> Result<CartContents, StoreError> {
        let id = session_uuid(session)?;
        let keyed = self.buyer_keyed(session, once)?;
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
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
             SELECT s.buyer_id, (SELECT count(*) FROM cut) + (SELECT count(*) FROM gone),
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
            },
        )
    }

    /// The session's active cart.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn display_cart(&self, session: &str) -> Result<CartContents, StoreError> {
        let id = session_uuid(session)?;
        let rows = self.customer()?.query(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id, 0::bigint, c.item_id, c.quantity
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
    pub fn save_cart(&self, session: &str, once: Option<&Idempotency>) -> Result<(), StoreError> {
        let id = session_uuid(session)?;
        let keyed = self.buyer_keyed(session, once)?;
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
                let row = c.query_one("SELECT save_cart($1, $2)", &[&id, &self.timeout()])?;
                row.try_get::<_, Option<i64>>(0)?
                    .map(|_| ())
                    .ok_or(StoreError::SessionExpired)
            },
        )
    }

    /// Empties the session's active cart and the buyer's saved cart.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn clear_cart(&self, session: &str, once: Option<&Idempotency>) -> Result<(), StoreError> {
        let id = session_uuid(session)?;
        let keyed = self.buyer_keyed(session, once)?;
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
                let row = c.query_one(
                    "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id),
             a AS (DELETE FROM active_carts c USING s
                    WHERE s.buyer_id IS NOT NULL AND c.session_id = $1),
             b AS (DELETE FROM saved_carts c USING s WHERE c.buyer_id = s.buyer_id)
             SELECT buyer_id FROM s",
                    &[&id, &self.timeout()],
                )?;
                row.try_get::<_, Option<i64>>(0)?
                    .map(|_| ())
                    .ok_or(StoreError::SessionExpired)
            },
        )
    }

    /// Records the caller's vote on an item (replacing an earlier one) and
    /// returns the item's counts.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `Unavailable`.
    pub fn vote(
        &self,
        session: &str,
        item_id: i64,
        up: bool,
        once: Option<&Idempotency>,
    ) -> Result<(i64, i64), StoreError> {
        let buyer_id = self.buyer_session(session)?;
        let keyed = BUYERS.keyed(once, buyer_id);
        run_once_on(
            || self.product(),
            keyed.as_ref(),
            |c| {
                let row = c.query_opt(
                    "SELECT up_votes, down_votes FROM cast_vote($1, $2, $3)",
                    &[&item_id, &buyer_id, &up],
                )?;
                match row {
                    Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
                    None => Err(no_item(item_id)),
                }
            },
        )
    }

    /// Any seller's rating.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound` for an unknown seller, `Unavailable`.
    pub fn seller_rating(&self, session: &str, seller_id: i64) -> Result<SellerRating, StoreError> {
        let id = session_uuid(session)?;
        let row = self.customer()?.query_one(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id, sl.items_sold
               FROM s LEFT JOIN sellers sl ON s.buyer_id IS NOT NULL AND sl.seller_id = $3",
            &[&id, &self.timeout(), &seller_id],
        )?;
        row.try_get::<_, Option<i64>>(0)?
            .ok_or(StoreError::SessionExpired)?;
        let items_sold: i64 = row
            .try_get::<_, Option<i64>>(1)?
            .ok_or_else(|| StoreError::NotFound(format!("there is no seller {seller_id}")))?;
        let (thumbs_up, thumbs_down) = seller_votes(&mut *self.product()?, seller_id)?;
        Ok(SellerRating {
            seller_id,
            thumbs_up,
            thumbs_down,
            items_sold,
        })
    }

    /// The caller's purchases, newest first, one record per line.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn purchases(&self, session: &str) -> Result<Vec<PurchaseRecord>, StoreError> {
        let id = session_uuid(session)?;
        let rows = self.customer()?.query(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id, p.purchase_id, l.item_id, l.quantity, l.unit_price_cents,
                    l.item_name,
                    to_char(p.purchased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM s
               LEFT JOIN purchases p ON p.buyer_id = s.buyer_id AND p.state = 'done'
               LEFT JOIN purchase_lines l ON l.purchase_id = p.purchase_id
              ORDER BY p.purchase_id DESC, l.item_id",
            &[&id, &self.timeout()],
        )?;
        let first = rows.first().ok_or(StoreError::SessionExpired)?;
        first
            .try_get::<_, Option<i64>>(0)?
            .ok_or(StoreError::SessionExpired)?;
        let mut out = Vec::new();
        for row in &rows {
            let (Some(purchase_id), Some(item_id)) = (
                row.try_get::<_, Option<i64>>(1)?,
                row.try_get::<_, Option<i64>>(2)?,
            ) else {
                continue;
            };
            let cents: i64 = row.try_get(4)?;
            out.push(PurchaseRecord {
                purchase_id,
                item_id,
                item_name: row.try_get(5)?,
                quantity: row.try_get(3)?,
                unit_price: cents_to_price(cents),
                purchased_at: row.try_get(6)?,
            });
        }
        Ok(out)
    }

    /// Deletes expired buyer sessions (and their carts); returns how many.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn sweep_buyer_sessions(&self) -> Result<u64, StoreError> {
        self.customer()?.execute(
            "DELETE FROM buyer_sessions
              WHERE last_active_at <= now() - make_interval(secs => $1 + session_grace($1))",
            &[&self.timeout()],
        )
    }
}

fn no_item(item_id: i64) -> StoreError {
    StoreError::NotFound(format!("there is no item {item_id}"))
}

/// Opens a session for `buyer_id` whose active cart starts as a copy of the
/// saved cart (one statement); returns the session id and the buyer.
fn login(c: &mut crate::db::Conn, buyer_id: i64) -> Result<(String, i64), StoreError> {
    let session = Uuid::new_v4();
    c.execute(
        "WITH s AS (
             INSERT INTO buyer_sessions (session_id, buyer_id) VALUES ($1, $2)
             RETURNING session_id
         )
         INSERT INTO active_carts (session_id, item_id, quantity)
         SELECT s.session_id, c.item_id, c.quantity
           FROM s, saved_carts c WHERE c.buyer_id = $2",
        &[&session, &buyer_id],
    )?;
    Ok((session.to_string(), buyer_id))
}
