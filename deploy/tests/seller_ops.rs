//! Every seller operation over TCP against real PostgreSQL: its success and each
//! error code it can return.

mod support;

use simd_json::prelude::*;
use support::*;
use wire::request::{ChangePrice, NoFields, OwnItems, UpdateUnits};
use wire::response::{
    Condition, Empty, ItemList, ItemRegistered, Pong, PriceChanged, SellerCreated, SellerRating,
    SellerSession, UnitsUpdated,
};
use wire::seller::Request::*;
use wire::ErrorCode;

#[test]
fn ping_answers_without_a_session() {
    let mut api = Api::seller();
    let pong: Pong = api.ok(&Ping(NoFields {}));
    assert_eq!(pong.server, "seller");
    assert_eq!(pong.version, 1);
}

#[test]
fn create_account_then_a_second_one_with_that_username_is_taken() {
    let mut api = Api::seller();
    let name = unique("dup");
    let first: SellerCreated = api.ok(&CreateAccount(creds(&name, "pw")));
    assert!(first.seller_id > 0);
    assert_eq!(
        api.err(&CreateAccount(creds(&name, "other"))),
        ErrorCode::UsernameTaken
    );
    // The same name on the buyer side is a different account space.
    let mut buyer = Api::buyer();
    let _: wire::response::BuyerCreated =
        buyer.ok(&wire::buyer::Request::CreateAccount(creds(&name, "pw")));
}

#[test]
fn create_account_validates_username_and_password_lengths() {
    let mut api = Api::seller();
    for (username, password) in [
        (String::new(), "pw".to_owned()),
        ("u".repeat(33), "pw".to_owned()),
        (unique("v"), String::new()),
        (unique("v"), "p".repeat(73)),
    ] {
        assert_eq!(
            api.err(&CreateAccount(creds(&username, &password))),
            ErrorCode::InvalidArgument,
            "{username:?}/{} bytes",
            password.len()
        );
    }
    let longest = format!("{}{}", unique("L"), "x".repeat(32))
        .chars()
        .take(32)
        .collect::<String>();
    let _: SellerCreated = api.ok(&CreateAccount(creds(&longest, &"p".repeat(72))));
}

#[test]
fn login_succeeds_with_the_right_password_only_and_never_says_which_part_was_wrong() {
    let mut api = Api::seller();
    let name = unique("login");
    let created: SellerCreated = api.ok(&CreateAccount(creds(&name, "right")));
    let login: SellerSession = api.ok(&Login(creds(&name, "right")));
    assert_eq!(login.seller_id, created.seller_id);
    assert_eq!(login.session_id.len(), 36, "a UUID");
    let wrong_password: wire::Response<Empty> = api.call(&Login(creds(&name, "wrong")));
    let unknown_user: wire::Response<Empty> = api.call(&Login(creds(&unique("nobody"), "right")));
    assert_eq!(wrong_password.code, Some(ErrorCode::AuthFailed));
    assert_eq!(unknown_user.code, Some(ErrorCode::AuthFailed));
    assert_eq!(wrong_password.message, unknown_user.message);
}

#[test]
fn each_login_opens_its_own_session() {
    let mut api = Api::seller();
    let name = unique("multi");
    let _: SellerCreated = api.ok(&CreateAccount(creds(&name, "pw")));
    let a: SellerSession = api.ok(&Login(creds(&name, "pw")));
    let b: SellerSession = api.ok(&Login(creds(&name, "pw")));
    assert_ne!(a.session_id, b.session_id);
    let _: Empty = api.ok(&Logout(session(&a.session_id)));
    assert_eq!(
        api.err(&DisplayItemsForSale(session(&a.session_id).into())),
        ErrorCode::SessionExpired
    );
    let _: ItemList = api.ok(&DisplayItemsForSale(session(&b.session_id).into()));
}

#[test]
fn logout_ends_the_session_and_is_idempotent() {
    let (mut api, sid, _) = new_seller();
    let _: Empty = api.ok(&Logout(session(&sid)));
    let _: Empty = api.ok(&Logout(session(&sid)));
    let _: Empty = api.ok(&Logout(session("not even a uuid")));
    assert_eq!(
        api.err(&GetSellerRating(session(&sid))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn any_string_that_is_not_a_live_session_is_session_expired() {
    let mut api = Api::seller();
    for sid in [
        "",
        "garbage",
        "00000000-0000-0000-0000-000000000000",
        "'; DROP TABLE sellers; --",
    ] {
        assert_eq!(
            api.err(&GetSellerRating(session(sid))),
            ErrorCode::SessionExpired,
            "{sid:?}"
        );
        assert_eq!(
            api.err(&DisplayItemsForSale(session(sid).into())),
            ErrorCode::SessionExpired
        );
    }
}

#[test]
fn a_new_seller_has_a_zero_rating() {
    let (mut api, sid, seller_id) = new_seller();
    let rating: SellerRating = api.ok(&GetSellerRating(session(&sid)));
    assert_eq!(
        rating,
        SellerRating {
            seller_id,
            thumbs_up: 0,
            thumbs_down: 0,
            items_sold: 0
        }
    );
}

#[test]
fn register_item_stores_every_field_normalised() {
    let (mut api, sid, seller_id) = new_seller();
    let category = unique_category();
    let mut request = item(
        &sid,
        "Blue mug ☕",
        category,
        &["Mug", "BLUE", "mug"],
        9.999,
        10,
    );
    request.condition = "uSeD".into();
    let registered: ItemRegistered = api.ok(&RegisterItemForSale(request));
    assert_eq!(registered.category, category);
    let list: ItemList = api.ok(&DisplayItemsForSale(session(&sid).into()));
    assert_eq!(list.items.len(), 1);
    let stored = &list.items[0];
    assert_eq!(stored.item_id, registered.item_id);
    assert_eq!(stored.item_name, "Blue mug ☕");
    assert_eq!(stored.keywords, vec!["mug", "blue"]);
    assert_eq!(stored.condition, Condition::Used);
    assert_eq!(stored.sale_price, 10.0, "kept to the cent");
    assert_eq!(stored.quantity, 10);
    assert_eq!((stored.thumbs_up, stored.thumbs_down), (0, 0));
    assert_eq!(stored.seller_id, seller_id);
}

#[test]
fn register_item_refuses_each_invalid_field() {
    let (mut api, sid, _) = new_seller();
    let base = || item(&sid, "ok", 1, &["a"], 1.0, 1);
    let cases: Vec<(&str, wire::request::RegisterItem)> = vec![
        (
            "empty name",
            wire::request::RegisterItem {
                item_name: String::new(),
                ..base()
            },
        ),
        (
            "long name",
            wire::request::RegisterItem {
                item_name: "n".repeat(33),
                ..base()
            },
        ),
        (
            "negative category",
            wire::request::RegisterItem {
                category: -1,
                ..base()
            },
        ),
        (
            "huge category",
            wire::request::RegisterItem {
                category: 1 << 31,
                ..base()
            },
        ),
        (
            "six keywords",
            item(&sid, "ok", 1, &["a", "b", "c", "d", "e", "f"], 1.0, 1),
        ),
        ("long keyword", item(&sid, "ok", 1, &["abcdefghi"], 1.0, 1)),
        ("empty keyword", item(&sid, "ok", 1, &[""], 1.0, 1)),
        (
            "condition",
            wire::request::RegisterItem {
                condition: "Mint".into(),
                ..base()
            },
        ),
        ("negative price", item(&sid, "ok", 1, &[], -0.01, 1)),
        ("huge price", item(&sid, "ok", 1, &[], 1e9 + 1.0, 1)),
        ("negative quantity", item(&sid, "ok", 1, &[], 1.0, -1)),
        (
            "huge quantity",
            item(&sid, "ok", 1, &[], 1.0, 1_000_000_001),
        ),
    ];
    for (what, request) in cases {
        assert_eq!(
            api.err(&RegisterItemForSale(request)),
            ErrorCode::InvalidArgument,
            "{what}"
        );
    }
    let list: ItemList = api.ok(&DisplayItemsForSale(session(&sid).into()));
    assert!(list.items.is_empty(), "a refused item was stored");
    let _: ItemRegistered = api.ok(&RegisterItemForSale(item(&sid, "zero", 1, &[], 0.0, 0)));
    assert_eq!(
        api.err(&RegisterItemForSale(item("expired", "x", 1, &[], 1.0, 1))),
        ErrorCode::SessionExpired
    );
}

#[test]
fn change_item_price_changes_own_items_only() {
    let (mut api, sid, _) = new_seller();
    let id = register(
        &mut api,
        item(&sid, "lamp", unique_category(), &[], 10.0, 1),
    );
    let changed: PriceChanged = api.ok(&ChangeItemPrice(ChangePrice {
        session_id: sid.clone(),
        item_id: id,
        new_price: 12.345,
    }));
    assert_eq!(
        changed,
        PriceChanged {
            item_id: id,
            sale_price: 12.35
        }
    );
    let list: ItemList = api.ok(&DisplayItemsForSale(session(&sid).into()));
    assert_eq!(list.items[0].sale_price, 12.35);
    let change = |item_id, new_price| {
        ChangeItemPrice(ChangePrice {
            session_id: sid.clone(),
            item_id,
            new_price,
        })
    };
    assert_eq!(api.err(&change(i64::MAX, 1.0)), ErrorCode::NotFound);
    assert_eq!(api.err(&change(id, -1.0)), ErrorCode::InvalidArgument);
    assert_eq!(api.err(&change(id, 2e9)), ErrorCode::InvalidArgument);
    let (mut other, other_sid, _) = new_seller();
    assert_eq!(
        other.err(&ChangeItemPrice(ChangePrice {
            session_id: other_sid,
            item_id: id,
            new_price: 0.01
        })),
        ErrorCode::NotFound
    );
}

#[test]
fn update_units_removes_and_adds_back_and_never_goes_below_zero() {
    let (mut api, sid, _) = new_seller();
    let id = register(
        &mut api,
        item(&sid, "chair", unique_category(), &[], 5.0, 10),
    );
    let units = |change| {
        UpdateUnitsForSale(UpdateUnits {
            session_id: sid.clone(),
            item_id: id,
            quantity_change: change,
        })
    };
    let r: UnitsUpdated = api.ok(&units(4));
    assert_eq!(
        r,
        UnitsUpdated {
            item_id: id,
            quantity: 6
        }
    );
    let r: UnitsUpdated = api.ok(&units(-2));
    assert_eq!(r.quantity, 8);
    assert_eq!(api.err(&units(9)), ErrorCode::InsufficientStock);
    let r: UnitsUpdated = api.ok(&units(8));
    assert_eq!(r.quantity, 0);
    let list: ItemList = api.ok(&DisplayItemsForSale(session(&sid).into()));
    assert!(list.items.is_empty(), "sold-out items are not displayed");
    assert_eq!(api.err(&units(1_000_000_001)), ErrorCode::InvalidArgument);
    let r: UnitsUpdated = api.ok(&units(-1_000_000_000));
    assert_eq!(r.quantity, 1_000_000_000);
    assert_eq!(
        api.err(&units(-1)),
        ErrorCode::InvalidArgument,
        "over 10^9 units"
    );
    assert_eq!(
        api.err(&UpdateUnitsForSale(UpdateUnits {
            session_id: sid.clone(),
            item_id: -5,
            quantity_change: 1
        })),
        ErrorCode::NotFound
    );
}

#[test]
fn display_items_lists_only_the_callers_items_with_units() {
    let (mut api, sid, seller_id) = new_seller();
    let (mut other, other_sid, _) = new_seller();
    let category = unique_category();
    let a = register(&mut api, item(&sid, "a", category, &[], 1.0, 1));
    let _sold_out = register(&mut api, item(&sid, "b", category, &[], 1.0, 0));
    let c = register(&mut api, item(&sid, "c", category, &[], 1.0, 3));
    let _theirs = register(&mut other, item(&other_sid, "d", category, &[], 1.0, 3));
    let list: ItemList = api.ok(&DisplayItemsForSale(session(&sid).into()));
    let ids: Vec<i64> = list.items.iter().map(|i| i.item_id).collect();
    assert_eq!(ids, vec![a, c]);
    assert!(list.items.iter().all(|i| i.seller_id == seller_id));
    // The frame of an existing client (no include_sold_out) is answered as
    // before; `false` is the same.
    for extra in ["", r#","include_sold_out":false"#] {
        let raw = api.raw(&format!(
            r#"{{"operation":"DisplayItemsForSale","session_id":"{sid}"{extra}}}"#
        ));
        let body = raw.body.expect("OK");
        let raw_ids: Vec<i64> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["item_id"].as_i64().unwrap())
            .collect();
        assert_eq!(raw_ids, ids, "{extra}");
    }
}

#[test]
fn display_items_lists_sold_out_items_too_when_asked_so_they_can_be_restocked() {
    let (mut api, sid, _) = new_seller();
    let (mut other, other_sid, _) = new_seller();
    let category = unique_category();
    let a = register(&mut api, item(&sid, "a", category, &[], 1.0, 1));
    let b = register(&mut api, item(&sid, "b", category, &[], 1.0, 0));
    let _theirs = register(&mut other, item(&other_sid, "d", category, &[], 1.0, 0));
    let all = |api: &mut Api| -> Vec<(i64, i64)> {
        let list: ItemList = api.ok(&DisplayItemsForSale(OwnItems {
            session_id: sid.clone(),
            include_sold_out: true,
        }));
        list.items.iter().map(|i| (i.item_id, i.quantity)).collect()
    };
    assert_eq!(all(&mut api), vec![(a, 1), (b, 0)]);
    let _: UnitsUpdated = api.ok(&UpdateUnitsForSale(UpdateUnits {
        session_id: sid.clone(),
        item_id: a,
        quantity_change: 1,
    }));
    assert_eq!(
        all(&mut api),
        vec![(a, 0), (b, 0)],
        "a sold out stays listed"
    );
    let _: UnitsUpdated = api.ok(&UpdateUnitsForSale(UpdateUnits {
        session_id: sid.clone(),
        item_id: b,
        quantity_change: -4,
    }));
    assert_eq!(all(&mut api), vec![(a, 0), (b, 4)], "b restocked");
    let bad = api.raw(&format!(
        r#"{{"operation":"DisplayItemsForSale","session_id":"{sid}","include_sold_out":"yes"}}"#
    ));
    assert_eq!(bad.code, Some(ErrorCode::BadRequest));
}

#[test]
fn malformed_requests_get_bad_request_and_the_connection_stays_usable() {
    let mut api = Api::seller();
    for json in [
        "{not json",
        "[1,2,3]",
        r#"{"operation":"Login","username":"x"}"#,
        r#"{"operation":"ChangeItemPrice","session_id":"s","item_id":"7","new_price":1}"#,
        r#"{"operation":"RegisterItemForSale","session_id":"s","item_name":"x","category":1,"keywords":"a","condition":"New","sale_price":1,"quantity":1}"#,
    ] {
        let r = api.raw(json);
        assert_eq!(r.code, Some(ErrorCode::BadRequest), "{json}");
    }
    let r = api.raw(r#"{"operation":"SearchItemsForSale","request_id":"q1"}"#);
    assert_eq!(r.code, Some(ErrorCode::UnknownOperation));
    assert_eq!(r.request_id, Some(wire::RequestId::Text("q1".into())));
    let r = api.raw(r#"{"operation":"Ping","request_id":42}"#);
    assert_eq!(r.status, wire::Status::Ok);
    assert_eq!(r.request_id, Some(wire::RequestId::Int(42)));
}
