//! Seller use cases. Every one that takes a session renews it first (one
//! statement on customer_db) and takes the seller's identity from it.

use crate::account::Accounts;
use crate::db::{Conn, Store};
use crate::once::run_once_on;
use crate::StoreError;
use postgres::Row;
use uuid::Uuid;
use wire::request::Idempotency;
use wire::response::{Condition, Item, SellerRating};

/// The columns of an item, in the order [`item_at`] reads them.
macro_rules! item_columns {
    () => {
        "i.item_id, i.category, i.item_name, i.keywords, i.condition, i.price_cents, \
         i.quantity, i.thumbs_up, i.thumbs_down, i.seller_id"
    };
}
pub(crate) use item_columns;

/// Reads the item columns of `row` starting at column `at`.
pub(crate) fn item_at(row: &Row, at: usize) -> Result<Item, StoreError> {
    let condition: String = row.try_get(at + 4)?;
    let category: i32 = row.try_get(at + 1)?;
    let cents: i64 = row.try_get(at + 5)?;
    Ok(Item {
        item_id: row.try_get(at)?,
        category: i64::from(category),
        item_name: row.try_get(at + 2)?,
        keywords: row.try_get(at + 3)?,
        condition: Condition::parse(&condition)
            .ok_or_else(|| StoreError::Internal(format!("stored condition {condition:?}")))?,
        sale_price: wire::response::cents_to_price(cents),
        quantity: row.try_get(at + 6)?,
        thumbs_up: row.try_get(at + 7)?,
        thumbs_down: row.try_get(at + 8)?,
        seller_id: row.try_get(at + 9)?,
    })
}

/// A session id as the database stores it; anything that is not a UUID cannot be
/// a live session.
pub(crate) fn session_uuid(session: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(session).map_err(|_| StoreError::SessionExpired)
}

const SELLERS: Accounts = Accounts {
    insert: "INSERT INTO sellers (username, password_hash) VALUES ($1, $2) RETURNING seller_id",
    credentials: "SELECT seller_id, password_hash FROM sellers WHERE username = $1",
    end_session: "DELETE FROM seller_sessions WHERE session_id = $1",
    touch_session: "SELECT touch_seller_session($1, $2)",
    side: "seller",
};

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
        Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
        None => Ok((0, 0)),
    }
}

impl Store {
    /// Registers a seller; the password is stored only as an argon2id hash.
    ///
    /// # Errors
    /// `UsernameTaken`, `Unavailable`.
    pub fn create_seller(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        self.create_account(&SELLERS, username, password, once)
    }

    /// Checks the password and opens a session.
    ///
    /// # Errors
    /// `AuthFailed` for an unknown username or a wrong password alike.
    pub fn login_seller(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<(String, i64), StoreError> {
        let seller_id = self.check_password(&SELLERS, username, password)?;
        let keyed = SELLERS.keyed_by_name(once, username);
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
                let session = Uuid::new_v4();
                c.execute(
                    "INSERT INTO seller_sessions (session_id, seller_id) VALUES ($1, $2)",
                    &[&session, &seller_id],
                )?;
                Ok((session.to_string(), seller_id))
            },
        )
    }

    /// Ends a session; succeeds also for an unknown or ended one.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn logout_seller(
        &self,
        session: &str,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.end_session(&SELLERS, session, once)
    }

    /// Renews the session and returns its seller.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn seller_session(&self, session: &str) -> Result<i64, StoreError> {
        self.touch_session(&SELLERS, session)
    }

    /// The caller's own rating.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn own_seller_rating(&self, session: &str) -> Result<SellerRating, StoreError> {
        let id = session_uuid(session)?;
        let row = self.customer()?.query_one(
            "WITH s AS MATERIALIZED (SELECT touch_seller_session($1, $2) AS seller_id)
             SELECT s.seller_id, sl.items_sold FROM s LEFT JOIN sellers sl USING (seller_id)",
            &[&id, &self.timeout()],
        )?;
        let seller_id: i64 = row
            .try_get::<_, Option<i64>>(0)?
            .ok_or(StoreError::SessionExpired)?;
        let items_sold: i64 = row.try_get::<_, Option<i64>>(1)?.unwrap_or(0);
        let (thumbs_up, thumbs_down) = seller_votes(&mut *self.product()?, seller_id)?;
        Ok(SellerRating {
            seller_id,
            thumbs_up,
            thumbs_down,
            items_sold,
        })
    }

    /// Lists a new item of the caller; returns its id and category.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn register_item(
        &self,
        session: &str,
        item: &NewItem<'_>,
        once: Option<&Idempotency>,
    ) -> Result<(i64, i64), StoreError> {
        let seller_id = self.seller_session(session)?;
        let keyed = SELLERS.keyed(once, seller_id);
        run_once_on(
            || self.product(),
            keyed.as_ref(),
            |c| register(c, seller_id, item),
        )
    }

    /// Sets the price of one of the caller's items; returns the price in cents.
    ///
    /// # Errors
    /// `NotFound` when the item does not exist or is another seller's.
    pub fn change_price(
        &self,
        session: &str,
        item_id: i64,
        cents: i64,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let seller_id = self.seller_session(session)?;
        let keyed = SELLERS.keyed(once, seller_id);
        run_once_on(
            || self.product(),
            keyed.as_ref(),
            |c| {
                let row = c.query_opt(
                    "UPDATE items SET price_cents = $3 WHERE item_id = $1 AND seller_id = $2
                 RETURNING price_cents",
                    &[&item_id, &seller_id, &cents],
                )?;
                match row {
                    Some(row) => Ok(row.try_get(0)?),
                    None => Err(not_yours(item_id)),
                }
            },
        )
    }

    /// Removes `change` units of one of the caller's items (negative adds them
    /// back) in one atomic statement; returns the new count.
    ///
    /// # Errors
    /// `NotFound`; `InsufficientStock` below zero; `Invalid` above 10^9.
    pub fn update_units(
        &self,
        session: &str,
        item_id: i64,
        change: i64,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let seller_id = self.seller_session(session)?;
        let keyed = SELLERS.keyed(once, seller_id);
        run_once_on(
            || self.product(),
            keyed.as_ref(),
            |c| update_units(c, seller_id, item_id, change),
        )
    }

    /// The caller's items with units for sale, by id; with `sold_out`, also
    /// those without (so they can be restocked).
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn seller_items(&self, session: &str, sold_out: bool) -> Result<Vec<Item>, StoreError> {
        let seller_id = self.seller_session(session)?;
        self.product()?
            .query(
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM items i WHERE i.seller_id = $1 AND (i.quantity > 0 OR $2)
                      ORDER BY i.item_id"
                ),
                &[&seller_id, &sold_out],
            )?
            .iter()
            .map(|row| item_at(row, 0))
            .collect()
    }

    /// Deletes expired seller sessions; returns how many.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn sweep_seller_sessions(&self) -> Result<u64, StoreError> {
        self.customer()?.execute(
            "DELETE FROM seller_sessions
              WHERE last_active_at <= now() - make_interval(secs => $1 + session_grace($1))",
            &[&self.timeout()],
        )
    }
}

fn not_yours(item_id: i64) -> StoreError {
    StoreError::NotFound(format!("you have no item {item_id}"))
}

/// Inserts `item` for `seller_id`; returns its id and category.
fn register(c: &mut Conn, seller_id: i64, item: &NewItem<'_>) -> Result<(i64, i64), StoreError> {
    let row = c.query_one(
        // The keyword index rows come from the items_sync_keywords trigger.
        "INSERT INTO items (seller_id, category, item_name, keywords, condition,
                            price_cents, quantity)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING item_id, category",
        &[
            &seller_id,
            &item.category,
            &item.item_name,
            &item.keywords,
            &item.condition.as_str(),
            &item.price_cents,
            &item.quantity,
        ],
    )?;
    let category: i32 = row.try_get(1)?;
    Ok((row.try_get(0)?, i64::from(category)))
}

/// Removes `change` units (negative adds) of `seller_id`'s item in one atomic
/// statement; returns the new count, or says why not.
fn update_units(
    c: &mut Conn,
    seller_id: i64,
    item_id: i64,
    change: i64,
) -> Result<i64, StoreError> {
    let row = c.query_opt(
        "UPDATE items SET quantity = quantity - $3
          WHERE item_id = $1 AND seller_id = $2
            AND quantity - $3 BETWEEN 0 AND 1000000000
         RETURNING quantity",
        &[&item_id, &seller_id, &change],
    )?;
    if let Some(row) = row {
        return Ok(row.try_get(0)?);
    }
    let current = c.query_opt(
        "SELECT quantity FROM items WHERE item_id = $1 AND seller_id = $2",
        &[&item_id, &seller_id],
    )?;
    match current {
        None => Err(not_yours(item_id)),
        Some(row) => {
            let left: i64 = row.try_get(0)?;
            if left - change < 0 {
                Err(StoreError::InsufficientStock(format!(
                    "item {item_id} has only {left} units"
                )))
            } else {
                Err(StoreError::Invalid(format!(
                    "item {item_id} would hold more than 1000000000 units"
                )))
            }
        }
    }
}
