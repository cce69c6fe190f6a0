//! Writes that must not race: concurrent unit updates and concurrent votes.

mod support;

use std::sync::{Arc, Barrier};
use support::*;
use wire::buyer::Request as B;
use wire::request::{Feedback, ItemRef, Scalar, UpdateUnits};
use wire::response::{Empty, ItemDetail, ItemList, SellerRating, UnitsUpdated};
use wire::seller::Request as S;
use wire::ErrorCode;

#[test]
fn a_hundred_threads_removing_units_never_lose_an_update_nor_go_below_zero() {
    let (mut api, sid, _) = new_seller();
    let item_id = register(
        &mut api,
        item(&sid, "hot", unique_category(), &[], 1.0, 150),
    );
    let barrier = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (sid, barrier) = (sid.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut api = Api::seller();
                barrier.wait();
                let (mut ok, mut short) = (0, 0);
                for _ in 0..2 {
                    let r: wire::Response<UnitsUpdated> =
                        api.call(&S::UpdateUnitsForSale(UpdateUnits {
                            session_id: sid.clone(),
                            item_id,
                            quantity_change: 1,
                        }));
                    match r.code {
                        None => {
                            let left = r.body.expect("a count").quantity;
                            assert!((0..150).contains(&left), "{left}");
                            ok += 1;
                        }
                        Some(ErrorCode::InsufficientStock) => short += 1,
                        Some(other) => panic!("unexpected {other}"),
                    }
                }
                (ok, short)
            })
        })
        .collect();
    let (ok, short) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    assert_eq!((ok, short), (150, 50), "exactly the 150 units were removed");
    let list: ItemList = api.ok(&S::DisplayItemsForSale(session(&sid).into()));
    assert!(list.items.is_empty(), "the item is sold out");
    let back: UnitsUpdated = api.ok(&S::UpdateUnitsForSale(UpdateUnits {
        session_id: sid.clone(),
        item_id,
        quantity_change: -1,
    }));
    assert_eq!(
        back.quantity, 1,
        "the count is exactly zero before adding one"
    );
}

#[test]
fn a_hundred_buyers_voting_at_once_leave_exact_counts() {
    let (mut seller, ssid, seller_id) = new_seller();
    let item_id = register(
        &mut seller,
        item(&ssid, "judged", unique_category(), &[], 1.0, 1),
    );
    let other_item = register(
        &mut seller,
        item(&ssid, "other", unique_category(), &[], 1.0, 1),
    );
    let buyers: Vec<(Api, String)> = (0..100)
        .map(|_| {
            let (api, sid, _, _) = new_buyer();
            (api, sid)
        })
        .collect();
    let barrier = Arc::new(Barrier::new(buyers.len()));
    let threads: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, (mut api, sid))| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                // Everyone first votes up on both items, then buyers 0..40 change
                // their mind on the first: 60 up and 40 down in the end.
                for target in [item_id, other_item] {
                    let _: wire::response::Votes = api.ok(&B::ProvideFeedback(Feedback {
                        session_id: sid.clone(),
                        item_id: target,
                        feedback: Scalar::Int(1),
                    }));
                }
                if i < 40 {
                    let _: wire::response::Votes = api.ok(&B::ProvideFeedback(Feedback {
                        session_id: sid.clone(),
                        item_id,
                        feedback: Scalar::Text("down".into()),
                    }));
                }
                let _: Empty = api.ok(&B::Logout(session(&sid)));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (mut buyer, bsid, _, _) = new_buyer();
    let detail: ItemDetail = buyer.ok(&B::GetItem(ItemRef {
        session_id: bsid.clone(),
        item_id,
    }));
    assert_eq!((detail.item.thumbs_up, detail.item.thumbs_down), (60, 40));
    let rating: SellerRating = seller.ok(&S::GetSellerRating(session(&ssid)));
    assert_eq!(
        (rating.seller_id, rating.thumbs_up, rating.thumbs_down),
        (seller_id, 160, 40)
    );
}
