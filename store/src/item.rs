//! Items: a seller lists, prices and counts them; anyone reads them; buyers
//! vote on them, and a seller's rating is the sum of the votes on their items.
//! Every use case renews the caller's session first (customer_db), then works
//! on product_db.

use crate::account::{Accounts, BUYERS, SELLERS};
use crate::conn::Conn;
use crate::db::Store;
use crate::once::{one_statement, run_once_on, run_statement_once_on, OneStatement};
use crate::session::{session_account, SessionId};
use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::Row;
use wire::request::Idempotency;
use wire::response::{Condition, Item, SellerRating};

/// The columns of an item, by the names [`read_item`] reads them by.
macro_rules! item_columns {
    () => {
        "i.item_id, i.category, i.item_name, i.keywords, i.condition, i.price_cents, \
         i.quantity, i.thumbs_up, i.thumbs_down, i.seller_id"
    };
}
pub(crate) use item_columns;

/// Reads the [`item_columns`] of `row`.
pub(crate) fn read_item(row: &Row) -> Result<Item, StoreError> {
    let condition: String = row.try_get("condition")?;
    let category: i32 = row.try_get("category")?;
    let cents: i64 = row.try_get("price_cents")?;
    Ok(Item {
        item_id: row.try_get("item_id")?,
        category: i64::from(category),
        item_name: row.try_get("item_name")?,
        keywords: row.try_get("keywords")?,
        condition: Condition::parse(&condition)
            .ok_or_else(|| StoreError::Internal(format!("stored condition {condition:?}")))?,
        sale_price: wire::response::cents_to_price(cents),
        quantity: row.try_get("quantity")?,
        thumbs_up: row.try_get("thumbs_up")?,
        thumbs_down: row.try_get("thumbs_down")?,
        seller_id: row.try_get("seller_id")?,
    })
}

/// A new item as validated by the server.
#[derive(Debug, Clone)]
pub struct NewItem<'a> {
    pub item_name: &'a str,
    pub category: i32,
    /// Lower-cased, without duplicates.
    pub keywords: &'a [String],
    pub condition: Condition,
    pub price_cents: i64,
    pub quantity: i64,
}

/// The vote totals of a seller's items (0/0 for a seller without votes).
pub(crate) fn seller_votes(product: &mut Conn, seller_id: i64) -> Result<(i64, i64), StoreError> {
    let row = product.query_opt(
        "SELECT thumbs_up, thumbs_down FROM seller_ratings WHERE seller_id = $1",
        &[&seller_id],
    )?;
    match row {
        Some(row) => Ok((row.try_get("thumbs_up")?, row.try_get("thumbs_down")?)),
        None => Ok((0, 0)),
    }
}

impl Store {
    /// Lists a new item of the caller; returns its id and category.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn register_item(
        &self,
        session: SessionId,
        item: &NewItem<'_>,
        once: Option<&Idempotency>,
    ) -> Result<(i64, i64), StoreError> {
        let seller_id = self.touch_session(&SELLERS, session)?;
        run_statement_once_on(
            || self.product(),
            SELLERS.keyed(once, seller_id).as_ref(),
            &REGISTER,
            &[
                &seller_id,
                &item.category,
                &item.item_name,
                &item.keywords,
                &item.condition.as_str(),
                &item.price_cents,
                &item.quantity,
            ],
            |row| {
                let category: i32 = row.try_get("category")?;
                Ok((row.try_get("item_id")?, i64::from(category)))
            },
            |_| StoreError::Internal("an INSERT returned no row".into()),
        )
    }

    /// Sets the price of one of the caller's items; returns the price in cents.
    ///
    /// # Errors
    /// `NotFound` when the item does not exist or is another seller's.
    pub fn change_price(
        &self,
        session: SessionId,
        item_id: i64,
        cents: i64,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let seller_id = self.touch_session(&SELLERS, session)?;
        run_statement_once_on(
            || self.product(),
            SELLERS.keyed(once, seller_id).as_ref(),
            &CHANGE_PRICE,
            &[&item_id, &seller_id, &cents],
            |row| Ok(row.try_get("price_cents")?),
            |_| not_yours(item_id),
        )
    }

    /// Removes `change` units of one of the caller's items (negative adds them
    /// back) in one atomic statement; returns the new count.
    ///
    /// # Errors
    /// `NotFound`; `InsufficientStock` below zero; `Invalid` above 10^9.
    pub fn update_units(
        &self,
        session: SessionId,
        item_id: i64,
        change: i64,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let seller_id = self.touch_session(&SELLERS, session)?;
        run_statement_once_on(
            || self.product(),
            SELLERS.keyed(once, seller_id).as_ref(),
            &UPDATE_UNITS,
            &[&item_id, &seller_id, &change],
            |row| Ok(row.try_get("quantity")?),
            |c| why_units_unchanged(c, seller_id, item_id, change),
        )
    }

    /// The caller's items with units for sale, by id; with `sold_out`, also
    /// those without (so they can be restocked).
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn seller_items(
        &self,
        session: SessionId,
        sold_out: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let seller_id = self.seller_session(session)?;
        let sql = if sold_out {
            SELLER_ITEMS_SQL
        } else {
            SELLER_ON_SALE_SQL
        };
        self.product()?
            .query(sql, &[&seller_id])?
            .iter()
            .map(read_item)
            .collect()
    }

    /// One item by id (sold-out items too).
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `Unavailable`.
    pub fn get_item(&self, session: SessionId, item_id: i64) -> Result<Item, StoreError> {
        let read = || {
            self.read_product_unless(
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
            )
        };
        let row = self.buyer_session_while(session, read)?;
        match row {
            Some(row) => read_item(&row),
            None => Err(no_item(item_id)),
        }
    }

    /// The caller's own rating.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn own_seller_rating(&self, session: SessionId) -> Result<SellerRating, StoreError> {
        let id = session.0;
        let row = self.customer()?.query_one(
            "WITH s AS MATERIALIZED (SELECT touch_seller_session($1, $2) AS seller_id)
             SELECT s.seller_id AS account_id, sl.items_sold
               FROM s LEFT JOIN sellers sl USING (seller_id)",
            &[&id, &self.timeout()],
        )?;
        let seller_id = session_account(&row)?;
        let items_sold: i64 = row.try_get::<_, Option<i64>>("items_sold")?.unwrap_or(0);
        let (thumbs_up, thumbs_down) = seller_votes(&mut *self.product()?, seller_id)?;
        Ok(SellerRating {
            seller_id,
            thumbs_up,
            thumbs_down,
            items_sold,
        })
    }

    /// Any seller's rating.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound` for an unknown seller, `Unavailable`.
    pub fn seller_rating(
        &self,
        session: SessionId,
        seller_id: i64,
    ) -> Result<SellerRating, StoreError> {
        let id = session.0;
        // The seller's votes are read on product_db while the session check
        // (and the seller's sales) is on its way from customer_db.
        let (row, votes) = self.customer()?.query_one_while(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id AS account_id, sl.items_sold
               FROM s LEFT JOIN sellers sl ON s.buyer_id IS NOT NULL AND sl.seller_id = $3",
            &[&id, &self.timeout(), &seller_id],
            || seller_votes(&mut *self.product()?, seller_id),
        );
        let row = row?;
        session_account(&row)?;
        let items_sold: i64 = row
            .try_get::<_, Option<i64>>("items_sold")?
            .ok_or_else(|| StoreError::NotFound(format!("there is no seller {seller_id}")))?;
        let (thumbs_up, thumbs_down) = votes?;
        Ok(SellerRating {
            seller_id,
            thumbs_up,
            thumbs_down,
            items_sold,
        })
    }

    /// Records the caller's vote on an item (replacing an earlier one) and
    /// returns the item's counts.
    ///
    /// # Errors
    /// `SessionExpired`, `NotFound`, `Unavailable`.
    pub fn vote(
        &self,
        session: SessionId,
        item_id: i64,
        up: bool,
        once: Option<&Idempotency>,
    ) -> Result<(i64, i64), StoreError> {
        // The buyer may have found the item on the standby (see
        // Store::read_primary_settled).
        let cast = || {
            self.item_write(&BUYERS, session, once, |c, buyer_id| {
                let row = c.query_opt(
                    "SELECT up_votes, down_votes FROM cast_vote($1, $2, $3)",
                    &[&item_id, &buyer_id, &up],
                )?;
                match row {
                    Some(row) => Ok((row.try_get("up_votes")?, row.try_get("down_votes")?)),
                    None => Err(no_item(item_id)),
                }
            })
        };
        self.settled(cast, |r| matches!(r, Err(StoreError::NotFound(_))))
    }

    /// Runs `effect` on product_db with the account of `session` (renewed
    /// first, on customer_db), once per idempotency key in a transaction: a
    /// vote. (The seller's item writes are [`OneStatement`]s.)
    fn item_write<T: Serialize + DeserializeOwned>(
        &self,
        side: &Accounts,
        session: SessionId,
        once: Option<&Idempotency>,
        effect: impl FnOnce(&mut Conn, i64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let account = self.touch_session(side, session)?;
        let keyed = side.keyed(once, account);
        run_once_on(|| self.product(), keyed.as_ref(), |c| effect(c, account))
    }
}

/// A seller's items with units for sale: from the partial index
/// `items_seller_available` (sql/product/0007), however many sold-out items
/// the seller has listed over time.
pub const SELLER_ON_SALE_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items i WHERE i.seller_id = $1 AND i.quantity > 0 ORDER BY i.item_id"
);

/// All of a seller's items, sold-out ones too.
pub const SELLER_ITEMS_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items i WHERE i.seller_id = $1 ORDER BY i.item_id"
);

fn not_yours(item_id: i64) -> StoreError {
    StoreError::NotFound(format!("you have no item {item_id}"))
}

pub(crate) fn no_item(item_id: i64) -> StoreError {
    StoreError::NotFound(format!("there is no item {item_id}"))
}

/// Lists an item (its rows of the search index come from the
/// `items_sync_search` trigger); returns its id and category, recorded as
/// `[id, category]`.
const REGISTER: OneStatement = one_statement!(
    "INSERT INTO items (seller_id, category, item_name, keywords, condition, price_cents, quantity)
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
    returning "item_id, category",
    response "json_build_array(item_id, category)::text",
    key "$8, $9, $10, $11"
);

/// Sets the price of `$2`'s item `$1` to `$3` cents; returns it.
const CHANGE_PRICE: OneStatement = one_statement!(
    "UPDATE items SET price_cents = $3 WHERE item_id = $1 AND seller_id = $2",
    returning "price_cents",
    response "price_cents::text",
    key "$4, $5, $6, $7"
);

/// Removes `$3` units (negative adds) of `$2`'s item `$1` in one atomic
/// statement, unless that leaves fewer than 0 or more than 10^9; returns the
/// new count.
const UPDATE_UNITS: OneStatement = one_statement!(
    "UPDATE items SET quantity = quantity - $3
      WHERE item_id = $1 AND seller_id = $2
        AND quantity - $3 BETWEEN 0 AND 1000000000",
    returning "quantity",
    response "quantity::text",
    key "$4, $5, $6, $7"
);

/// Why [`UPDATE_UNITS`] changed nothing.
fn why_units_unchanged(c: &mut Conn, seller_id: i64, item_id: i64, change: i64) -> StoreError {
    let current = c.query_opt(
        "SELECT quantity FROM items WHERE item_id = $1 AND seller_id = $2",
        &[&item_id, &seller_id],
    );
    match current {
        Err(e) => e,
        Ok(None) => not_yours(item_id),
        Ok(Some(row)) => match row.try_get::<_, i64>("quantity") {
            Err(e) => e.into(),
            Ok(left) if left - change < 0 => {
                StoreError::InsufficientStock(crate::error::units_left(item_id, left))
            }
            Ok(_) => StoreError::Invalid(format!(
                "item {item_id} would hold more than 1000000000 units"
            )),
        },
    }
}
