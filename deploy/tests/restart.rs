//! The frontends are stateless: restarting both servers mid-test changes nothing
//! a client sees; its sessions and carts are intact and its client reconnects.

mod support;

use support::*;
use wire::buyer::Request as B;
use wire::request::CartChange;
use wire::response::{CartContents, ItemList};
use wire::seller::Request as S;

#[test]
fn sessions_and_carts_survive_a_restart_of_both_servers() {
    let stack = stack();
    let (mut seller, ssid, _) = new_seller();
    let item_id = register(
        &mut seller,
        item(&ssid, "kept", unique_category(), &["k"], 3.0, 10),
    );
    let (mut buyer, bsid, _, _) = new_buyer();
    let _: CartContents = buyer.ok(&B::AddItemToCart(CartChange {
        session_id: bsid.clone(),
        item_id,
        quantity: 4,
    }));
    let (seller_addr, buyer_addr) = (stack.seller_addr(), stack.buyer_addr());

    stack.stop_servers();
    assert!(
        std::net::TcpStream::connect(seller_addr).is_err(),
        "the seller server still listens"
    );
    stack.start_servers().expect("restart");
    assert_eq!(
        (stack.seller_addr(), stack.buyer_addr()),
        (seller_addr, buyer_addr)
    );

    // The same client objects: their connections broke, they reconnect.
    let cart: CartContents = buyer.ok(&B::DisplayCart(session(&bsid)));
    assert_eq!(cart.cart_items.get(&item_id.to_string()), Some(&4));
    let items: ItemList = seller.ok(&S::DisplayItemsForSale(session(&ssid).into()));
    assert_eq!(items.items.len(), 1);
    let cart: CartContents = buyer.ok(&B::AddItemToCart(CartChange {
        session_id: bsid,
        item_id,
        quantity: 6,
    }));
    assert_eq!(cart.cart_items.get(&item_id.to_string()), Some(&10));
}
