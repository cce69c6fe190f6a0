//! One client's run: CreateAccount, Login, the mix, Logout; N calls in all, each
//! timed from call to reply at the client.

use crate::conn::Conn;
use crate::mix::{self, BuyerOp, Mix, SellerOp, CATEGORIES, VOCABULARY};
use crate::stats::{ClientStats, Outcome, Side, ACCOUNT_OPERATIONS, CONNECT};
use client::{ClientConfig, Retry};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::request::{
    CartChange, ChangePrice, Credentials, Feedback, ItemRef, RegisterItem, Scalar, Search,
    SellerRef, SessionOnly, UpdateUnits,
};
use wire::{buyer, seller, ErrorCode, Op, Response};

/// Set when the load test is interrupted: every client stops before its next
/// call.
pub static ABORT: AtomicBool = AtomicBool::new(false);

/// What one client does in one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub side: Side,
    /// The client's number within its side.
    pub index: usize,
    pub run: usize,
    /// Calls in all, CreateAccount, Login and Logout included (at least 3).
    pub calls: usize,
    pub seed: u64,
    pub mix: Mix,
    /// Makes usernames unique to this invocation.
    pub tag: String,
    /// Send idempotency keys with writes (off only to measure their cost).
    pub keys: bool,
    /// Connection attempts per call before it counts as failed (reconnects
    /// ride through a server restart).
    pub retry_attempts: u32,
    /// Count malformed replies (an error without `code`, a result missing a
    /// field: servers written for the predecessor's clients) as expected.
    pub tolerate: bool,
    /// Where every client of the run waits after its Login (OK or not) until
    /// all have logged in, so the mix runs with everyone in it; None: each
    /// client goes on at once.
    pub start_line: Option<Arc<tokio::sync::Barrier>>,
    /// Mean pause before each mix call (uniform in 0 to twice this), never
    /// timed: a person between clicks.
    pub think: Duration,
    /// Speak TLS to the server (a TLS port of the proxy).
    pub tls: Option<client::tls::Tls>,
}

impl Plan {
    /// Waits at the start line, if there is one.
    async fn logged_in(&self) {
        if let Some(line) = &self.start_line {
            line.wait().await;
        }
    }
}

struct Caller<'a> {
    client: Conn,
    stats: ClientStats,
    left: usize,
    progress: &'a AtomicU64,
    tolerate: bool,
    think: Duration,
    /// xorshift64 state for the think times.
    pause: u64,
}

impl Caller<'_> {
    /// Calls operation `O` with `fields`, timed and counted under its name
    /// (see [`Caller::call_as`]).
    async fn call<O: Op>(&mut self, fields: O::Fields, expected: &[ErrorCode]) -> Option<O::Reply> {
        self.call_as::<O>(O::NAME, fields, expected).await
    }

    /// Calls operation `O` with `fields`, times it, and records the outcome
    /// under `op` (its name, or a query shape of the search mix). `expected`
    /// error codes are counted; any other failure is unexpected and fails the
    /// run. A reply that is not a well-formed response is counted by its kind
    /// (`NO_CODE`, `MISSING_FIELD`, ...), as expected with `tolerate`; the
    /// client goes on either way.
    async fn call_as<O: Op>(
        &mut self,
        op: &'static str,
        fields: O::Fields,
        expected: &[ErrorCode],
    ) -> Option<O::Reply> {
        let request = O::request(fields);
        if ABORT.load(Ordering::Relaxed) {
            self.left = 0;
            return None;
        }
        if !self.think.is_zero() && !ACCOUNT_OPERATIONS.contains(&op) {
            self.pause ^= self.pause << 13;
            self.pause ^= self.pause >> 7;
            self.pause ^= self.pause << 17;
            let fraction = (self.pause % 2001) as f64 / 1000.0;
            tokio::time::sleep(self.think.mul_f64(fraction)).await;
        }
        self.left = self.left.saturating_sub(1);
        let started = Instant::now();
        if op == <seller::op::Logout as Op>::NAME {
            self.stats.logging_out = Some(started);
        }
        let result = self.client.call_raw(&request).await;
        let ended = Instant::now();
        let took = ended - started;
        self.progress.fetch_add(1, Ordering::Relaxed);
        let (outcome, body) = match result.map(|mut raw| Response::<O::Reply>::decode(&mut raw)) {
            Ok(Err(malformed)) if self.tolerate => {
                (Outcome::Expected(malformed.kind().to_owned()), None)
            }
            Ok(Err(malformed)) => (
                Outcome::Unexpected(format!("{}: {malformed}", malformed.kind())),
                None,
            ),
            Ok(Ok(Response {
                body: Some(body), ..
            })) => (Outcome::Ok, Some(body)),
            Ok(Ok(Response {
                code: Some(code), ..
            })) if expected.contains(&code) => (Outcome::Expected(code.to_string()), None),
            Ok(Ok(response)) => (
                Outcome::Unexpected(format!(
                    "{}: {}",
                    response.code.map_or("?", |c| c.as_str()),
                    response.message
                )),
                None,
            ),
            Err(e) => (Outcome::Unexpected(format!("CONNECTION: {e}")), None),
        };
        if op == <seller::op::Login as Op>::NAME && outcome == Outcome::Ok {
            self.stats.logged_in = Some(ended);
        }
        self.stats.record_at(op, ended, took, outcome);
        body
    }
}

fn session(id: &str) -> SessionOnly {
    SessionOnly {
        session_id: id.to_owned(),
    }
}

/// Runs one client against `addrs` (from the one at its index, on to the
/// next when a connection fails) and returns what it measured. `progress`
/// counts finished calls for the progress bar.
pub async fn run(plan: Plan, addrs: Arc<[SocketAddr]>, progress: Arc<AtomicU64>) -> ClientStats {
    let plan = &plan;
    let config = ClientConfig {
        // Generous: at 1000x1000 the last of 4,000 password hashes on 2
        // cores is answered after about a minute (a resend would hash again).
        io_timeout: Duration::from_secs(180),
        retry: Retry {
            attempts: plan.retry_attempts,
            max: Duration::from_secs(1),
            ..Retry::default()
        },
        idempotency_keys: plan.keys,
        ..ClientConfig::default()
    };
    let mut stats = ClientStats::new(plan.side);
    let tolerate = plan.tolerate;
    let mut client = Conn::new(addrs, plan.index, config);
    if let Some(tls) = &plan.tls {
        client.use_tls(tls.clone());
    }
    if let Err(e) = client.connect().await {
        stats.record(
            CONNECT,
            Duration::ZERO,
            Outcome::Unexpected(format!("CONNECTION: {e}")),
        );
        plan.logged_in().await;
        return stats;
    }
    let mut caller = Caller {
        client,
        stats,
        left: plan.calls.max(3),
        progress: &progress,
        tolerate,
        think: plan.think,
        pause: (plan.seed ^ (plan.index as u64) << 16 ^ plan.side as u64) | 1,
    };
    let mut rng = SmallRng::seed_from_u64(
        plan.seed ^ (plan.run as u64) << 40 ^ (plan.index as u64) << 8 ^ plan.side as u64,
    );
    let username = format!(
        "{}r{}{}{}",
        plan.tag,
        plan.run,
        &plan.side.name()[..1],
        plan.index
    );
    let creds = Credentials {
        username,
        password: format!("pw-{}", plan.index),
    };
    match plan.side {
        Side::Seller => seller_client(&mut caller, plan, &mut rng, creds).await,
        Side::Buyer => buyer_client(&mut caller, plan, &mut rng, creds).await,
    }
    caller.stats
}

/// The most items a seller keeps on sale at once.
pub const MAX_ON_SALE: usize = 8;

/// An item a seller owns, as it believes it to be.
struct Own {
    id: i64,
    units: i64,
}

fn keywords(rng: &mut SmallRng) -> Vec<String> {
    let n = rng.gen_range(1..=5);
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let word = VOCABULARY[mix::skewed(rng, VOCABULARY.len())].to_owned();
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

fn category(rng: &mut SmallRng) -> i64 {
    mix::skewed(rng, CATEGORIES as usize) as i64
}

fn price(rng: &mut SmallRng) -> f64 {
    f64::from(rng.gen_range(100..50_000u32)) / 100.0
}

async fn seller_client(c: &mut Caller<'_>, plan: &Plan, rng: &mut SmallRng, creds: Credentials) {
    let _ = c
        .call::<seller::op::CreateAccount>(creds.clone(), &[])
        .await;
    let login = c.call::<seller::op::Login>(creds, &[]).await;
    plan.logged_in().await;
    let Some(login) = login else {
        return;
    };
    let sid = login.session_id;
    let mut items: Vec<Own> = Vec::new();
    let mut i = 0usize;
    // The last calls before Logout close the shop: one UpdateUnitsForSale per
    // item still on sale, so every run starts from the same live catalogue
    // while the items table keeps every item ever listed.
    let closing = |items: &[Own]| items.iter().filter(|o| o.units > 0).count();
    while c.left
        > 1 + if matches!(plan.mix, Mix::Seed | Mix::Register) {
            0
        } else {
            closing(&items)
        }
    {
        if plan.mix == Mix::Seed {
            seed_seller_step(c, &sid, i).await;
            i += 1;
            continue;
        }
        // A tour of every operation first (the table starts with Register),
        // then the weights.
        let table = plan.mix.seller();
        let mut op = table
            .get(i)
            .map_or_else(|| mix::pick(rng, table), |(op, _)| *op);
        i += 1;
        if items.is_empty()
            && matches!(
                op,
                SellerOp::ChangePrice | SellerOp::RemoveUnits | SellerOp::Restock
            )
        {
            op = SellerOp::Register;
        }
        match op {
            SellerOp::Register => {
                let units = rng.gen_range(1..=10);
                let request = RegisterItem {
                    session_id: sid.clone(),
                    item_name: format!("item {}", rng.gen_range(0..1_000_000)),
                    category: category(rng),
                    keywords: keywords(rng),
                    condition: if rng.gen_bool(0.7) { "New" } else { "Used" }.into(),
                    sale_price: price(rng),
                    quantity: units,
                };
                if let Some(r) = c
                    .call::<seller::op::RegisterItemForSale>(request, &[])
                    .await
                {
                    items.push(Own {
                        id: r.item_id,
                        units,
                    });
                }
            }
            SellerOp::ChangePrice => {
                let item_id = items[rng.gen_range(0..items.len())].id;
                let request = ChangePrice {
                    session_id: sid.clone(),
                    item_id,
                    new_price: price(rng),
                };
                let _ = c.call::<seller::op::ChangeItemPrice>(request, &[]).await;
            }
            SellerOp::RemoveUnits | SellerOp::Restock => {
                // A seller keeps at most MAX_ON_SALE items on sale: with more, it
                // clears its oldest; otherwise it sells a few units of one, or
                // restocks one (re-listing it if it had sold out).
                let on_sale: Vec<usize> =
                    (0..items.len()).filter(|&k| items[k].units > 0).collect();
                let (k, change) = if on_sale.len() > MAX_ON_SALE {
                    (on_sale[0], items[on_sale[0]].units)
                } else if op == SellerOp::Restock || on_sale.is_empty() {
                    (rng.gen_range(0..items.len()), -rng.gen_range(1..=5))
                } else {
                    let k = on_sale[rng.gen_range(0..on_sale.len())];
                    (k, rng.gen_range(1..=items[k].units))
                };
                let request = UpdateUnits {
                    session_id: sid.clone(),
                    item_id: items[k].id,
                    quantity_change: change,
                };
                if let Some(r) = c
                    .call::<seller::op::UpdateUnitsForSale>(
                        request,
                        &[ErrorCode::InsufficientStock],
                    )
                    .await
                {
                    items[k].units = r.quantity;
                }
            }
            SellerOp::Display => {
                let _ = c
                    .call::<seller::op::DisplayItemsForSale>(session(&sid).into(), &[])
                    .await;
            }
            SellerOp::Rating => {
                let _ = c
                    .call::<seller::op::GetSellerRating>(session(&sid), &[])
                    .await;
            }
        }
    }
    for own in items.iter().filter(|o| o.units > 0) {
        if c.left <= 1 {
            break;
        }
        let request = UpdateUnits {
            session_id: sid.clone(),
            item_id: own.id,
            quantity_change: own.units,
        };
        let _ = c
            .call::<seller::op::UpdateUnitsForSale>(request, &[ErrorCode::InsufficientStock])
            .await;
    }
    let _ = c.call::<seller::op::Logout>(session(&sid), &[]).await;
}

/// One step of the course evaluation's seller loop (three calls).
async fn seed_seller_step(c: &mut Caller<'_>, sid: &str, i: usize) {
    let request = RegisterItem {
        session_id: sid.to_owned(),
        item_name: format!("item{i}"),
        category: (i % 5) as i64,
        keywords: vec!["keyword1".into(), "keyword2".into()],
        condition: "New".into(),
        sale_price: 10.0,
        quantity: 10,
    };
    let Some(item) = c
        .call::<seller::op::RegisterItemForSale>(request, &[])
        .await
    else {
        return;
    };
    if c.left <= 1 {
        return;
    }
    let change = ChangePrice {
        session_id: sid.to_owned(),
        item_id: item.item_id,
        new_price: 12.5,
    };
    let _ = c.call::<seller::op::ChangeItemPrice>(change, &[]).await;
    if c.left <= 1 {
        return;
    }
    let units = UpdateUnits {
        session_id: sid.to_owned(),
        item_id: item.item_id,
        quantity_change: 5,
    };
    let _ = c.call::<seller::op::UpdateUnitsForSale>(units, &[]).await;
}

/// One search of the search mix: the shapes in turn, starting at a shape of
/// its own for each buyer (`i`), each timed under its own name.
async fn search_step(c: &mut Caller<'_>, sid: &str, rng: &mut SmallRng, i: usize) {
    use crate::catalogue::{CATEGORY, HOT, WARM};
    let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let (name, keywords, offset): (&'static str, Vec<String>, i64) = match i % 6 {
        0 => ("Search hot", words(&[HOT]), 0),
        1 => ("Search hot later", words(&[HOT]), 50 * rng.gen_range(1..20)),
        2 => ("Search warm", words(&[WARM]), 0),
        3 => ("Search two", words(&[WARM, "k3"]), 0),
        4 => ("Search five", words(&["k1", "k2", "k3", "k4", "k5"]), 0),
        _ => ("Search none", Vec::new(), 0),
    };
    let request = Search {
        session_id: sid.to_owned(),
        category: CATEGORY,
        keywords,
        limit: Some(50),
        offset: Some(offset),
    };
    let _ = c
        .call_as::<buyer::op::SearchItemsForSale>(name, request, &[])
        .await;
}

async fn buyer_client(c: &mut Caller<'_>, plan: &Plan, rng: &mut SmallRng, creds: Credentials) {
    let _ = c.call::<buyer::op::CreateAccount>(creds.clone(), &[]).await;
    let login = c.call::<buyer::op::Login>(creds, &[]).await;
    plan.logged_in().await;
    let Some(login) = login else {
        return;
    };
    let sid = login.session_id;
    // Items seen in searches: (item, seller).
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let mut cart: BTreeMap<String, i64> = BTreeMap::new();
    let mut i = 0usize;
    // A tour of every operation first, then the weights. An operation that
    // needs an item waits in the tour until a search has found one (until then
    // the buyer browses the categories in turn); one that needs a cart line
    // waits until an AddItemToCart has put one in.
    let mut tour: Vec<BuyerOp> = plan.mix.buyer().iter().map(|(op, _)| *op).collect();
    let mut browse = 0i64;
    let mut found_any = false;
    while c.left > 1 {
        if plan.mix == Mix::Seed {
            seed_buyer_step(c, &sid, i).await;
            i += 1;
            continue;
        }
        if plan.mix == Mix::Search {
            search_step(c, &sid, rng, i).await;
            i += 1;
            continue;
        }
        let needs_item = |op: BuyerOp| {
            matches!(
                op,
                BuyerOp::GetItem | BuyerOp::AddToCart | BuyerOp::Vote | BuyerOp::SellerRating
            )
        };
        let ready = |op: BuyerOp| {
            let blocked = (seen.is_empty() && needs_item(op))
                || (cart.is_empty() && op == BuyerOp::RemoveFromCart);
            !blocked
        };
        let mut op = if tour.is_empty() {
            mix::pick(rng, plan.mix.buyer())
        } else {
            match tour.iter().position(|op| ready(*op)) {
                Some(k) => tour.remove(k),
                // What waits needs an item seen or a cart line: get one, or
                // the tour would never end (a search until the run is over).
                None if seen.is_empty() => BuyerOp::Search,
                None => BuyerOp::AddToCart,
            }
        };
        if seen.is_empty() && needs_item(op) {
            op = BuyerOp::Search;
        }
        if cart.is_empty() && op == BuyerOp::RemoveFromCart {
            op = BuyerOp::DisplayCart;
        }
        let any_seen = |rng: &mut SmallRng, seen: &[(i64, i64)]| seen[rng.gen_range(0..seen.len())];
        match op {
            BuyerOp::Search => {
                let (category, n) = if seen.is_empty() {
                    // Before it has found any item (sellers still logging in at
                    // the start of a run), a buyer who found the marketplace
                    // empty in a whole pass over the categories waits a little
                    // longer before each further pass: think time between
                    // calls, never inside a timed call.
                    if !found_any && browse > 0 && browse % CATEGORIES == 0 {
                        let passes = (browse / CATEGORIES).min(7) as u32;
                        tokio::time::sleep(
                            Duration::from_millis(5 << (passes - 1))
                                .min(Duration::from_millis(500)),
                        )
                        .await;
                    }
                    browse += 1;
                    ((browse - 1) % CATEGORIES, 0)
                } else {
                    (category(rng), rng.gen_range(0..=5))
                };
                let words: Vec<String> = (0..n)
                    .map(|_| VOCABULARY[mix::skewed(rng, VOCABULARY.len())].to_owned())
                    .collect();
                let request = Search {
                    session_id: sid.clone(),
                    category,
                    keywords: words,
                    limit: Some(20),
                    offset: rng.gen_bool(0.1).then(|| 20 * rng.gen_range(1..=3)),
                };
                if let Some(r) = c.call::<buyer::op::SearchItemsForSale>(request, &[]).await {
                    if !r.items.is_empty() {
                        found_any = true;
                        seen = r
                            .items
                            .iter()
                            .map(|it| (it.item_id, it.seller_id))
                            .collect();
                    }
                }
            }
            BuyerOp::GetItem => {
                let (item_id, _) = any_seen(rng, &seen);
                let request = ItemRef {
                    session_id: sid.clone(),
                    item_id,
                };
                let _ = c.call::<buyer::op::GetItem>(request, &[]).await;
            }
            BuyerOp::AddToCart | BuyerOp::RemoveFromCart => {
                let add = op == BuyerOp::AddToCart;
                let item_id = if add {
                    any_seen(rng, &seen).0
                } else {
                    let keys: Vec<&String> = cart.keys().collect();
                    keys[rng.gen_range(0..keys.len())].parse().unwrap_or(0)
                };
                let change = CartChange {
                    session_id: sid.clone(),
                    item_id,
                    quantity: rng.gen_range(1..=2),
                };
                // Stock moves under the buyer's feet: sellers sell out items.
                // A sold-out item is forgotten (no buyer retries it forever);
                // with nothing left in mind, the buyer browses again.
                let expected = [ErrorCode::InsufficientStock];
                let changed = if add {
                    c.call::<buyer::op::AddItemToCart>(change, &expected).await
                } else {
                    c.call::<buyer::op::RemoveItemFromCart>(change, &expected)
                        .await
                };
                match changed {
                    Some(r) => cart = r.cart_items,
                    None if op == BuyerOp::AddToCart => seen.retain(|(id, _)| *id != item_id),
                    None => {}
                }
            }
            BuyerOp::DisplayCart => {
                if let Some(r) = c.call::<buyer::op::DisplayCart>(session(&sid), &[]).await {
                    cart = r.cart_items;
                }
            }
            BuyerOp::SaveCart => {
                let _ = c.call::<buyer::op::SaveCart>(session(&sid), &[]).await;
            }
            BuyerOp::ClearCart => {
                if c.call::<buyer::op::ClearCart>(session(&sid), &[])
                    .await
                    .is_some()
                {
                    cart.clear();
                }
            }
            BuyerOp::Vote => {
                let (item_id, _) = any_seen(rng, &seen);
                let request = Feedback {
                    session_id: sid.clone(),
                    item_id,
                    feedback: Scalar::Int(i64::from(rng.gen_bool(0.7))),
                };
                let _ = c.call::<buyer::op::ProvideFeedback>(request, &[]).await;
            }
            BuyerOp::SellerRating => {
                let (_, seller_id) = any_seen(rng, &seen);
                let request = SellerRef {
                    session_id: sid.clone(),
                    seller_id,
                };
                let _ = c.call::<buyer::op::GetSellerRating>(request, &[]).await;
            }
            BuyerOp::History => {
                let _ = c
                    .call::<buyer::op::GetBuyerPurchases>(session(&sid), &[])
                    .await;
            }
        }
    }
    let _ = c.call::<buyer::op::Logout>(session(&sid), &[]).await;
}

/// One step of the course evaluation's buyer loop (five calls). Items 1-5 may
/// not exist yet early in a first run: NOT_FOUND is expected there.
async fn seed_buyer_step(c: &mut Caller<'_>, sid: &str, i: usize) {
    let item_id = (i % 5) as i64 + 1;
    let search = Search {
        session_id: sid.to_owned(),
        category: (i % 5) as i64,
        keywords: vec!["keyword1".into()],
        limit: None,
        offset: None,
    };
    let _ = c.call::<buyer::op::SearchItemsForSale>(search, &[]).await;
    if c.left <= 1 {
        return;
    }
    let get = ItemRef {
        session_id: sid.to_owned(),
        item_id,
    };
    let seller_id = c
        .call::<buyer::op::GetItem>(get, &[ErrorCode::NotFound])
        .await
        .map_or(1, |d| d.item.seller_id);
    if c.left <= 1 {
        return;
    }
    let vote = Feedback {
        session_id: sid.to_owned(),
        item_id,
        feedback: Scalar::Int(1),
    };
    let _ = c
        .call::<buyer::op::ProvideFeedback>(vote, &[ErrorCode::NotFound])
        .await;
    if c.left <= 1 {
        return;
    }
    let rating = SellerRef {
        session_id: sid.to_owned(),
        seller_id,
    };
    let _ = c
        .call::<buyer::op::GetSellerRating>(rating, &[ErrorCode::NotFound])
        .await;
    if c.left <= 1 {
        return;
    }
    let _ = c.call::<buyer::op::DisplayCart>(session(sid), &[]).await;
}
