//! A purchase interrupted at any step is settled by recovery: cancelled if it
//! took no stock, finished exactly once if it did. In a binary of its own,
//! because recovery settles every pending purchase of the database, and its
//! tests take turns for the same reason.

mod support;

use std::sync::Mutex;
use std::time::Duration;
use store::purchase::Taking;
use store::{DbSettings, Store};
use support::*;
use wire::buyer::Request as B;
use wire::request::SellerRef;
use wire::response::{PurchaseHistory, SellerRating};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn store() -> Store {
    Store::open(&DbSettings {
        pool_size: 2,
        ..stack().db().clone()
    })
    .unwrap()
}

/// A buyer with 2 of a new item of 5 units in the cart: (api, session, item).
fn two_in_the_cart(name: &str, price: f64) -> (Api, String, i64) {
    let (mut seller, ssid, _) = new_seller();
    let id = register(
        &mut seller,
        item(&ssid, name, unique_category(), &[], price, 5),
    );
    let (mut api, sid, _, _) = new_buyer();
    add_to_cart(&mut api, &sid, id, 2);
    (api, sid, id)
}

#[test]
fn a_purchase_interrupted_before_taking_stock_is_cancelled_by_recovery() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut api, sid, id) = two_in_the_cart("x", 1.0);
    let store = store();
    let begun = store
        .begin_purchase(store::SessionId::parse(&sid).unwrap(), None)
        .unwrap();
    // The server dies here. Recovery (with no age limit) settles the purchase.
    assert!(store.recover_purchases(Duration::ZERO).unwrap().total() >= 1);
    assert_eq!(units_of(&mut api, &sid, id), 5, "nothing was taken");
    assert_eq!(
        cart_lines(&mut api, &sid),
        vec![(id.to_string(), 2)],
        "the cart is kept"
    );
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert!(history.purchases.is_empty());
    // The interrupted server, coming back to it, can no longer take stock.
    assert_eq!(store.take_stock(&begun).unwrap(), Taking::Fenced);
    assert_eq!(units_of(&mut api, &sid, id), 5);
}

#[test]
fn a_purchase_interrupted_after_taking_stock_is_finished_by_recovery_exactly_once() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut api, sid, id) = two_in_the_cart("x", 2.0);
    let store = store();
    let begun = store
        .begin_purchase(store::SessionId::parse(&sid).unwrap(), None)
        .unwrap();
    let Taking::Taken(lines) = store.take_stock(&begun).unwrap() else {
        panic!("stock not taken");
    };
    // Taking again (a retry) changes nothing.
    assert_eq!(
        store.take_stock(&begun).unwrap(),
        Taking::Taken(lines.clone())
    );
    assert_eq!(units_of(&mut api, &sid, id), 3);
    // The server dies before finishing: the history does not show it yet.
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert!(history.purchases.is_empty());
    store.recover_purchases(Duration::ZERO).unwrap();
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert_eq!(history.purchases.len(), 1);
    assert_eq!(
        (history.purchases[0].item_id, history.purchases[0].quantity),
        (id, 2)
    );
    assert!(cart_lines(&mut api, &sid).is_empty());
    // Finishing again (the interrupted server resuming) changes nothing.
    assert_eq!(
        store.finish_purchase(begun.purchase_id, &lines).unwrap(),
        400
    );
    assert_eq!(units_of(&mut api, &sid, id), 3);
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert_eq!(history.purchases.len(), 1);
    let rating: SellerRating = api.ok(&B::GetSellerRating(SellerRef {
        session_id: sid.clone(),
        seller_id: lines[0].seller_id,
    }));
    assert_eq!(rating.items_sold, 2, "counted once");
}

#[test]
fn a_resend_of_a_purchase_that_recovery_finished_gets_its_receipt_and_buys_nothing_more() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut api, sid, id) = two_in_the_cart("kept name", 2.5);
    // The first attempt, with its key, dies after taking stock.
    let store = store();
    let begun = store
        .begin_purchase(store::SessionId::parse(&sid).unwrap(), Some("buy-once"))
        .unwrap();
    assert!(matches!(
        store.take_stock(&begun).unwrap(),
        Taking::Taken(_)
    ));
    store.recover_purchases(Duration::ZERO).unwrap();
    // The client, reconnected, resends with the same key.
    let resend = api.raw(&purchase_json(&sid, "buy-once"));
    assert_eq!(resend.status, wire::Status::Ok, "{}", resend.message);
    let body = resend.body.expect("a receipt");
    let receipt: wire::response::PurchaseReceipt =
        simd_json::serde::from_owned_value(body).expect("a receipt");
    assert_eq!(receipt.purchase_id, begun.purchase_id, "the first purchase");
    assert_eq!(receipt.total, 5.0);
    assert_eq!(receipt.lines.len(), 1);
    assert_eq!(
        (receipt.lines[0].item_id, receipt.lines[0].quantity),
        (id, 2)
    );
    assert_eq!(receipt.lines[0].item_name, "kept name");
    assert_eq!(units_of(&mut api, &sid, id), 3, "stock taken once");
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert_eq!(history.purchases.len(), 1);
}
