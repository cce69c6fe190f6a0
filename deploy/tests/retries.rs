//! Exactly-once writes over resends (PROTOCOL.md, "Retries"). A proxy lets the
//! server act on a request and then loses the reply with the connection; the
//! client resends with the same idempotency key. For every state-changing
//! operation the effect happens once and the resend gets the first answer.

mod support;

use std::net::SocketAddr;
use store::{DbSettings, Store};
use support::proxy::DropProxy;
use support::*;
use wire::buyer::Request as B;
use wire::request::{CartChange, ChangePrice, Feedback, Scalar, UpdateUnits};
use wire::response::{
    BuyerCreated, BuyerSession, CartContents, Empty, ItemList, PriceChanged, PurchaseHistory,
    PurchaseReceipt, SellerCreated, SellerSession, UnitsUpdated, Votes,
};
use wire::seller::Request as S;
use wire::{ErrorCode, Status};

/// An API whose every connection goes through a fresh dropping proxy.
fn through_proxy(upstream: SocketAddr) -> (Api, DropProxy) {
    let proxy = DropProxy::start(upstream);
    (Api::connect(proxy.addr), proxy)
}

/// Runs `call` with its first reply lost; checks the loss happened.
fn lose_first_reply<T>(api: &mut Api, proxy: &DropProxy, call: impl FnOnce(&mut Api) -> T) -> T {
    let before = proxy.dropped();
    proxy.drop_next_reply();
    let result = call(api);
    assert_eq!(proxy.dropped(), before + 1, "the first reply was lost");
    result
}

fn my_items(api: &mut Api, sid: &str) -> ItemList {
    api.ok(&S::DisplayItemsForSale(session(sid).into()))
}

#[test]
fn every_seller_write_whose_reply_is_lost_happens_once_and_the_resend_gets_the_first_answer() {
    let (mut api, proxy) = through_proxy(stack().seller_addr());
    let name = unique("rs");

    let created: SellerCreated = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::CreateAccount(creds(&name, "pw")))
    });
    // Without a key a second CreateAccount is refused: the account exists once.
    let again = api.raw(&format!(
        r#"{{"operation":"CreateAccount","username":"{name}","password":"pw"}}"#
    ));
    assert_eq!(again.code, Some(ErrorCode::UsernameTaken));

    let login: SellerSession = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::Login(creds(&name, "pw")))
    });
    assert_eq!(login.seller_id, created.seller_id, "the first answer's id");
    let sessions: i64 = customer_db()
        .query_one(
            "SELECT count(*) FROM seller_sessions WHERE seller_id = $1",
            &[&login.seller_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "one session, not one per attempt");
    let sid = login.session_id;

    let registered: wire::response::ItemRegistered = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::RegisterItemForSale(item(
            &sid,
            "mug",
            unique_category(),
            &["mug"],
            2.5,
            10,
        )))
    });
    let items = my_items(&mut api, &sid);
    assert_eq!(items.items.len(), 1, "registered once");
    assert_eq!(items.items[0].item_id, registered.item_id);
    let id = registered.item_id;

    let price: PriceChanged = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::ChangeItemPrice(ChangePrice {
            session_id: sid.clone(),
            item_id: id,
            new_price: 3.25,
        }))
    });
    assert_eq!(price.sale_price, 3.25);

    let units: UnitsUpdated = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::UpdateUnitsForSale(UpdateUnits {
            session_id: sid.clone(),
            item_id: id,
            quantity_change: 3,
        }))
    });
    assert_eq!(units.quantity, 7, "the first answer");
    assert_eq!(
        my_items(&mut api, &sid).items[0].quantity,
        7,
        "3 removed once"
    );

    // Removing the last units: the resend's own attempt would fail (none left),
    // yet it gets the first answer.
    let units: UnitsUpdated = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&S::UpdateUnitsForSale(UpdateUnits {
            session_id: sid.clone(),
            item_id: id,
            quantity_change: 7,
        }))
    });
    assert_eq!(units.quantity, 0);

    let _: Empty = lose_first_reply(&mut api, &proxy, |api| api.ok(&S::Logout(session(&sid))));
    assert_eq!(
        api.err(&S::DisplayItemsForSale(session(&sid).into())),
        ErrorCode::SessionExpired
    );
}

#[test]
fn every_buyer_write_whose_reply_is_lost_happens_once_and_the_resend_gets_the_first_answer() {
    let (mut seller, ssid, _) = new_seller();
    let cat = unique_category();
    let a = register(&mut seller, item(&ssid, "a", cat, &["x"], 1.5, 10));
    let b = register(&mut seller, item(&ssid, "b", cat, &["x"], 2.0, 10));
    let (mut api, proxy) = through_proxy(stack().buyer_addr());
    let name = unique("rb");

    let created: BuyerCreated = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&B::CreateAccount(creds(&name, "pw")))
    });
    let login: BuyerSession = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&B::Login(creds(&name, "pw")))
    });
    assert_eq!(login.buyer_id, created.buyer_id);
    let sessions: i64 = customer_db()
        .query_one(
            "SELECT count(*) FROM buyer_sessions WHERE buyer_id = $1",
            &[&login.buyer_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1);
    let sid = login.session_id;
    let change = |item_id, quantity| CartChange {
        session_id: sid.clone(),
        item_id,
        quantity,
    };

    let cart: CartContents = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&B::AddItemToCart(change(a, 2)))
    });
    assert_eq!(cart.cart_items.get(&a.to_string()), Some(&2));
    assert_eq!(
        cart_lines(&mut api, &sid),
        vec![(a.to_string(), 2)],
        "added once"
    );

    let _: CartContents = api.ok(&B::AddItemToCart(change(b, 3)));
    let cart: CartContents = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&B::RemoveItemFromCart(change(b, 1)))
    });
    assert_eq!(cart.cart_items.get(&b.to_string()), Some(&2));
    assert_eq!(
        cart_lines(&mut api, &sid),
        vec![(a.to_string(), 2), (b.to_string(), 2)],
        "removed once"
    );

    let _: Empty = lose_first_reply(&mut api, &proxy, |api| api.ok(&B::SaveCart(session(&sid))));

    let votes: Votes = lose_first_reply(&mut api, &proxy, |api| {
        api.ok(&B::ProvideFeedback(Feedback {
            session_id: sid.clone(),
            item_id: a,
            feedback: Scalar::Text("up".into()),
        }))
    });
    assert_eq!((votes.thumbs_up, votes.thumbs_down), (1, 0));

    let receipt: PurchaseReceipt =
        lose_first_reply(&mut api, &proxy, |api| api.ok(&B::MakePurchase(card(&sid))));
    assert_eq!(units_of(&mut api, &sid, a), 8, "stock taken once");
    assert_eq!(units_of(&mut api, &sid, b), 8, "stock taken once");
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert_eq!(history.purchases.len(), 2, "one purchase of two lines");
    assert!(history
        .purchases
        .iter()
        .all(|p| p.purchase_id == receipt.purchase_id));
    assert_eq!(receipt.total, 2.0 * 1.5 + 2.0 * 2.0);
    let names: Vec<&str> = receipt.lines.iter().map(|l| l.item_name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "the resend's receipt names the items");
    let names: Vec<&str> = history
        .purchases
        .iter()
        .map(|p| p.item_name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "the history names the items");

    let _: CartContents = api.ok(&B::AddItemToCart(change(a, 1)));
    let _: Empty = lose_first_reply(&mut api, &proxy, |api| api.ok(&B::ClearCart(session(&sid))));
    assert!(cart_lines(&mut api, &sid).is_empty());

    let _: Empty = lose_first_reply(&mut api, &proxy, |api| api.ok(&B::Logout(session(&sid))));
    assert_eq!(
        api.err(&B::DisplayCart(session(&sid))),
        ErrorCode::SessionExpired
    );
}

/// The `name` field of each racing attempt's answer. An attempt that met
/// another still running may be told to retry (PROTOCOL.md: it "waits for it
/// or gets `UNAVAILABLE`"); it then resends, as a client would, and must get
/// the first attempt's answer.
fn settle(
    addr: SocketAddr,
    json: &str,
    answers: &[wire::Response<simd_json::OwnedValue>],
    name: &str,
) -> Vec<i64> {
    answers
        .iter()
        .map(|r| {
            if r.status == Status::Ok {
                return field(r, name);
            }
            assert!(
                r.code.is_some_and(ErrorCode::is_retryable),
                "a racing attempt is answered or told to retry: {:?}: {}",
                r.code,
                r.message
            );
            field(&Api::connect(addr).raw(json), name)
        })
        .collect()
}

/// Sends `json` on `n` connections at once; returns every answer.
fn race(addr: SocketAddr, n: usize, json: &str) -> Vec<wire::Response<simd_json::OwnedValue>> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, json) = (barrier.clone(), json.to_owned());
            std::thread::spawn(move || {
                let mut api = Api::connect(addr);
                barrier.wait();
                api.raw(&json)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn field(r: &wire::Response<simd_json::OwnedValue>, name: &str) -> i64 {
    use simd_json::prelude::*;
    r.body
        .as_ref()
        .and_then(|b| b.get(name))
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| panic!("no {name} in {:?} ({:?}: {})", r.body, r.code, r.message))
}

#[test]
fn resends_racing_with_one_key_have_one_effect_and_one_answer() {
    let (mut seller, ssid, _) = new_seller();
    let cat = unique_category();
    let register = format!(
        r#"{{"operation":"RegisterItemForSale","idempotency_key":"race-1","session_id":"{ssid}",
            "item_name":"raced","category":{cat},"keywords":[],"condition":"New",
            "sale_price":1,"quantity":5}}"#
    );
    let answers = race(stack().seller_addr(), 8, &register);
    let ids = settle(stack().seller_addr(), &register, &answers, "item_id");
    assert!(ids.iter().all(|&id| id == ids[0]), "one answer: {ids:?}");
    assert_eq!(my_items(&mut seller, &ssid).items.len(), 1, "one item");

    // Eight attempts at one purchase: stock is taken once, one receipt.
    let (mut buyer, bsid, _, _) = new_buyer();
    add_to_cart(&mut buyer, &bsid, ids[0], 2);
    let purchase = purchase_json(&bsid, "race-2");
    let answers = race(stack().buyer_addr(), 8, &purchase);
    let ids = settle(stack().buyer_addr(), &purchase, &answers, "purchase_id");
    assert!(ids.iter().all(|&id| id == ids[0]), "one receipt: {ids:?}");
    assert_eq!(units_of(&mut buyer, &bsid, ids_item(&mut seller, &ssid)), 3);
    let history: PurchaseHistory = buyer.ok(&B::GetBuyerPurchases(session(&bsid)));
    assert_eq!(history.purchases.len(), 1);
}

fn ids_item(api: &mut Api, sid: &str) -> i64 {
    my_items(api, sid).items[0].item_id
}

#[test]
fn a_key_reused_for_a_different_request_is_refused_and_changes_nothing() {
    let (mut api, sid, _) = new_seller();
    let cat = unique_category();
    let register = |name: &str, key: &str| {
        format!(
            r#"{{"operation":"RegisterItemForSale","idempotency_key":"{key}","session_id":"{sid}",
                "item_name":"{name}","category":{cat},"keywords":[],"condition":"New",
                "sale_price":1,"quantity":5}}"#
        )
    };
    let first = api.raw(&register("one", "k-1"));
    assert_eq!(first.status, Status::Ok);
    let id = field(&first, "item_id");
    let other = api.raw(&register("two", "k-1"));
    assert_eq!(
        other.code,
        Some(ErrorCode::InvalidArgument),
        "{}",
        other.message
    );
    assert!(
        other.message.contains("idempotency_key"),
        "{}",
        other.message
    );
    let other_op = api.raw(&format!(
        r#"{{"operation":"ChangeItemPrice","idempotency_key":"k-1","session_id":"{sid}","item_id":{id},"new_price":9}}"#
    ));
    assert_eq!(other_op.code, Some(ErrorCode::InvalidArgument));
    let items = my_items(&mut api, &sid);
    assert_eq!(items.items.len(), 1);
    assert_eq!(
        items.items[0].sale_price, 1.0,
        "the refused change did nothing"
    );

    // The same key from another seller is that seller's own.
    let (mut api2, sid2, _) = new_seller();
    let theirs = api2.raw(&register("one", "k-1").replace(&sid, &sid2));
    assert_eq!(theirs.status, Status::Ok);
    assert_ne!(field(&theirs, "item_id"), id);

    // A purchase under a key already used for a cart change is refused too.
    let (mut buyer, bsid, _, _) = new_buyer();
    let add = buyer.raw(&format!(
        r#"{{"operation":"AddItemToCart","idempotency_key":"k-2","session_id":"{bsid}","item_id":{id},"quantity":1}}"#
    ));
    assert_eq!(add.status, Status::Ok);
    let buy = buyer.raw(&purchase_json(&bsid, "k-2"));
    assert_eq!(buy.code, Some(ErrorCode::InvalidArgument));
    assert_eq!(units_of(&mut buyer, &bsid, id), 5, "nothing bought");
}

#[test]
fn malformed_keys_are_refused_and_requests_without_a_key_behave_as_before() {
    let (mut api, sid, _) = new_seller();
    for (key, code) in [
        (r#""""#.to_owned(), ErrorCode::InvalidArgument),
        (
            format!("\"{}\"", "k".repeat(65)),
            ErrorCode::InvalidArgument,
        ),
        ("42".to_owned(), ErrorCode::BadRequest),
    ] {
        let r = api.raw(&format!(
            r#"{{"operation":"DisplayItemsForSale","idempotency_key":{key},"session_id":"{sid}"}}"#
        ));
        assert_eq!(r.code, Some(code), "key {key}: {}", r.message);
    }
    let longest = api.raw(&format!(
        r#"{{"operation":"DisplayItemsForSale","idempotency_key":"{}","session_id":"{sid}"}}"#,
        "é".repeat(64)
    ));
    assert_eq!(longest.status, Status::Ok, "64 characters is allowed");
    // No key: each request is its own, as for clients that predate keys.
    let cat = unique_category();
    let json = format!(
        r#"{{"operation":"RegisterItemForSale","session_id":"{sid}","item_name":"n",
            "category":{cat},"keywords":[],"condition":"New","sale_price":1,"quantity":5}}"#
    );
    assert_eq!(api.raw(&json).status, Status::Ok);
    assert_eq!(api.raw(&json).status, Status::Ok);
    assert_eq!(my_items(&mut api, &sid).items.len(), 2);
}

#[test]
fn a_key_older_than_the_retention_is_forgotten() {
    let (mut api, sid, seller_id) = new_seller();
    let cat = unique_category();
    let json = format!(
        r#"{{"operation":"RegisterItemForSale","idempotency_key":"old-1","session_id":"{sid}",
            "item_name":"n","category":{cat},"keywords":[],"condition":"New","sale_price":1,"quantity":5}}"#
    );
    let first = field(&api.raw(&json), "item_id");
    assert_eq!(field(&api.raw(&json), "item_id"), first, "remembered");
    let aged = product_db()
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
              WHERE scope = $1 AND key = 'old-1'",
            &[&format!("seller:{seller_id}")],
        )
        .unwrap();
    assert_eq!(aged, 1);
    let store = Store::open(&DbSettings {
        pool_size: 1,
        ..stack().db().clone()
    })
    .unwrap();
    assert!(store.sweep_idempotency_keys().unwrap() >= 1);
    let later = field(&api.raw(&json), "item_id");
    assert_ne!(later, first, "a new request after the retention");
    assert_eq!(my_items(&mut api, &sid).items.len(), 2);
}
