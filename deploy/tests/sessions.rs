//! Session lifetime with a short timeout: expiry, renewal by activity, the
//! periodic sweep, and sessions of one side refused by the other.

mod support;

use deploy::testing::shared_stack;
use std::time::Duration;
use support::*;
use wire::buyer::Request as B;
use wire::response::{CartContents, ItemList, SellerRating};
use wire::seller::Request as S;
use wire::ErrorCode;

const TIMEOUT: Duration = Duration::from_secs(2);

fn short_sessions() {
    shared_stack(|c| c.session_timeout = TIMEOUT);
}

#[test]
fn a_session_expires_after_the_timeout_without_requests() {
    short_sessions();
    let (mut seller, ssid, _) = new_seller();
    let (mut buyer, bsid, _, _) = new_buyer();
    std::thread::sleep(TIMEOUT + Duration::from_millis(600));
    assert_eq!(
        seller.err(&S::DisplayItemsForSale(session(&ssid).into())),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        buyer.err(&B::DisplayCart(session(&bsid))),
        ErrorCode::SessionExpired
    );
    // Expired stays expired, even though the request above touched it.
    assert_eq!(
        buyer.err(&B::DisplayCart(session(&bsid))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn every_request_renews_the_session() {
    short_sessions();
    let (mut seller, ssid, _) = new_seller();
    let (mut buyer, bsid, _, _) = new_buyer();
    // Four timeouts long, never idle for more than a third of one.
    for _ in 0..12 {
        std::thread::sleep(TIMEOUT / 3);
        let _: ItemList = seller.ok(&S::DisplayItemsForSale(session(&ssid).into()));
        let _: CartContents = buyer.ok(&B::DisplayCart(session(&bsid)));
    }
    let _: SellerRating = seller.ok(&S::GetSellerRating(session(&ssid)));
}

#[test]
fn expired_sessions_are_swept_from_the_database_and_their_carts_with_them() {
    short_sessions();
    let stack = shared_stack(|_| {});
    let (mut seller, ssid, _) = new_seller();
    let item_id = register(
        &mut seller,
        item(&ssid, "x", unique_category(), &[], 1.0, 5),
    );
    let (mut buyer, bsid, _, _) = new_buyer();
    let _: CartContents = buyer.ok(&wire::buyer::Request::AddItemToCart(
        wire::request::CartChange {
            session_id: bsid.clone(),
            item_id,
            quantity: 1,
        },
    ));
    let mut db = postgres::Client::connect(&stack.db().customer_url, postgres::NoTls).unwrap();
    let count = |db: &mut postgres::Client, sql: &str| -> i64 {
        db.query_one(sql, &[&bsid]).unwrap().get(0)
    };
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM buyer_sessions WHERE session_id::text = $1"
        ),
        1
    );
    // The sweep runs every second with a 2 s timeout; nobody touches the session.
    std::thread::sleep(TIMEOUT + Duration::from_millis(2500));
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM buyer_sessions WHERE session_id::text = $1"
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM active_carts WHERE session_id::text = $1"
        ),
        0
    );
}

#[test]
fn a_seller_session_is_refused_by_the_buyer_server_and_vice_versa() {
    short_sessions();
    let (mut seller, ssid, _) = new_seller();
    let (mut buyer, bsid, _, _) = new_buyer();
    assert_eq!(
        buyer.err(&B::DisplayCart(session(&ssid))),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        seller.err(&S::DisplayItemsForSale(session(&bsid).into())),
        ErrorCode::SessionExpired
    );
    // Neither refusal ended the real session on its own side.
    let _: ItemList = seller.ok(&S::DisplayItemsForSale(session(&ssid).into()));
    let _: CartContents = buyer.ok(&B::DisplayCart(session(&bsid)));
}
