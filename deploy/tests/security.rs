//! Identity comes from the session only; passwords are never stored in clear;
//! quotes, unicode and SQL fragments are plain data everywhere.

mod support;

use support::*;
use wire::buyer::Request as B;
use wire::request::{ChangePrice, Search, UpdateUnits};
use wire::response::{BuyerSession, ItemList, SearchResults, SellerSession};
use wire::seller::Request as S;
use wire::{ErrorCode, Status};

#[test]
fn seller_b_cannot_read_or_change_seller_a_items_even_naming_a_seller_id() {
    let (mut a, asid, a_id) = new_seller();
    let (mut b, bsid, _) = new_seller();
    let item_id = register(&mut a, item(&asid, "a's", unique_category(), &[], 5.0, 5));
    // B claims to be A through the ignored seller_id field.
    let r = b.raw(&format!(
        r#"{{"operation":"ChangeItemPrice","session_id":"{bsid}","seller_id":{a_id},"item_id":{item_id},"new_price":0.01}}"#
    ));
    assert_eq!(r.code, Some(ErrorCode::NotFound));
    let r = b.raw(&format!(
        r#"{{"operation":"UpdateUnitsForSale","session_id":"{bsid}","seller_id":{a_id},"item_id":{item_id},"quantity_change":5}}"#
    ));
    assert_eq!(r.code, Some(ErrorCode::NotFound));
    let r = b.raw(&format!(
        r#"{{"operation":"DisplayItemsForSale","session_id":"{bsid}","seller_id":{a_id}}}"#
    ));
    assert_eq!(r.status, Status::Ok);
    let theirs: ItemList = b.ok(&S::DisplayItemsForSale(session(&bsid).into()));
    assert!(theirs.items.is_empty(), "B sees A's items");
    let mine: ItemList = a.ok(&S::DisplayItemsForSale(session(&asid).into()));
    assert_eq!(
        (mine.items[0].sale_price, mine.items[0].quantity),
        (5.0, 5),
        "A's item changed"
    );
    assert_eq!(
        b.err(&S::ChangeItemPrice(ChangePrice {
            session_id: bsid.clone(),
            item_id,
            new_price: 1.0
        })),
        ErrorCode::NotFound
    );
    assert_eq!(
        b.err(&S::UpdateUnitsForSale(UpdateUnits {
            session_id: bsid,
            item_id,
            quantity_change: 1
        })),
        ErrorCode::NotFound
    );
}

#[test]
fn a_buyer_id_in_the_request_is_ignored() {
    let (mut one, one_sid, _, _) = new_buyer();
    let (_, _, two_id, _) = new_buyer();
    let r = one.raw(&format!(
        r#"{{"operation":"GetBuyerPurchases","session_id":"{one_sid}","buyer_id":{two_id}}}"#
    ));
    assert_eq!(r.status, Status::Ok);
}

#[test]
fn passwords_are_stored_only_as_salted_argon2id_hashes() {
    let stack = stack();
    let mut seller = Api::seller();
    let mut buyer = Api::buyer();
    let name = unique("pwcheck");
    let password = "correct horse battery staple";
    let _: wire::response::SellerCreated = seller.ok(&S::CreateAccount(creds(&name, password)));
    let _: wire::response::BuyerCreated = buyer.ok(&B::CreateAccount(creds(&name, password)));
    let mut db = postgres::Client::connect(&stack.db().customer_url, postgres::NoTls).unwrap();
    let seller_hash: String = db
        .query_one(
            "SELECT password_hash FROM sellers WHERE username = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    let buyer_hash: String = db
        .query_one(
            "SELECT password_hash FROM buyers WHERE username = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    for hash in [&seller_hash, &buyer_hash] {
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains(password));
    }
    assert_ne!(seller_hash, buyer_hash, "each hash has its own salt");
    let dump: i64 = db
        .query_one(
            "SELECT count(*) FROM sellers s WHERE s::text LIKE '%' || $1 || '%'",
            &[&password],
        )
        .unwrap()
        .get(0);
    assert_eq!(dump, 0);
}

#[test]
fn quotes_unicode_and_sql_fragments_are_plain_data_in_every_string_field() {
    let hostile = [
        "'; DROP TABLE items; --",
        "Robert'); DELETE",
        "\"quoted\" \\ back",
        "ünïcødé ☕ 漢字",
        "%_ like *",
        "$1 $$ E'\\x00'",
    ];
    for (n, text) in hostile.iter().enumerate() {
        let username: String = format!("{text}{}", unique("")).chars().take(32).collect();
        let mut seller = Api::seller();
        let _: wire::response::SellerCreated = seller.ok(&S::CreateAccount(creds(&username, text)));
        let login: SellerSession = seller.ok(&S::Login(creds(&username, text)));
        let name: String = text.chars().take(32).collect();
        let keyword: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(8)
            .collect();
        let category = unique_category();
        let id = register(
            &mut seller,
            item(&login.session_id, &name, category, &[&keyword], 1.0, 1),
        );
        let list: ItemList = seller.ok(&S::DisplayItemsForSale(session(&login.session_id).into()));
        assert_eq!(list.items[0].item_name, name, "case {n}");
        assert_eq!(list.items[0].keywords, vec![keyword.to_lowercase()]);
        let mut buyer = Api::buyer();
        let _: wire::response::BuyerCreated = buyer.ok(&B::CreateAccount(creds(&username, text)));
        let b: BuyerSession = buyer.ok(&B::Login(creds(&username, text)));
        let found: SearchResults = buyer.ok(&B::SearchItemsForSale(Search {
            session_id: b.session_id.clone(),
            category,
            keywords: vec![keyword.to_uppercase()],
            limit: None,
            offset: None,
        }));
        assert_eq!(
            found.items.iter().map(|i| i.item_id).collect::<Vec<_>>(),
            vec![id],
            "case {n}"
        );
        assert_eq!(
            buyer.err(&B::DisplayCart(session(text))),
            ErrorCode::SessionExpired
        );
    }
    // The tables are all still there.
    let mut seller = Api::seller();
    let _: wire::response::SellerCreated =
        seller.ok(&S::CreateAccount(creds(&unique("after"), "pw")));
}
