//! Helpers shared by the end-to-end tests: the binary's stack, typed clients,
//! and names unique to one test so tests can share the databases.
#![allow(dead_code)]

pub mod proxy;

use client::{Client, ClientConfig, Retry};
use deploy::testing::shared_stack;
use deploy::Stack;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use wire::request::{Credentials, RegisterItem, SessionOnly};
use wire::response::{
    BuyerCreated, BuyerSession, Empty, ItemRegistered, SellerCreated, SellerSession,
};
use wire::{buyer, seller, ErrorCode, Response, Status};

/// This binary's stack with the default configuration.
pub fn stack() -> &'static Stack {
    shared_stack(|_| {})
}

#[allow(unused_imports)]
pub use deploy::testing::{unique_category, unique_name as unique};

/// A connection to this binary's customer_db, as the tests inspect it.
pub fn customer_db() -> postgres::Client {
    postgres::Client::connect(&stack().db().customer_url, postgres::NoTls).expect("customer_db")
}

/// A connection to this binary's product_db, as the tests inspect it.
pub fn product_db() -> postgres::Client {
    postgres::Client::connect(&stack().db().product_url, postgres::NoTls).expect("product_db")
}

/// A typed connection to one server.
pub struct Api {
    pub client: Client,
}

impl Api {
    pub fn connect(addr: SocketAddr) -> Api {
        let config = ClientConfig {
            io_timeout: Duration::from_secs(30),
            retry: Retry {
                attempts: 20,
                base: Duration::from_millis(50),
                max: Duration::from_millis(500),
            },
            // The tests assert what the server answers, UNAVAILABLE too.
            retry_refused: false,
            ..ClientConfig::default()
        };
        let mut client = Client::lazy(&addr.to_string(), config).expect("address");
        // MARKETPLACE_TEST_CA: the stack is a TLS port of the proxy (see
        // deploy/docker/test.sh), whose certificate names 127.0.0.1.
        if let Some(ca) = std::env::var_os("MARKETPLACE_TEST_CA") {
            let tls = client::tls::Tls::from_ca_file(ca.as_ref(), &addr.ip().to_string())
                .expect("the test CA");
            client.use_tls(tls);
        }
        Api { client }
    }

    pub fn seller() -> Api {
        Api::connect(stack().seller_addr())
    }

    pub fn buyer() -> Api {
        Api::connect(stack().buyer_addr())
    }

    pub fn call<R: wire::Operation + Serialize, B: DeserializeOwned>(
        &mut self,
        request: &R,
    ) -> Response<B> {
        if matches!(request.name(), "SearchItemsForSale" | "GetItem") {
            replica_caught_up();
        }
        self.client.call_request(request).expect("a response")
    }

    /// Sends `json` as it is and decodes the answer's envelope.
    pub fn raw(&mut self, json: &str) -> Response<simd_json::OwnedValue> {
        self.client.send_raw(json.as_bytes()).expect("send");
        let mut body = self.client.recv().expect("a response");
        Response::decode(&mut body).expect("a well-formed response")
    }

    /// The result of a call that must succeed.
    pub fn ok<R: wire::Operation + Serialize + std::fmt::Debug, B: DeserializeOwned>(
        &mut self,
        request: &R,
    ) -> B {
        let response: Response<B> = self.call(request);
        match response.into_result() {
            Ok(body) => body,
            Err(failure) => panic!("{request:?} failed: {failure}"),
        }
    }

    /// The code of a call that must fail.
    pub fn err<R: wire::Operation + Serialize + std::fmt::Debug>(
        &mut self,
        request: &R,
    ) -> ErrorCode {
        let response: Response<Empty> = self.call(request);
        assert_ne!(response.status, Status::Ok, "{request:?} succeeded");
        assert!(!response.message.is_empty());
        let code = response.code.expect("an error code");
        assert_eq!(response.status, code.status(), "status of {code}");
        code
    }
}

/// With `MARKETPLACE_TEST_REPLICA=1` the buyer server reads searches and
/// items from product_db's streaming standby, which may lag the primary by a
/// few milliseconds (PROTOCOL.md allows it): a test that reads right after it
/// wrote first waits until every standby has replayed what the primary has.
fn replica_caught_up() {
    static PRIMARY: std::sync::OnceLock<Option<std::sync::Mutex<postgres::Client>>> =
        std::sync::OnceLock::new();
    let primary = PRIMARY.get_or_init(|| {
        std::env::var_os("MARKETPLACE_TEST_REPLICA")?;
        let url = &stack().db().product_url;
        let client = postgres::Client::connect(url, postgres::NoTls).expect("product_db");
        Some(std::sync::Mutex::new(client))
    });
    let Some(primary) = primary else {
        return;
    };
    let mut primary = primary.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let caught_up: bool = primary
            .query_one(
                "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), true)
                   FROM pg_stat_replication",
                &[],
            )
            .expect("pg_stat_replication")
            .get(0);
        if caught_up || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` and returns its output; panics with what it printed when
/// it fails (for the container tests' docker and compose commands).
pub fn run(command: &mut std::process::Command) -> std::process::Output {
    let out = command.output().expect("run a command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `docker ARGS`, which must succeed.
pub fn docker(args: &[&str]) -> std::process::Output {
    run(std::process::Command::new("docker").args(args))
}

pub fn creds(username: &str, password: &str) -> Credentials {
    Credentials {
        username: username.into(),
        password: password.into(),
    }
}

pub fn session(id: &str) -> SessionOnly {
    SessionOnly {
        session_id: id.into(),
    }
}

/// A new seller account, logged in: (api, session, seller id).
pub fn new_seller() -> (Api, String, i64) {
    let mut api = Api::seller();
    let name = unique("s");
    let created: SellerCreated = api.ok(&seller::Request::CreateAccount(creds(&name, "pw")));
    let login: SellerSession = api.ok(&seller::Request::Login(creds(&name, "pw")));
    assert_eq!(login.seller_id, created.seller_id);
    (api, login.session_id, login.seller_id)
}

/// A new buyer account, logged in: (api, session, buyer id, username).
pub fn new_buyer() -> (Api, String, i64, String) {
    let mut api = Api::buyer();
    let name = unique("b");
    let created: BuyerCreated = api.ok(&buyer::Request::CreateAccount(creds(&name, "pw")));
    let login: BuyerSession = api.ok(&buyer::Request::Login(creds(&name, "pw")));
    assert_eq!(login.buyer_id, created.buyer_id);
    (api, login.session_id, login.buyer_id, name)
}

pub fn item(
    session: &str,
    name: &str,
    category: i64,
    keywords: &[&str],
    price: f64,
    quantity: i64,
) -> RegisterItem {
    RegisterItem {
        session_id: session.into(),
        item_name: name.into(),
        category,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        condition: "New".into(),
        sale_price: price,
        quantity,
    }
}

/// Registers an item and returns its id.
pub fn register(api: &mut Api, request: RegisterItem) -> i64 {
    let r: ItemRegistered = api.ok(&seller::Request::RegisterItemForSale(request));
    r.item_id
}

/// Puts `quantity` units of `item_id` in the session's cart.
pub fn add_to_cart(api: &mut Api, sid: &str, item_id: i64, quantity: i64) {
    let _: wire::response::CartContents =
        api.ok(&buyer::Request::AddItemToCart(wire::request::CartChange {
            session_id: sid.into(),
            item_id,
            quantity,
        }));
}

/// The units for sale of `item_id`, as a buyer sees them.
pub fn units_of(api: &mut Api, sid: &str, item_id: i64) -> i64 {
    let d: wire::response::ItemDetail = api.ok(&buyer::Request::GetItem(wire::request::ItemRef {
        session_id: sid.into(),
        item_id,
    }));
    d.item.quantity
}

/// The session's active cart as (item, quantity) pairs.
pub fn cart_lines(api: &mut Api, sid: &str) -> Vec<(String, i64)> {
    let c: wire::response::CartContents = api.ok(&buyer::Request::DisplayCart(session(sid)));
    c.cart_items.into_iter().collect()
}

/// Card details that pass every check (never a real card).
pub fn card(sid: &str) -> wire::request::Checkout {
    use wire::request::Scalar;
    wire::request::Checkout {
        session_id: sid.into(),
        cardholder_name: "Ann Smith".into(),
        card_number: Scalar::Text("4111111111111111".into()),
        expiry_month: Scalar::Int(12),
        expiry_year: Scalar::Int(2099),
        security_code: Scalar::Text("123".into()),
    }
}

/// A MakePurchase frame with `key` and the card of [`card`], as a script
/// would write it.
pub fn purchase_json(sid: &str, key: &str) -> String {
    format!(
        r#"{{"operation":"MakePurchase","idempotency_key":"{key}","session_id":"{sid}",
            "cardholder_name":"Ann Smith","card_number":"4111111111111111","expiry_month":12,
            "expiry_year":2099,"security_code":"123"}}"#
    )
}

/// One HTTP exchange with an endpoint a test started (metrics, Prometheus):
/// (status, content type, body). `query` pairs are encoded into the URL; an
/// error status is an answer to look at, not a failure.
pub fn http(method: &str, url: &str, query: &[(&str, &str)]) -> (u16, String, String) {
    try_http(method, url, query).unwrap_or_else(|e| panic!("{e}"))
}

/// [`http`], with a failure to connect or to read the answer as an error
/// (for endpoints that may still be starting).
pub fn try_http(
    method: &str,
    url: &str,
    query: &[(&str, &str)],
) -> Result<(u16, String, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent.get(url).query_pairs(query.iter().copied()).call(),
        "POST" => agent.post(url).query_pairs(query.iter().copied()).send(""),
        other => panic!("no {other} here"),
    }
    .map_err(|e| format!("{method} {url}: {e}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: {e}"))?;
    Ok((response.status().as_u16(), content_type, body))
}
