//! MakePurchase across the two databases, as a saga of idempotent steps (see
//! sql/customer/0003_purchases.sql and sql/product/0003_purchases.sql):
//! begin (customer_db: a pending purchase of the cart), take stock (product_db:
//! all lines or none, decided once), finish (customer_db: lines, totals,
//! counters, empty carts). [`Store::recover_purchases`] settles any purchase a
//! crash left pending: it fences it in product_db, then finishes or abandons it.

use crate::db::Store;
use crate::pool::Pooled;
use crate::session::{session_account, SessionId};
use crate::StoreError;
use std::time::Duration;
use tokio_postgres::Row;
use wire::request::Idempotency;
use wire::response::{cents_to_price, PurchaseLine, PurchaseReceipt, PurchaseRecord};

/// A purchase begun: its id and the cart it buys (items ascending).
#[derive(Debug, Clone)]
pub struct Begun {
    pub purchase_id: i64,
    pub items: Vec<i64>,
    pub quantities: Vec<i64>,
    /// Begun earlier by an attempt with the same idempotency key, and already
    /// finished: its receipt stands.
    pub done: bool,
}

/// One line as product_db took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub item_id: i64,
    pub seller_id: i64,
    pub quantity: i64,
    pub price_cents: i64,
    /// The item's name when it was taken.
    pub item_name: String,
}

/// What product_db decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taking {
    Taken(Vec<Taken>),
    Short {
        item_id: i64,
        available: i64,
    },
    Missing {
        item_id: i64,
    },
    /// Decided against before (by recovery): nothing was taken.
    Fenced,
}

/// Reads a taken line: `item_id`, `seller_id`, `quantity`,
/// `unit_price_cents`, `item_name`.
fn read_taken(row: &Row) -> Result<Taken, StoreError> {
    Ok(Taken {
        item_id: row.try_get("item_id")?,
        seller_id: row.try_get("seller_id")?,
        quantity: row.try_get("quantity")?,
        price_cents: row.try_get("unit_price_cents")?,
        item_name: row.try_get("item_name")?,
    })
}

fn in_doubt(e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(detail)
        | StoreError::ReadOnly(detail)
        | StoreError::Internal(detail)
        | StoreError::Refused { detail, .. } => StoreError::InDoubt(detail),
        other => other,
    }
}

/// What one pass of [`Store::recover_purchases`] settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Finished: their stock had been taken.
    pub completed: u64,
    /// Abandoned: no stock was taken, nothing is charged.
    pub abandoned: u64,
}

impl Recovered {
    /// Both.
    pub fn total(&self) -> u64 {
        self.completed + self.abandoned
    }
}

impl Store {
    /// Buys the session's whole active cart at current prices, atomically.
    ///
    /// # Errors
    /// `SessionExpired`, `CartEmpty`, `InsufficientStock` or `NotFound` (nothing
    /// changed), `Unavailable` before anything was decided, `InDoubt` when a
    /// database failed after the purchase began (recovery settles it).
    ///
    /// With an idempotency key, a resend finds the purchase the first attempt
    /// began: a finished one returns its receipt again, a pending one is carried
    /// on to its end (each step is idempotent), so stock is taken once.
    pub fn make_purchase(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<PurchaseReceipt, StoreError> {
        let begun = self.begin_purchase(session, once.map(|o| o.key.as_str()))?;
        if begun.done {
            // A resend: its receipt stands only once the purchase is known
            // to outlive this server (see `Conn::durable`).
            let mut conn = self.customer()?;
            let receipt = receipt(&mut conn, begun.purchase_id)?;
            conn.durable(crate::once::REPLAY_WAIT)
                .map_err(|e| match e {
                    StoreError::Unavailable(detail) => StoreError::CommitUnknown(detail),
                    e => e,
                })?;
            return Ok(receipt);
        }
        let taking = match self.take_stock(&begun) {
            // Another attempt with the same key decided at the same moment:
            // asking again reads its decision.
            Err(StoreError::Conflict(_)) => self.take_stock(&begun),
            other => other,
        }
        .map_err(in_doubt)?;
        let taken = match taking {
            Taking::Taken(lines) => lines,
            Taking::Short { item_id, available } => {
                self.abandon_purchase(begun.purchase_id).map_err(in_doubt)?;
                return Err(StoreError::InsufficientStock(format!(
                    "{}; nothing was bought",
                    crate::error::units_left(item_id, available)
                )));
            }
            Taking::Missing { item_id } => {
                self.abandon_purchase(begun.purchase_id).map_err(in_doubt)?;
                return Err(StoreError::NotFound(format!(
                    "item {item_id} no longer exists; nothing was bought"
                )));
            }
            Taking::Fenced => {
                self.abandon_purchase(begun.purchase_id).map_err(in_doubt)?;
                return Err(StoreError::Unavailable(
                    "the purchase was cancelled by recovery".into(),
                ));
            }
        };
        let total = self
            .finish_purchase(begun.purchase_id, &taken)
            .map_err(in_doubt)?;
        Ok(PurchaseReceipt {
            purchase_id: begun.purchase_id,
            total: cents_to_price(total),
            lines: taken
                .iter()
                .map(|t| PurchaseLine {
                    item_id: t.item_id,
                    item_name: t.item_name.clone(),
                    quantity: t.quantity,
                    unit_price: cents_to_price(t.price_cents),
                })
                .collect(),
        })
    }

    /// Step 1: checks the session and records a pending purchase of its cart;
    /// with `key`, finds the purchase this buyer already began with it.
    ///
    /// # Errors
    /// `SessionExpired`, `CartEmpty`, `Invalid` for a key used by another
    /// operation, `Unavailable`.
    pub fn begin_purchase(
        &self,
        session: SessionId,
        key: Option<&str>,
    ) -> Result<Begun, StoreError> {
        let id = session.0;
        let row = self.customer()?.query_one(
            "SELECT purchase_id, buyer_id, items, quantities, state
               FROM begin_purchase($1, $2, $3)",
            &[&id, &self.timeout(), &key],
        )?;
        row.try_get::<_, Option<i64>>("buyer_id")?
            .ok_or(StoreError::SessionExpired)?;
        let state: Option<String> = row.try_get("state")?;
        if state.as_deref() == Some("reused") {
            return Err(StoreError::Invalid(format!(
                "idempotency_key {:?} was already used for a different request; \
                 use a fresh key for each request",
                key.unwrap_or_default()
            )));
        }
        let purchase_id: i64 = row
            .try_get::<_, Option<i64>>("purchase_id")?
            .ok_or(StoreError::CartEmpty)?;
        Ok(Begun {
            purchase_id,
            items: row.try_get("items")?,
            quantities: row.try_get("quantities")?,
            done: state.as_deref() == Some("done"),
        })
    }
}

/// The receipt of a finished purchase, as its first answer gave it.
///
/// # Errors
/// `Unavailable`; `Internal` if the purchase is not finished.
fn receipt(conn: &mut Pooled, purchase_id: i64) -> Result<PurchaseReceipt, StoreError> {
    let rows = conn.query(
        "SELECT p.total_cents, l.item_id, l.quantity, l.unit_price_cents, l.item_name
               FROM purchases p JOIN purchase_lines l USING (purchase_id)
              WHERE p.purchase_id = $1 AND p.state = 'done'
              ORDER BY l.item_id",
        &[&purchase_id],
    )?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::Internal(format!("purchase {purchase_id} has no lines")))?;
    let total: i64 = first.try_get("total_cents")?;
    let lines = rows
        .iter()
        .map(|r| {
            let cents: i64 = r.try_get("unit_price_cents")?;
            Ok(PurchaseLine {
                item_id: r.try_get("item_id")?,
                item_name: r.try_get("item_name")?,
                quantity: r.try_get("quantity")?,
                unit_price: cents_to_price(cents),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(PurchaseReceipt {
        purchase_id,
        total: cents_to_price(total),
        lines,
    })
}

impl Store {
    /// Step 2: takes the stock of every line or of none; repeating it returns
    /// the same decision.
    ///
    /// # Errors
    /// `Unavailable`, or `Conflict` when recovery decided at the same moment
    /// (asking again returns its decision).
    pub fn take_stock(&self, begun: &Begun) -> Result<Taking, StoreError> {
        let rows = self.product()?.query(
            "SELECT outcome, item_id, seller_id, quantity, unit_price_cents, item_name
               FROM take_stock($1, $2, $3)",
            &[&begun.purchase_id, &begun.items, &begun.quantities],
        )?;
        let first = rows
            .first()
            .ok_or_else(|| StoreError::Internal("take_stock returned nothing".into()))?;
        let outcome: String = first.try_get("outcome")?;
        Ok(match outcome.as_str() {
            "taken" => Taking::Taken(rows.iter().map(read_taken).collect::<Result<_, _>>()?),
            // A short line's `quantity` is the units the item has left.
            "short" => Taking::Short {
                item_id: first.try_get("item_id")?,
                available: first.try_get("quantity")?,
            },
            "missing" => Taking::Missing {
                item_id: first.try_get("item_id")?,
            },
            "fenced" => Taking::Fenced,
            other => return Err(StoreError::Internal(format!("take_stock said {other:?}"))),
        })
    }

    /// Step 3: records the lines and total, counts items sold and purchased,
    /// empties the session's active cart and the buyer's saved cart. Returns the
    /// total in cents; finishing twice changes nothing.
    ///
    /// # Errors
    /// `Unavailable`; `Internal` if the purchase vanished.
    pub fn finish_purchase(&self, purchase_id: i64, taken: &[Taken]) -> Result<i64, StoreError> {
        let column = |f: fn(&Taken) -> i64| taken.iter().map(f).collect::<Vec<i64>>();
        let row = self.customer()?.query_one(
            "SELECT finish_purchase($1, $2, $3, $4, $5, $6) AS total_cents",
            &[
                &purchase_id,
                &column(|t| t.item_id),
                &column(|t| t.quantity),
                &column(|t| t.seller_id),
                &column(|t| t.price_cents),
                &taken
                    .iter()
                    .map(|t| t.item_name.as_str())
                    .collect::<Vec<&str>>(),
            ],
        )?;
        row.try_get::<_, Option<i64>>("total_cents")?
            .ok_or_else(|| {
                StoreError::Internal(format!(
                    "purchase {purchase_id} vanished before it finished"
                ))
            })
    }

    fn abandon_purchase(&self, purchase_id: i64) -> Result<(), StoreError> {
        self.customer()?.execute(
            "DELETE FROM purchases WHERE purchase_id = $1 AND state = 'pending'",
            &[&purchase_id],
        )?;
        Ok(())
    }

    /// Settles purchases pending for longer than `older_than` (a crash or a
    /// database failure interrupted them): each is fenced in product_db, then
    /// finished if its stock was taken, abandoned otherwise. Returns how many
    /// of each.
    ///
    /// # Errors
    /// `Unavailable` (the next pass tries again).
    pub fn recover_purchases(&self, older_than: Duration) -> Result<Recovered, StoreError> {
        let pending: Vec<i64> = self
            .customer()?
            .query(
                "SELECT purchase_id FROM purchases
                  WHERE state = 'pending' AND purchased_at <= now() - make_interval(secs => $1)
                  ORDER BY purchase_id LIMIT 1000",
                &[&older_than.as_secs_f64()],
            )?
            .iter()
            .map(|r| r.try_get("purchase_id"))
            .collect::<Result<_, _>>()?;
        let mut recovered = Recovered::default();
        for &purchase_id in &pending {
            let taken: bool = self
                .product()?
                .query_one("SELECT fence_purchase($1) AS taken", &[&purchase_id])?
                .try_get("taken")?;
            if taken {
                let lines: Vec<Taken> = self
                    .product()?
                    .query(
                        "SELECT item_id, seller_id, quantity, unit_price_cents, item_name
                           FROM purchase_takings WHERE purchase_id = $1 ORDER BY item_id",
                        &[&purchase_id],
                    )?
                    .iter()
                    .map(read_taken)
                    .collect::<Result<_, _>>()?;
                self.finish_purchase(purchase_id, &lines)?;
                recovered.completed += 1;
            } else {
                self.abandon_purchase(purchase_id)?;
                recovered.abandoned += 1;
            }
        }
        Ok(recovered)
    }
}

impl Store {
    /// The caller's purchases, newest first, one record per line.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn purchases(&self, session: SessionId) -> Result<Vec<PurchaseRecord>, StoreError> {
        let id = session.0;
        let rows = self.customer()?.query(
            "WITH s AS MATERIALIZED (SELECT touch_buyer_session($1, $2) AS buyer_id)
             SELECT s.buyer_id AS account_id, p.purchase_id, l.item_id, l.quantity,
                    l.unit_price_cents, l.item_name,
                    to_char(p.purchased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                        AS purchased_at
               FROM s
               LEFT JOIN purchases p ON p.buyer_id = s.buyer_id AND p.state = 'done'
               LEFT JOIN purchase_lines l ON l.purchase_id = p.purchase_id
              ORDER BY p.purchase_id DESC, l.item_id",
            &[&id, &self.timeout()],
        )?;
        let first = rows.first().ok_or(StoreError::SessionExpired)?;
        session_account(first)?;
        let mut out = Vec::new();
        for row in &rows {
            let (Some(purchase_id), Some(item_id)) = (
                row.try_get::<_, Option<i64>>("purchase_id")?,
                row.try_get::<_, Option<i64>>("item_id")?,
            ) else {
                continue;
            };
            let cents: i64 = row.try_get("unit_price_cents")?;
            out.push(PurchaseRecord {
                purchase_id,
                item_id,
                item_name: row.try_get("item_name")?,
                quantity: row.try_get("quantity")?,
                unit_price: cents_to_price(cents),
                purchased_at: row.try_get("purchased_at")?,
            });
        }
        Ok(out)
    }
}
