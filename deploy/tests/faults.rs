//! PostgreSQL stops while the servers run: requests get UNAVAILABLE quickly (no
//! hang, no crash); when it is back, requests succeed without a server restart.

mod support;

use std::time::{Duration, Instant};
use support::*;
use wire::buyer::Request as B;
use wire::response::{CartContents, ItemList, Pong};
use wire::seller::Request as S;
use wire::ErrorCode;

#[test]
fn a_stopped_database_answers_unavailable_within_a_second_and_recovery_needs_no_restart() {
    let stack = stack();
    let (mut seller, ssid, _) = new_seller();
    let (mut buyer, bsid, _, _) = new_buyer();
    let _: ItemList = seller.ok(&S::DisplayItemsForSale(session(&ssid).into()));

    stack.stop_postgres().expect("stop PostgreSQL");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(
            seller.err(&S::DisplayItemsForSale(session(&ssid).into())),
            ErrorCode::Unavailable
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        assert_eq!(
            buyer.err(&B::DisplayCart(session(&bsid))),
            ErrorCode::Unavailable
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        assert_eq!(
            buyer.err(&B::Login(creds("someone", "pw"))),
            ErrorCode::Unavailable
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
    // Requests that need no database are still served.
    let _: Pong = seller.ok(&S::Ping(wire::request::NoFields {}));

    stack.start_postgres().expect("start PostgreSQL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: wire::Response<CartContents> = buyer.call(&B::DisplayCart(session(&bsid)));
        match r.code {
            None => break,
            Some(ErrorCode::Unavailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("after recovery: {other:?} {}", r.message),
        }
    }
    // Every request from now on succeeds, on both servers, from many
    // connections at once (so every pooled database connection is used).
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ssid, bsid) = (ssid.clone(), bsid.clone());
            std::thread::spawn(move || {
                let (mut seller, mut buyer) = (Api::seller(), Api::buyer());
                for _ in 0..5 {
                    let _: ItemList = seller.ok(&S::DisplayItemsForSale(session(&ssid).into()));
                    let _: CartContents = buyer.ok(&B::DisplayCart(session(&bsid)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no request failed after recovery");
    }
    let (_, _, _, _) = new_buyer();
}
