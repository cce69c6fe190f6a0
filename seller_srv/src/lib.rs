//! The seller server: maps each seller operation of PROTOCOL.md to validation
//! and one store call. It holds no state between requests; everything lives in
//! the databases, so any number of instances can serve the same sellers.

use server::metrics::Metrics;
use server::Side;
use std::sync::Arc;
use store::NewItem;
use store::{SessionId, Store};
use wire::request::{
    ChangePrice, Credentials, Idempotency, NoFields, OwnItems, RegisterItem, SessionOnly,
    UpdateUnits,
};
use wire::response::{
    cents_to_price, Empty, ItemList, ItemRegistered, Pong, PriceChanged, SellerCreated,
    SellerRating, SellerSession, UnitsUpdated,
};
use wire::seller::{self, op, Request};
use wire::{validate, Answer, Op, Refusal, PROTOCOL_VERSION};

/// The name in logs.
pub const NAME: &str = "seller_srv";
/// Where it listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5001";

/// The seller operations over a [`Store`].
pub struct SellerService {
    store: Store,
}

impl SellerService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        SellerService { store }
    }
}

/// Each seller operation: validation, then one store call.
impl seller::Handler for SellerService {
    fn create_account(
        &self,
        c: Credentials,
        once: Option<&Idempotency>,
    ) -> Result<Answer<SellerCreated>, Refusal> {
        validate::username(&c.username)?;
        validate::password(&c.password)?;
        let seller_id = self.store.create_seller(&c.username, &c.password, once)?;
        Ok(Answer::new(
            "seller account created",
            SellerCreated { seller_id },
        ))
    }

    fn login(
        &self,
        c: Credentials,
        once: Option<&Idempotency>,
    ) -> Result<Answer<SellerSession>, Refusal> {
        let (session_id, seller_id) = self.store.login_seller(&c.username, &c.password, once)?;
        Ok(Answer::new(
            "logged in",
            SellerSession {
                session_id: session_id.to_string(),
                seller_id,
            },
        ))
    }

    fn logout(&self, s: SessionOnly, once: Option<&Idempotency>) -> Result<Answer<Empty>, Refusal> {
        // Text that cannot be a session id names no session: nothing to end.
        if let Ok(session) = SessionId::parse(&s.session_id) {
            self.store.logout_seller(session, once)?;
        }
        Ok(Answer::new("logged out", Empty {}))
    }

    fn get_seller_rating(
        &self,
        s: SessionOnly,
        _: Option<&Idempotency>,
    ) -> Result<Answer<SellerRating>, Refusal> {
        let rating = self
            .store
            .own_seller_rating(SessionId::parse(&s.session_id)?)?;
        Ok(Answer::new("your rating", rating))
    }

    fn register_item_for_sale(
        &self,
        r: RegisterItem,
        once: Option<&Idempotency>,
    ) -> Result<Answer<ItemRegistered>, Refusal> {
        let item_name = validate::item_name(&r.item_name)?;
        let item = NewItem {
            item_name: &item_name,
            category: validate::category(r.category)?,
            keywords: &validate::keywords(&r.keywords)?,
            condition: validate::condition(&r.condition)?,
            price_cents: validate::price(r.sale_price)?,
            quantity: validate::stock(r.quantity)?,
        };
        let (item_id, category) =
            self.store
                .register_item(SessionId::parse(&r.session_id)?, &item, once)?;
        Ok(Answer::new(
            "item registered",
            ItemRegistered { item_id, category },
        ))
    }

    fn change_item_price(
        &self,
        r: ChangePrice,
        once: Option<&Idempotency>,
    ) -> Result<Answer<PriceChanged>, Refusal> {
        let cents = validate::price(r.new_price)?;
        let cents =
            self.store
                .change_price(SessionId::parse(&r.session_id)?, r.item_id, cents, once)?;
        Ok(Answer::new(
            "price changed",
            PriceChanged {
                item_id: r.item_id,
                sale_price: cents_to_price(cents),
            },
        ))
    }

    fn update_units_for_sale(
        &self,
        r: UpdateUnits,
        once: Option<&Idempotency>,
    ) -> Result<Answer<UnitsUpdated>, Refusal> {
        let change = validate::quantity_change(r.quantity_change)?;
        let quantity =
            self.store
                .update_units(SessionId::parse(&r.session_id)?, r.item_id, change, once)?;
        Ok(Answer::new(
            "units updated",
            UnitsUpdated {
                item_id: r.item_id,
                quantity,
            },
        ))
    }

    fn display_items_for_sale(
        &self,
        s: OwnItems,
        _: Option<&Idempotency>,
    ) -> Result<Answer<ItemList>, Refusal> {
        let items = self
            .store
            .seller_items(SessionId::parse(&s.session_id)?, s.include_sold_out)?;
        let message = if s.include_sold_out {
            let sold_out = items.iter().filter(|i| i.quantity == 0).count();
            format!("{} items, {sold_out} of them sold out", items.len())
        } else {
            format!("{} items for sale", items.len())
        };
        Ok(Answer::new(message, ItemList { items }))
    }

    fn ping(&self, _: NoFields, _: Option<&Idempotency>) -> Result<Answer<Pong>, Refusal> {
        Ok(Answer::new(
            "pong",
            Pong {
                server: "seller".into(),
                version: PROTOCOL_VERSION,
            },
        ))
    }
}

/// The seller server as the `server` crate builds and runs it.
pub static SIDE: Side<Request> = Side {
    name: NAME,
    server: "seller",
    default_listen: DEFAULT_LISTEN,
    operations: Request::OPERATIONS,
    // Account operations hash a password (about 15 ms of CPU each).
    slow: &[op::CreateAccount::NAME, op::Login::NAME],
    handler: |store| Arc::new(SellerService::new(store)),
    chores,
};

/// What the seller server does once per sweep interval.
fn chores(store: &Store, metrics: &Metrics) -> Result<(), String> {
    let swept = store.sweep_seller_sessions().map_err(|e| e.to_string())?;
    metrics.sessions_swept(swept);
    Ok(())
}
