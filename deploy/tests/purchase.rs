//! MakePurchase: all or nothing across both databases, never overselling, and
//! the protocol's errors changing nothing.

mod support;

use std::sync::{Arc, Barrier};
use support::*;
use wire::buyer::Request as B;
use wire::request::{Scalar, SellerRef};
use wire::response::{BuyerSession, Empty, PurchaseHistory, PurchaseReceipt, SellerRating};
use wire::ErrorCode;

fn checkout(sid: &str) -> B {
    B::MakePurchase(card(sid))
}

#[test]
fn a_purchase_buys_the_whole_cart_at_current_prices_and_empties_both_carts() {
    let (mut s1, sid1, seller1) = new_seller();
    let (mut s2, sid2, seller2) = new_seller();
    let cat = unique_category();
    let mug = register(&mut s1, item(&sid1, "mug", cat, &[], 2.5, 10));
    let lamp = register(&mut s2, item(&sid2, "lamp", cat, &[], 10.0, 3));
    let (mut api, sid, _, name) = new_buyer();
    add_to_cart(&mut api, &sid, mug, 4);
    add_to_cart(&mut api, &sid, lamp, 1);
    let _: Empty = api.ok(&B::SaveCart(session(&sid)));
    // The price at purchase time counts, not the price when added.
    let _: wire::response::PriceChanged = s1.ok(&wire::seller::Request::ChangeItemPrice(
        wire::request::ChangePrice {
            session_id: sid1.clone(),
            item_id: mug,
            new_price: 3.0,
        },
    ));
    let r: PurchaseReceipt = api.ok(&checkout(&sid));
    assert_eq!(r.total, 4.0 * 3.0 + 10.0);
    let mut lines: Vec<(i64, i64, f64)> = r
        .lines
        .iter()
        .map(|l| (l.item_id, l.quantity, l.unit_price))
        .collect();
    lines.sort_by_key(|l| l.0);
    assert_eq!(lines, vec![(mug, 4, 3.0), (lamp, 1, 10.0)]);
    assert_eq!(
        (
            units_of(&mut api, &sid, mug),
            units_of(&mut api, &sid, lamp)
        ),
        (6, 2)
    );
    assert!(
        cart_lines(&mut api, &sid).is_empty(),
        "the active cart is emptied"
    );
    let later: BuyerSession = api.ok(&B::Login(creds(&name, "pw")));
    assert!(
        cart_lines(&mut api, &later.session_id).is_empty(),
        "the saved cart too"
    );
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert_eq!(history.purchases.len(), 2);
    assert!(history
        .purchases
        .iter()
        .all(|p| p.purchase_id == r.purchase_id));
    for (seller, sold) in [(seller1, 4), (seller2, 1)] {
        let rating: SellerRating = api.ok(&B::GetSellerRating(SellerRef {
            session_id: sid.clone(),
            seller_id: seller,
        }));
        assert_eq!(rating.items_sold, sold);
    }
    assert_eq!(api.err(&checkout(&sid)), ErrorCode::CartEmpty);
}

#[test]
fn a_refused_purchase_changes_nothing() {
    let (mut seller, ssid, _) = new_seller();
    let id = register(
        &mut seller,
        item(&ssid, "x", unique_category(), &[], 1.0, 5),
    );
    let (mut api, sid, _, _) = new_buyer();
    add_to_cart(&mut api, &sid, id, 3);
    let mut bad = checkout(&sid);
    if let B::MakePurchase(c) = &mut bad {
        c.card_number = Scalar::Text("4111111111111112".into());
    }
    assert_eq!(api.err(&bad), ErrorCode::PaymentDeclined);
    // Stock runs short between adding and buying.
    let _: wire::response::UnitsUpdated = seller.ok(&wire::seller::Request::UpdateUnitsForSale(
        wire::request::UpdateUnits {
            session_id: ssid,
            item_id: id,
            quantity_change: 3,
        },
    ));
    assert_eq!(api.err(&checkout(&sid)), ErrorCode::InsufficientStock);
    assert_eq!(units_of(&mut api, &sid, id), 2);
    assert_eq!(cart_lines(&mut api, &sid), vec![(id.to_string(), 3)]);
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert!(history.purchases.is_empty());
    assert_eq!(api.err(&checkout("expired")), ErrorCode::SessionExpired);
}

#[test]
fn concurrent_buyers_never_oversell() {
    let (mut seller, ssid, seller_id) = new_seller();
    let id = register(
        &mut seller,
        item(&ssid, "rare", unique_category(), &[], 5.0, 10),
    );
    let buyers: Vec<(Api, String)> = (0..20)
        .map(|_| {
            let (mut api, sid, _, _) = new_buyer();
            add_to_cart(&mut api, &sid, id, 1);
            (api, sid)
        })
        .collect();
    let barrier = Arc::new(Barrier::new(buyers.len()));
    let outcomes: Vec<Option<ErrorCode>> = buyers
        .into_iter()
        .map(|(mut api, sid)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r: wire::Response<PurchaseReceipt> = api.call(&checkout(&sid));
                r.code
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let bought = outcomes.iter().filter(|c| c.is_none()).count();
    let short = outcomes
        .iter()
        .filter(|c| **c == Some(ErrorCode::InsufficientStock))
        .count();
    assert_eq!((bought, short), (10, 10), "{outcomes:?}");
    let rating: SellerRating = seller.ok(&wire::seller::Request::GetSellerRating(session(&ssid)));
    assert_eq!((rating.seller_id, rating.items_sold), (seller_id, 10));
    let items: wire::response::ItemList = seller.ok(&wire::seller::Request::DisplayItemsForSale(
        session(&ssid).into(),
    ));
    assert!(items.items.is_empty(), "sold out, not below zero");
}
