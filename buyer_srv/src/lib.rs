//! The buyer server: maps each buyer operation of PROTOCOL.md to validation and
//! one store call. It holds no state between requests (no session or cart
//! cache); any number of instances can serve the same buyers.

use chrono::Datelike;
use server::metrics::Metrics;
use server::Side;
use std::sync::Arc;
use std::time::Duration;
use store::{SessionId, Store};
use wire::buyer::{self, op, Request};
use wire::request::{
    CartChange, Checkout, Credentials, Feedback, Idempotency, ItemRef, NoFields, Search, SellerRef,
    SessionOnly,
};
use wire::response::{
    BuyerCreated, BuyerSession, CartContents, Empty, ItemDetail, Pong, PurchaseHistory,
    PurchaseReceipt, SearchResults, SellerRating, Votes, SEARCH_COUNT_CAP,
};
use wire::{validate, Answer, Op, Refusal, PROTOCOL_VERSION};

/// The name in logs.
pub const NAME: &str = "buyer_srv";
/// Where it listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6001";

/// A purchase still pending after this long was interrupted (they finish in
/// milliseconds) and is settled by recovery.
pub const PURCHASE_RECOVERY_AGE: Duration = Duration::from_secs(30);

/// The buyer operations over a [`Store`].
pub struct BuyerService {
    store: Store,
}

impl BuyerService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        BuyerService { store }
    }
}

/// Each buyer operation: validation, then one store call.
impl buyer::Handler for BuyerService {
    fn create_account(
        &self,
        c: Credentials,
        once: Option<&Idempotency>,
    ) -> Result<Answer<BuyerCreated>, Refusal> {
        validate::username(&c.username)?;
        validate::password(&c.password)?;
        let buyer_id = self.store.create_buyer(&c.username, &c.password, once)?;
        Ok(Answer::new(
            "buyer account created",
            BuyerCreated { buyer_id },
        ))
    }

    fn login(
        &self,
        c: Credentials,
        once: Option<&Idempotency>,
    ) -> Result<Answer<BuyerSession>, Refusal> {
        let (session_id, buyer_id) = self.store.login_buyer(&c.username, &c.password, once)?;
        Ok(Answer::new(
            "logged in",
            BuyerSession {
                session_id: session_id.to_string(),
                buyer_id,
            },
        ))
    }

    fn logout(&self, s: SessionOnly, once: Option<&Idempotency>) -> Result<Answer<Empty>, Refusal> {
        // Text that cannot be a session id names no session: nothing to end.
        if let Ok(session) = SessionId::parse(&s.session_id) {
            self.store.logout_buyer(session, once)?;
        }
        Ok(Answer::new("logged out", Empty {}))
    }

    fn search_items_for_sale(
        &self,
        r: Search,
        _: Option<&Idempotency>,
    ) -> Result<Answer<SearchResults>, Refusal> {
        let category = validate::category(r.category)?;
        let keywords = validate::keywords(&r.keywords)?;
        let (limit, offset) = validate::page(r.limit, r.offset)?;
        let (items, total) = self.store.search(
            SessionId::parse(&r.session_id)?,
            category,
            &keywords,
            limit,
            offset,
        )?;
        let total_exact = total <= SEARCH_COUNT_CAP;
        let total = total.min(SEARCH_COUNT_CAP);
        let shown = if total_exact {
            total.to_string()
        } else {
            format!("more than {total}")
        };
        Ok(Answer::new(
            format!("{} of {shown} matching items", items.len()),
            SearchResults {
                items,
                total,
                total_exact,
            },
        ))
    }

    fn get_item(&self, r: ItemRef, _: Option<&Idempotency>) -> Result<Answer<ItemDetail>, Refusal> {
        let item = self
            .store
            .get_item(SessionId::parse(&r.session_id)?, r.item_id)?;
        Ok(Answer::new("item", ItemDetail { item }))
    }

    fn add_item_to_cart(
        &self,
        r: CartChange,
        once: Option<&Idempotency>,
    ) -> Result<Answer<CartContents>, Refusal> {
        let quantity = validate::quantity(r.quantity)?;
        let cart =
            self.store
                .add_to_cart(SessionId::parse(&r.session_id)?, r.item_id, quantity, once)?;
        Ok(Answer::new("added to cart", cart))
    }

    fn remove_item_from_cart(
        &self,
        r: CartChange,
        once: Option<&Idempotency>,
    ) -> Result<Answer<CartContents>, Refusal> {
        let quantity = validate::quantity(r.quantity)?;
        let cart = self.store.remove_from_cart(
            SessionId::parse(&r.session_id)?,
            r.item_id,
            quantity,
            once,
        )?;
        Ok(Answer::new("removed from cart", cart))
    }

    fn save_cart(
        &self,
        s: SessionOnly,
        once: Option<&Idempotency>,
    ) -> Result<Answer<Empty>, Refusal> {
        self.store
            .save_cart(SessionId::parse(&s.session_id)?, once)?;
        Ok(Answer::new("cart saved", Empty {}))
    }

    fn clear_cart(
        &self,
        s: SessionOnly,
        once: Option<&Idempotency>,
    ) -> Result<Answer<Empty>, Refusal> {
        self.store
            .clear_cart(SessionId::parse(&s.session_id)?, once)?;
        Ok(Answer::new("cart cleared", Empty {}))
    }

    fn display_cart(
        &self,
        s: SessionOnly,
        _: Option<&Idempotency>,
    ) -> Result<Answer<CartContents>, Refusal> {
        let cart = self.store.display_cart(SessionId::parse(&s.session_id)?)?;
        Ok(Answer::new("your cart", cart))
    }

    fn make_purchase(
        &self,
        checkout: Checkout,
        once: Option<&Idempotency>,
    ) -> Result<Answer<PurchaseReceipt>, Refusal> {
        // The card is judged before anything is reserved; it is never stored
        // or logged.
        let today = chrono::Utc::now();
        validate::card(&checkout, (today.year(), today.month()))?;
        let receipt = self
            .store
            .make_purchase(SessionId::parse(&checkout.session_id)?, once)?;
        Ok(Answer::new(
            format!("purchase {} complete", receipt.purchase_id),
            receipt,
        ))
    }

    fn provide_feedback(
        &self,
        r: Feedback,
        once: Option<&Idempotency>,
    ) -> Result<Answer<Votes>, Refusal> {
        let up = validate::vote(&r.feedback)?;
        let (thumbs_up, thumbs_down) =
            self.store
                .vote(SessionId::parse(&r.session_id)?, r.item_id, up, once)?;
        Ok(Answer::new(
            "feedback recorded",
            Votes {
                item_id: r.item_id,
                thumbs_up,
                thumbs_down,
            },
        ))
    }

    fn get_seller_rating(
        &self,
        r: SellerRef,
        _: Option<&Idempotency>,
    ) -> Result<Answer<SellerRating>, Refusal> {
        let rating = self
            .store
            .seller_rating(SessionId::parse(&r.session_id)?, r.seller_id)?;
        Ok(Answer::new("seller rating", rating))
    }

    fn get_buyer_purchases(
        &self,
        s: SessionOnly,
        _: Option<&Idempotency>,
    ) -> Result<Answer<PurchaseHistory>, Refusal> {
        let purchases = self.store.purchases(SessionId::parse(&s.session_id)?)?;
        Ok(Answer::new(
            format!("{} purchase lines", purchases.len()),
            PurchaseHistory { purchases },
        ))
    }

    fn ping(&self, _: NoFields, _: Option<&Idempotency>) -> Result<Answer<Pong>, Refusal> {
        Ok(Answer::new(
            "pong",
            Pong {
                server: "buyer".into(),
                version: PROTOCOL_VERSION,
            },
        ))
    }
}

/// The buyer server as the `server` crate builds and runs it.
pub static SIDE: Side<Request> = Side {
    name: NAME,
    server: "buyer",
    default_listen: DEFAULT_LISTEN,
    operations: Request::OPERATIONS,
    // Account operations hash a password (about 15 ms of CPU each).
    slow: &[op::CreateAccount::NAME, op::Login::NAME],
    handler: |store| Arc::new(BuyerService::new(store)),
    chores,
};

/// What the buyer server does once per sweep interval.
fn chores(store: &Store, metrics: &Metrics) -> Result<(), String> {
    let swept = store.sweep_buyer_sessions().map_err(|e| e.to_string())?;
    metrics.sessions_swept(swept);
    let settled = store
        .recover_purchases(PURCHASE_RECOVERY_AGE)
        .map_err(|e| format!("purchase recovery: {e}"))?;
    metrics.purchases_recovered(settled.completed, settled.abandoned);
    Ok(())
}
