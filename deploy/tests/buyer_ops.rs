//! Every buyer operation over TCP against real PostgreSQL: success, each error
//! code, and the search, cart and feedback semantics of PROTOCOL.md.

mod support;

use support::*;
use wire::buyer::Request as B;
use wire::request::{
    CartChange, Checkout, Feedback, ItemRef, NoFields, Scalar, Search, SellerRef, UpdateUnits,
};
use wire::response::{
    BuyerSession, CartContents, Empty, ItemDetail, Pong, PurchaseHistory, SearchResults,
    SellerRating, UnitsUpdated, Votes,
};
use wire::seller::Request as S;
use wire::ErrorCode;

fn search(
    sid: &str,
    category: i64,
    keywords: &[&str],
    limit: Option<i64>,
    offset: Option<i64>,
) -> B {
    B::SearchItemsForSale(Search {
        session_id: sid.into(),
        category,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        limit,
        offset,
    })
}

fn ids(results: &SearchResults) -> Vec<i64> {
    results.items.iter().map(|i| i.item_id).collect()
}

fn add(sid: &str, item_id: i64, quantity: i64) -> B {
    B::AddItemToCart(CartChange {
        session_id: sid.into(),
        item_id,
        quantity,
    })
}

fn remove(sid: &str, item_id: i64, quantity: i64) -> B {
    B::RemoveItemFromCart(CartChange {
        session_id: sid.into(),
        item_id,
        quantity,
    })
}

fn vote(sid: &str, item_id: i64, feedback: Scalar) -> B {
    B::ProvideFeedback(Feedback {
        session_id: sid.into(),
        item_id,
        feedback,
    })
}

fn cart(entries: &[(i64, i64)]) -> CartContents {
    CartContents {
        cart_items: entries.iter().map(|(i, q)| (i.to_string(), *q)).collect(),
    }
}

#[test]
fn ping_answers_without_a_session() {
    let pong: Pong = Api::buyer().ok(&B::Ping(NoFields {}));
    assert_eq!((pong.server.as_str(), pong.version), ("buyer", 1));
}

#[test]
fn buyer_accounts_logins_and_logouts() {
    let mut api = Api::buyer();
    let name = unique("acct");
    let _: wire::response::BuyerCreated = api.ok(&B::CreateAccount(creds(&name, "pw")));
    assert_eq!(
        api.err(&B::CreateAccount(creds(&name, "pw"))),
        ErrorCode::UsernameTaken
    );
    assert_eq!(
        api.err(&B::CreateAccount(creds("", "pw"))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&B::Login(creds(&name, "nope"))),
        ErrorCode::AuthFailed
    );
    assert_eq!(
        api.err(&B::Login(creds(&unique("ghost"), "pw"))),
        ErrorCode::AuthFailed
    );
    let login: BuyerSession = api.ok(&B::Login(creds(&name, "pw")));
    let _: Empty = api.ok(&B::Logout(session(&login.session_id)));
    let _: Empty = api.ok(&B::Logout(session(&login.session_id)));
    assert_eq!(
        api.err(&B::DisplayCart(session(&login.session_id))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn search_without_keywords_lists_the_category_newest_first_without_sold_out_items() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let category = unique_category();
    let a = register(&mut seller, item(&ssid, "a", category, &["x"], 1.0, 1));
    let b = register(&mut seller, item(&ssid, "b", category, &[], 1.0, 2));
    let _sold_out = register(&mut seller, item(&ssid, "c", category, &["x"], 1.0, 0));
    let elsewhere = unique_category();
    let _elsewhere = register(&mut seller, item(&ssid, "d", elsewhere, &["x"], 1.0, 5));
    let r: SearchResults = api.ok(&search(&sid, category, &[], None, None));
    assert_eq!(ids(&r), vec![b, a]);
    assert_eq!(r.total, 2);
}

#[test]
fn search_with_keywords_matches_any_keyword_case_insensitively_and_ranks() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let (mut voter, vsid, _, _) = new_buyer();
    let category = unique_category();
    let one = register(&mut seller, item(&ssid, "one", category, &["red"], 1.0, 1));
    let two = register(
        &mut seller,
        item(&ssid, "two", category, &["Red", "mug"], 1.0, 1),
    );
    let three = register(
        &mut seller,
        item(&ssid, "three", category, &["red", "mug", "big"], 1.0, 1),
    );
    let liked = register(
        &mut seller,
        item(&ssid, "liked", category, &["mug"], 1.0, 1),
    );
    let _none = register(
        &mut seller,
        item(&ssid, "none", category, &["blue"], 1.0, 1),
    );
    let _partial = register(
        &mut seller,
        item(&ssid, "partial", category, &["redmug"], 1.0, 1),
    );
    let _: Votes = voter.ok(&vote(&vsid, liked, Scalar::Int(1)));
    let _: Votes = voter.ok(&vote(&vsid, one, Scalar::Int(0)));
    let r: SearchResults = api.ok(&search(&sid, category, &["MUG", "red", "big"], None, None));
    // three matches 3; two matches 2; then one match each, by score: liked (+1), one (-1).
    assert_eq!(ids(&r), vec![three, two, liked, one]);
    assert_eq!(r.total, 4);
    let r: SearchResults = api.ok(&search(&sid, category, &["mug"], None, None));
    // All match once; liked has the best score, then by id.
    assert_eq!(ids(&r), vec![liked, two, three]);
    let r: SearchResults = api.ok(&search(&sid, category, &["nothing"], None, None));
    assert!(r.items.is_empty());
    assert_eq!(r.total, 0);
}

#[test]
fn search_pages_through_the_ranking_and_counts_every_match() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let category = unique_category();
    let all: Vec<i64> = (0..7)
        .map(|i| {
            register(
                &mut seller,
                item(&ssid, &format!("i{i}"), category, &["k"], 1.0, 1),
            )
        })
        .collect();
    for keywords in [&[][..], &["k"][..]] {
        let mut seen = Vec::new();
        for page in 0..4 {
            let r: SearchResults =
                api.ok(&search(&sid, category, keywords, Some(2), Some(page * 2)));
            assert_eq!(r.total, 7);
            seen.extend(ids(&r));
        }
        let mut expected = all.clone();
        if keywords.is_empty() {
            expected.reverse();
        }
        assert_eq!(seen, expected, "keywords {keywords:?}");
        let past: SearchResults = api.ok(&search(&sid, category, keywords, Some(5), Some(100)));
        assert!(past.items.is_empty());
        assert_eq!(past.total, 7, "total is known even past the last page");
    }
    assert_eq!(
        api.err(&search(&sid, category, &[], Some(0), None)),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&search(&sid, category, &[], Some(501), None)),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&search(&sid, category, &[], None, Some(-1))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&search(
            &sid,
            category,
            &["a", "b", "c", "d", "e", "f"],
            None,
            None
        )),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&search(&sid, -3, &[], None, None)),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&search("expired", category, &[], None, None)),
        ErrorCode::SessionExpired
    );
}

#[test]
fn a_sold_out_item_leaves_search_and_comes_back_when_restocked() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let category = unique_category();
    let id = register(&mut seller, item(&ssid, "x", category, &["k"], 1.0, 1));
    let units = |change| {
        S::UpdateUnitsForSale(UpdateUnits {
            session_id: ssid.clone(),
            item_id: id,
            quantity_change: change,
        })
    };
    let _: UnitsUpdated = seller.ok(&units(1));
    let r: SearchResults = api.ok(&search(&sid, category, &["k"], None, None));
    assert_eq!(r.total, 0);
    let _: UnitsUpdated = seller.ok(&units(-3));
    let r: SearchResults = api.ok(&search(&sid, category, &["k"], None, None));
    assert_eq!(ids(&r), vec![id]);
}

#[test]
fn get_item_returns_the_item_or_not_found() {
    let (mut seller, ssid, seller_id) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let id = register(
        &mut seller,
        item(&ssid, "Widget", unique_category(), &["w"], 2.5, 3),
    );
    let r: ItemDetail = api.ok(&B::GetItem(ItemRef {
        session_id: sid.clone(),
        item_id: id,
    }));
    assert_eq!(
        (r.item.item_id, r.item.item_name.as_str(), r.item.sale_price),
        (id, "Widget", 2.5)
    );
    assert_eq!(r.item.seller_id, seller_id);
    assert_eq!(
        api.err(&B::GetItem(ItemRef {
            session_id: sid.clone(),
            item_id: i64::MAX
        })),
        ErrorCode::NotFound
    );
    assert_eq!(
        api.err(&B::GetItem(ItemRef {
            session_id: "x".into(),
            item_id: id
        })),
        ErrorCode::SessionExpired
    );
}

#[test]
fn cart_add_remove_display_with_stock_limits() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let category = unique_category();
    let a = register(&mut seller, item(&ssid, "a", category, &[], 1.0, 5));
    let b = register(&mut seller, item(&ssid, "b", category, &[], 1.0, 1));
    let empty: CartContents = api.ok(&B::DisplayCart(session(&sid)));
    assert_eq!(empty, cart(&[]));
    let c: CartContents = api.ok(&add(&sid, a, 2));
    assert_eq!(c, cart(&[(a, 2)]));
    let c: CartContents = api.ok(&add(&sid, a, 3));
    assert_eq!(c, cart(&[(a, 5)]));
    assert_eq!(
        api.err(&add(&sid, a, 1)),
        ErrorCode::InsufficientStock,
        "6 of 5"
    );
    assert_eq!(
        api.err(&add(&sid, b, 2)),
        ErrorCode::InsufficientStock,
        "2 of 1"
    );
    let c: CartContents = api.ok(&add(&sid, b, 1));
    assert_eq!(c, cart(&[(a, 5), (b, 1)]));
    assert_eq!(api.err(&add(&sid, i64::MAX, 1)), ErrorCode::NotFound);
    assert_eq!(api.err(&add(&sid, a, 0)), ErrorCode::InvalidArgument);
    assert_eq!(api.err(&add("gone", a, 1)), ErrorCode::SessionExpired);
    assert_eq!(
        api.err(&add("gone", i64::MAX, 1)),
        ErrorCode::SessionExpired
    );
    let c: CartContents = api.ok(&remove(&sid, a, 2));
    assert_eq!(c, cart(&[(a, 3), (b, 1)]));
    let c: CartContents = api.ok(&remove(&sid, b, 5));
    assert_eq!(
        c,
        cart(&[(a, 3)]),
        "removing more than held removes the line"
    );
    assert_eq!(
        api.err(&remove(&sid, b, 1)),
        ErrorCode::NotFound,
        "not in the cart"
    );
    assert_eq!(api.err(&remove(&sid, a, -1)), ErrorCode::InvalidArgument);
    let shown: CartContents = api.ok(&B::DisplayCart(session(&sid)));
    assert_eq!(shown, cart(&[(a, 3)]));
}

#[test]
fn saved_cart_is_restored_at_login_and_logout_discards_unsaved_changes() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, name) = new_buyer();
    let category = unique_category();
    let a = register(&mut seller, item(&ssid, "a", category, &[], 1.0, 9));
    let b = register(&mut seller, item(&ssid, "b", category, &[], 1.0, 9));
    let _: CartContents = api.ok(&add(&sid, a, 2));
    let _: Empty = api.ok(&B::SaveCart(session(&sid)));
    let _: CartContents = api.ok(&add(&sid, b, 4));
    let _: Empty = api.ok(&B::Logout(session(&sid)));
    let again: BuyerSession = api.ok(&B::Login(creds(&name, "pw")));
    let restored: CartContents = api.ok(&B::DisplayCart(session(&again.session_id)));
    assert_eq!(restored, cart(&[(a, 2)]), "saved lines only");
    // SaveCart overwrites: the saved cart becomes exactly the active cart.
    let _: CartContents = api.ok(&remove(&again.session_id, a, 2));
    let _: CartContents = api.ok(&add(&again.session_id, b, 1));
    let _: Empty = api.ok(&B::SaveCart(session(&again.session_id)));
    let third: BuyerSession = api.ok(&B::Login(creds(&name, "pw")));
    let restored: CartContents = api.ok(&B::DisplayCart(session(&third.session_id)));
    assert_eq!(restored, cart(&[(b, 1)]));
    assert_eq!(
        api.err(&B::SaveCart(session("nope"))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn clear_cart_empties_the_active_and_the_saved_cart() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, name) = new_buyer();
    let a = register(
        &mut seller,
        item(&ssid, "a", unique_category(), &[], 1.0, 9),
    );
    let _: CartContents = api.ok(&add(&sid, a, 2));
    let _: Empty = api.ok(&B::SaveCart(session(&sid)));
    let _: Empty = api.ok(&B::ClearCart(session(&sid)));
    let now: CartContents = api.ok(&B::DisplayCart(session(&sid)));
    assert_eq!(now, cart(&[]));
    let later: BuyerSession = api.ok(&B::Login(creds(&name, "pw")));
    let restored: CartContents = api.ok(&B::DisplayCart(session(&later.session_id)));
    assert_eq!(restored, cart(&[]));
    assert_eq!(
        api.err(&B::ClearCart(session("nope"))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn two_sessions_of_one_buyer_have_separate_active_carts() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, first, _, name) = new_buyer();
    let a = register(
        &mut seller,
        item(&ssid, "a", unique_category(), &[], 1.0, 9),
    );
    let second: BuyerSession = Api::buyer().ok(&B::Login(creds(&name, "pw")));
    let _: CartContents = api.ok(&add(&first, a, 1));
    let _: CartContents = api.ok(&add(&second.session_id, a, 3));
    let c1: CartContents = api.ok(&B::DisplayCart(session(&first)));
    let c2: CartContents = api.ok(&B::DisplayCart(session(&second.session_id)));
    assert_eq!((c1, c2), (cart(&[(a, 1)]), cart(&[(a, 3)])));
    let _: Empty = api.ok(&B::Logout(session(&first)));
    let c2: CartContents = api.ok(&B::DisplayCart(session(&second.session_id)));
    assert_eq!(c2, cart(&[(a, 3)]), "ending one session leaves the other");
}

#[test]
fn feedback_is_one_replaceable_vote_per_buyer_summed_per_seller() {
    let (mut seller, ssid, seller_id) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let (mut other, osid, _, _) = new_buyer();
    let category = unique_category();
    let a = register(&mut seller, item(&ssid, "a", category, &[], 1.0, 1));
    let b = register(&mut seller, item(&ssid, "b", category, &[], 1.0, 1));
    let v: Votes = api.ok(&vote(&sid, a, Scalar::Int(1)));
    assert_eq!((v.thumbs_up, v.thumbs_down), (1, 0));
    let v: Votes = api.ok(&vote(&sid, a, Scalar::Text("up".into())));
    assert_eq!(
        (v.thumbs_up, v.thumbs_down),
        (1, 0),
        "the same vote twice counts once"
    );
    let v: Votes = api.ok(&vote(&sid, a, Scalar::Text("DOWN".into())));
    assert_eq!(
        (v.thumbs_up, v.thumbs_down),
        (0, 1),
        "a new vote replaces the old"
    );
    let v: Votes = other.ok(&vote(&osid, a, Scalar::Int(0)));
    assert_eq!((v.thumbs_up, v.thumbs_down), (0, 2));
    let _: Votes = other.ok(&vote(&osid, b, Scalar::Int(1)));
    let rating: SellerRating = api.ok(&B::GetSellerRating(SellerRef {
        session_id: sid.clone(),
        seller_id,
    }));
    assert_eq!(
        (rating.thumbs_up, rating.thumbs_down, rating.items_sold),
        (1, 2, 0)
    );
    let own: SellerRating = seller.ok(&S::GetSellerRating(session(&ssid)));
    assert_eq!(own, rating);
    let item: ItemDetail = api.ok(&B::GetItem(ItemRef {
        session_id: sid.clone(),
        item_id: a,
    }));
    assert_eq!((item.item.thumbs_up, item.item.thumbs_down), (0, 2));
    assert_eq!(
        api.err(&vote(&sid, a, Scalar::Int(2))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&vote(&sid, a, Scalar::Text("meh".into()))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        api.err(&vote(&sid, i64::MAX, Scalar::Int(1))),
        ErrorCode::NotFound
    );
    assert_eq!(
        api.err(&vote("x", a, Scalar::Int(1))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn seller_rating_of_an_unknown_seller_is_not_found() {
    let (mut api, sid, _, _) = new_buyer();
    assert_eq!(
        api.err(&B::GetSellerRating(SellerRef {
            session_id: sid,
            seller_id: i64::MAX
        })),
        ErrorCode::NotFound
    );
    assert_eq!(
        api.err(&B::GetSellerRating(SellerRef {
            session_id: "x".into(),
            seller_id: 1
        })),
        ErrorCode::SessionExpired
    );
}

#[test]
fn purchase_history_starts_empty_and_a_bad_card_is_declined() {
    let (mut api, sid, _, _) = new_buyer();
    let history: PurchaseHistory = api.ok(&B::GetBuyerPurchases(session(&sid)));
    assert!(history.purchases.is_empty());
    assert_eq!(
        api.err(&B::GetBuyerPurchases(session("x"))),
        ErrorCode::SessionExpired
    );
    let checkout = |number: &str| {
        B::MakePurchase(Checkout {
            session_id: sid.clone(),
            cardholder_name: "Ann".into(),
            card_number: Scalar::Text(number.into()),
            expiry_month: Scalar::Int(12),
            expiry_year: Scalar::Int(2099),
            security_code: Scalar::Text("123".into()),
        })
    };
    assert_eq!(
        api.err(&checkout("4111111111111112")),
        ErrorCode::PaymentDeclined
    );
    assert_eq!(api.err(&checkout("4111111111111111")), ErrorCode::CartEmpty);
}

#[test]
fn search_counts_exactly_up_to_ten_thousand_then_says_more() {
    let (mut seller, ssid, seller_id) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let cat = unique_category();
    // 10,000 then 10,001 matches, inserted directly: through the API it would
    // take most of a minute.
    let mut db = product_db();
    let insert = "INSERT INTO items (seller_id, category, item_name, keywords, condition,
                                     price_cents, quantity)
                  SELECT $1, $2, 'bulk', ARRAY['many'], 'New', 100, 1
                    FROM generate_series(1, $3::int)";
    db.execute(insert, &[&seller_id, &(cat as i32), &9_999i32])
        .unwrap();
    let last = register(&mut seller, item(&ssid, "last", cat, &["many"], 1.0, 1));
    for keywords in [&[][..], &["many"][..]] {
        let r: SearchResults = api.ok(&search(&sid, cat, keywords, Some(5), None));
        assert_eq!((r.total, r.total_exact), (10_000, true), "{keywords:?}");
    }
    db.execute(insert, &[&seller_id, &(cat as i32), &1i32])
        .unwrap();
    for keywords in [&[][..], &["many"][..]] {
        let r: SearchResults = api.ok(&search(&sid, cat, keywords, Some(5), None));
        assert_eq!((r.total, r.total_exact), (10_000, false), "{keywords:?}");
        assert_eq!(r.items.len(), 5, "the page is still served");
    }
    let newest: SearchResults = api.ok(&search(&sid, cat, &[], Some(1), Some(1)));
    assert_eq!(ids(&newest), vec![last], "paging is unchanged");
    // Several keywords: over the cap as soon as one of them is.
    let r: SearchResults = api.ok(&search(&sid, cat, &["many", "few"], Some(5), None));
    assert_eq!((r.total, r.total_exact, r.items.len()), (10_000, false, 5));
}

#[test]
fn keywords_no_item_shares_rank_and_count_like_any_others() {
    let (mut seller, ssid, _) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let cat = unique_category();
    let p = register(&mut seller, item(&ssid, "p", cat, &["p"], 1.0, 1));
    let q = register(&mut seller, item(&ssid, "q", cat, &["q", "x"], 1.0, 1));
    let r = register(&mut seller, item(&ssid, "r", cat, &["r"], 1.0, 1));
    let _other = register(&mut seller, item(&ssid, "o", cat, &["o"], 1.0, 1));
    let words = ["r", "q", "p", "z"];
    let found: SearchResults = api.ok(&search(&sid, cat, &words, None, None));
    assert_eq!(
        (ids(&found), found.total, found.total_exact),
        (vec![p, q, r], 3, true)
    );
    // Now one item shares two of them: it leads, and the total still counts
    // it once.
    let pq = register(&mut seller, item(&ssid, "pq", cat, &["p", "q"], 1.0, 1));
    let found: SearchResults = api.ok(&search(&sid, cat, &words, None, None));
    assert_eq!((ids(&found), found.total), (vec![pq, p, q, r], 4));
    let page: SearchResults = api.ok(&search(&sid, cat, &words, Some(2), Some(1)));
    assert_eq!(ids(&page), vec![p, q]);
}

#[test]
fn several_keywords_count_their_union_exactly_up_to_ten_thousand() {
    let (_, _, seller_id) = new_seller();
    let (mut api, sid, _, _) = new_buyer();
    let mut db = product_db();
    let insert = "INSERT INTO items (seller_id, category, item_name, keywords, condition,
                                     price_cents, quantity)
                  SELECT $1, $2, 'bulk', $3, 'New', 100, 1 FROM generate_series(1, $4::int)";
    // x on 5,000 + 1,000 items, y on 4,000 + 1,000: no keyword over the
    // cap, and their union is 10,000 exactly, then 10,001.
    let cat = unique_category();
    for (words, n) in [
        (&["x"][..], 5_000i32),
        (&["y"][..], 4_000),
        (&["x", "y"][..], 1_000),
    ] {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        db.execute(insert, &[&seller_id, &(cat as i32), &words, &n])
            .unwrap();
    }
    let union = |api: &mut Api| -> (i64, bool, Vec<i64>) {
        let r: SearchResults = api.ok(&search(&sid, cat, &["y", "x", "z"], Some(3), None));
        (
            r.total,
            r.total_exact,
            r.items.iter().map(|i| i.item_id).collect(),
        )
    };
    let (total, exact, page) = union(&mut api);
    assert_eq!((total, exact), (10_000, true));
    assert_eq!(page.len(), 3);
    db.execute(
        insert,
        &[&seller_id, &(cat as i32), &vec!["y".to_owned()], &1i32],
    )
    .unwrap();
    let (total, exact, again) = union(&mut api);
    assert_eq!((total, exact), (10_000, false));
    assert_eq!(again, page, "the items carrying both come first, unchanged");
}
