//! The seller server: maps each seller operation of PROTOCOL.md to validation
//! and one store call. It holds no state between requests; everything lives in
//! the databases, so any number of instances can serve the same sellers.

use bytes::BytesMut;
use net::dispatch::serve;
use net::settings::ServerSettings;
use std::sync::Arc;
use std::time::Duration;
use store::seller::NewItem;
use store::{DbSettings, Store};
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
    trace: bool,
}

impl SellerService {
    /// A service over `store`; `trace` logs one line per request.
    pub fn new(store: Store, trace: bool) -> Self {
        SellerService { store, trace }
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
                session_id,
                seller_id,
            },
        ))
    }

    fn logout(&self, s: SessionOnly, once: Option<&Idempotency>) -> Result<Answer<Empty>, Refusal> {
        self.store.logout_seller(&s.session_id, once)?;
        Ok(Answer::new("logged out", Empty {}))
    }

    fn get_seller_rating(
        &self,
        s: SessionOnly,
        _: Option<&Idempotency>,
    ) -> Result<Answer<SellerRating>, Refusal> {
        let rating = self.store.own_seller_rating(&s.session_id)?;
        Ok(Answer::new("your rating", rating))
    }

    fn register_item_for_sale(
        &self,
        r: RegisterItem,
        once: Option<&Idempotency>,
    ) -> Result<Answer<ItemRegistered>, Refusal> {
        validate::item_name(&r.item_name)?;
        let item = NewItem {
            item_name: &r.item_name,
            category: validate::category(r.category)?,
            keywords: &validate::keywords(&r.keywords)?,
            condition: validate::condition(&r.condition)?,
            price_cents: validate::price(r.sale_price)?,
            quantity: validate::stock(r.quantity)?,
        };
        let (item_id, category) = self.store.register_item(&r.session_id, &item, once)?;
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
        let cents = self
            .store
            .change_price(&r.session_id, r.item_id, cents, once)?;
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
        let quantity = self
            .store
            .update_units(&r.session_id, r.item_id, change, once)?;
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
        let items = self.store.seller_items(&s.session_id, s.include_sold_out)?;
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

impl net::Service for SellerService {
    fn call(
        &self,
        peer: std::net::IpAddr,
        body: &mut [u8],
        out: &mut BytesMut,
    ) -> net::metrics::Outcome {
        serve::<Request>(NAME, self.trace, peer, body, out, self)
    }

    /// Account operations hash a password (about 15 ms of CPU each): they go
    /// to the slow lane, so a login storm never holds the workers that serve
    /// everyone else.
    fn is_slow(&self, body: &[u8]) -> bool {
        net::dispatch::mentions_operation(body, &[op::CreateAccount::NAME, op::Login::NAME])
    }
}

/// Opens and migrates the databases (waiting up to `db_wait` for them), binds
/// the listener, and returns the server ready to run, with a periodic sweep of
/// expired seller sessions beside it.
///
/// # Errors
/// A message when a database stays unreachable or the address cannot be bound.
pub fn prepare(
    settings: &ServerSettings,
    db: &DbSettings,
    db_wait: Duration,
) -> Result<net::Server, String> {
    let store = Store::open_migrated(db, db_wait).map_err(|e| e.to_string())?;
    let sweeper = store.clone();
    // Every second the search counts are folded; sessions, keys (and, on the
    // buyer side, interrupted purchases) once per sweep interval.
    let mut sweep = store::search::Every::new(db.sweep_interval());
    let metrics = settings.metrics("seller", Request::OPERATIONS);
    let probe = store.clone();
    metrics.watch_databases(move || probe.db_stats());
    settings.serve(
        Arc::new(SellerService::new(store, settings.trace)),
        metrics,
        store::search::FOLD_EVERY,
        move |metrics| {
            // Counts stay exact unfolded (a read only sums more rows), so a
            // database that is away now is simply folded at a later tick.
            match sweeper.fold_search_counts() {
                Ok(_) | Err(store::StoreError::Unavailable(_)) => {}
                Err(e) => return Err(format!("search counts: {e}")),
            }
            if !sweep.due() {
                return Ok(());
            }
            let swept = sweeper.sweep_seller_sessions().map_err(|e| e.to_string())?;
            metrics.sessions_swept(swept);
            sweeper
                .sweep_idempotency_keys()
                .map_err(|e| format!("idempotency keys: {e}"))?;
            Ok(())
        },
    )
}

/// Runs the seller server with command-line arguments `raw` (after the program
/// name): the whole `main` of `seller_srv`, also reachable as `marketplace seller`.
pub fn main_with(raw: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    store::settings::server_main(raw, NAME, DEFAULT_LISTEN, prepare)
}
