//! Typed requests of both servers, decoded in place from a frame body.
//!
//! Decoding is two steps: simd-json parses the frame bytes in place into a borrowed
//! value (no copy of the input), the envelope (`operation`, `request_id`) is read from
//! it, then the operation's own fields are deserialised into its typed body. Unknown
//! fields are ignored; a missing field or a wrong type is `BAD_REQUEST`; an operation
//! the server does not serve is `UNKNOWN_OPERATION`.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::fmt;

/// The optional `request_id` a client attaches; the response carries it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Text(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Int(n) => write!(f, "{n}"),
            RequestId::Text(s) => f.write_str(s),
        }
    }
}

/// A JSON integer or string, for fields the protocol accepts in either form
/// (`feedback`: `1`/`"up"`; card fields: `4111…` or `"4111…"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl Scalar {
    /// The value as text: integers in decimal.
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// A decoded request with the id to echo in its response.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<R> {
    pub request_id: Option<RequestId>,
    /// The client's `idempotency_key`, 1 to 64 characters, when it sent one.
    pub idempotency_key: Option<String>,
    pub request: R,
}

/// Longest `idempotency_key`, in characters.
pub const IDEMPOTENCY_KEY_MAX: usize = 64;

/// What the server needs to apply a state-changing request at most once: the
/// client's key, the operation, and a fingerprint of the request's fields, so
/// that a key reused for a different request is told apart from a resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub operation: &'static str,
    pub fingerprint: String,
}

/// The fields of a request that identify it for [`Idempotency`]: everything the
/// client chose except the session (the caller is the key's scope) and secrets
/// (passwords and card data are never stored, not even as a fingerprint).
pub trait Fingerprint {
    /// A stable text of the identifying fields.
    fn fingerprint(&self) -> String;
}

/// A request refused before it reached a handler: the error response to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub request_id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    fn bad_request(request_id: Option<RequestId>, message: impl Into<String>) -> Self {
        Rejection {
            request_id,
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

/// What both servers' `Request` enums offer to generic server code.
pub trait Operation: Sized {
    /// What serves the side (its generated `Handler` trait).
    type Handler: ?Sized;

    /// Decodes a frame body in place.
    ///
    /// # Errors
    /// A [`Rejection`] with `BAD_REQUEST` or `UNKNOWN_OPERATION`.
    fn decode_frame(buf: &mut [u8]) -> Result<Decoded<Self>, Rejection>;

    /// The operation name as it appears on the wire.
    fn name(&self) -> &'static str;

    /// Whether the operation changes state, so that a resend must carry the
    /// first attempt's `idempotency_key` (PROTOCOL.md, "Retries").
    fn changes_state(&self) -> bool;

    /// See [`Fingerprint`].
    fn fingerprint(&self) -> String;

    /// Hands the request to its method of `handler` and appends the `OK`
    /// answer to `out`.
    ///
    /// # Errors
    /// The handler's refusal; nothing is appended then.
    fn answer(
        self,
        handler: &Self::Handler,
        once: Option<&Idempotency>,
        out: &mut bytes::BytesMut,
        request_id: Option<&RequestId>,
    ) -> Result<(), crate::Refusal>;

    /// What applying this request at most once under `key` takes; `None` for
    /// an operation that changes nothing.
    fn idempotency(&self, key: Option<&str>) -> Option<Idempotency> {
        match key {
            Some(key) if self.changes_state() => Some(Idempotency {
                key: key.to_owned(),
                operation: self.name(),
                fingerprint: self.fingerprint(),
            }),
            _ => None,
        }
    }
}

/// One operation of the protocol as a type (`wire::buyer::op::AddItemToCart`):
/// its name on the wire, its request fields, its result fields, and whether it
/// changes state. Generated for every operation from its side's list, so a
/// client's call is typed by the operation alone.
pub trait Op {
    /// The operation name on the wire.
    const NAME: &'static str;
    /// Whether it changes state (`write` in the list): a resend must carry the
    /// first attempt's `idempotency_key`.
    const CHANGES_STATE: bool;
    /// The request's own fields.
    type Fields: Serialize + fmt::Debug;
    /// The result fields of an `OK` response.
    type Reply: Serialize + serde::de::DeserializeOwned + fmt::Debug;
    /// The side's request enum.
    type Request: Operation + Serialize;
    /// The request carrying `fields`.
    fn request(fields: Self::Fields) -> Self::Request;
}

/// What a handler answers `OK` with: the sentence and the result fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub message: String,
    pub result: T,
}

impl<T> Answer<T> {
    pub fn new(message: impl Into<String>, result: T) -> Self {
        Answer {
            message: message.into(),
            result,
        }
    }
}

/// A request with a `request_id` and an `idempotency_key`, as a client sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a, R: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<&'a str>,
    #[serde(flatten)]
    pub request: &'a R,
}

/// Parses a frame body and hands the operation name and the whole object to `body`,
/// which returns `None` for an operation it does not know.
fn decode_with<R>(
    buf: &mut [u8],
    side: &str,
    body: impl FnOnce(&str, &BorrowedValue<'_>) -> Option<Result<R, simd_json::Error>>,
) -> Result<Decoded<R>, Rejection> {
    let value = simd_json::to_borrowed_value(buf)
        .map_err(|e| Rejection::bad_request(None, format!("the frame is not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Rejection::bad_request(
            None,
            "the request is not a JSON object",
        ));
    };
    let request_id = match object.get("request_id") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(RequestId::Int(n)),
            (_, Some(s)) => Some(RequestId::Text(s.to_owned())),
            _ => {
                return Err(Rejection::bad_request(
                    None,
                    "field `request_id` must be a string or an integer",
                ))
            }
        },
    };
    let idempotency_key = match object.get("idempotency_key") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => match v.as_str() {
            Some(k) if (1..=IDEMPOTENCY_KEY_MAX).contains(&k.chars().count()) => Some(k.to_owned()),
            Some(k) => {
                return Err(Rejection {
                    request_id,
                    code: ErrorCode::InvalidArgument,
                    message: format!(
                        "idempotency_key must be 1 to {IDEMPOTENCY_KEY_MAX} characters, got {}",
                        k.chars().count()
                    ),
                })
            }
            None => {
                return Err(Rejection::bad_request(
                    request_id,
                    "field `idempotency_key` must be a string",
                ))
            }
        },
    };
    let operation = match object.get("operation") {
        None => {
            return Err(Rejection::bad_request(
                request_id,
                "missing field `operation`",
            ))
        }
        Some(v) => match v.as_str() {
            Some(op) => op,
            None => {
                return Err(Rejection::bad_request(
                    request_id,
                    "field `operation` must be a string",
                ))
            }
        },
    };
    match body(operation, &value) {
        Some(Ok(request)) => Ok(Decoded {
            request_id,
            idempotency_key,
            request,
        }),
        Some(Err(e)) => Err(Rejection::bad_request(
            request_id,
            format!("bad {operation} request: {e}"),
        )),
        None => Err(Rejection {
            request_id,
            code: ErrorCode::UnknownOperation,
            message: format!("the {side} server has no operation {operation:?}"),
        }),
    }
}

/// Defines a side from one list of `write|read Operation(Fields) -> Reply,
/// handler_method` entries, so they can never disagree: the `Request` enum and
/// its decoder, an [`Op`] type per operation (in `op`), the side's `Handler`
/// trait (one method per operation, answering its own reply type), and the
/// dispatch from a decoded request to its handler method and encoded answer.
macro_rules! requests {
    ($side:literal; $( $(#[$doc:meta])* $kind:ident $op:ident($body:ty) -> $reply:ty, $method:ident ),+ $(,)?) => {
        /// A request to this server, tagged by `operation` on the wire.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "operation")]
        pub enum Request {
            $( $(#[$doc])* $op($body), )+
        }

        /// Each operation as a type, for typed calls
        /// (`client.call::<op::Login>(fields)`).
        pub mod op {
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $op;

                impl $crate::request::Op for $op {
                    const NAME: &'static str = stringify!($op);
                    const CHANGES_STATE: bool = is_write(stringify!($kind));
                    type Fields = $body;
                    type Reply = $reply;
                    type Request = Request;
                    fn request(fields: $body) -> Request {
                        Request::$op(fields)
                    }
                }
            )+
        }

        /// What serves this side: one method per operation, taking its fields
        /// and (for a state-changing request with a key) what applying it at
        /// most once takes, answering its own result type or a refusal.
        pub trait Handler: Send + Sync {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// The refusal to answer with.
                fn $method(
                    &self,
                    fields: $body,
                    once: Option<&Idempotency>,
                ) -> Result<Answer<$reply>, $crate::Refusal>;
            )+
        }

        impl Request {
            /// Every operation this server serves.
            pub const OPERATIONS: &'static [&'static str] = &[$(stringify!($op)),+];

            /// The operation name as it appears on the wire.
            pub fn operation(&self) -> &'static str {
                match self {
                    $( Request::$op(_) => stringify!($op), )+
                }
            }

            /// Whether the operation changes state (`write` in the list).
            pub fn changes_state(&self) -> bool {
                match self {
                    $( Request::$op(_) => is_write(stringify!($kind)), )+
                }
            }

            /// Decodes a frame body in place.
            ///
            /// # Errors
            /// A [`Rejection`] with `BAD_REQUEST` or `UNKNOWN_OPERATION`, carrying the
            /// request id when it could be read.
            pub fn decode(buf: &mut [u8]) -> Result<Decoded<Request>, Rejection> {
                decode_with(buf, $side, |operation, value| match operation {
                    $( stringify!($op) => Some(<$body>::deserialize(value).map(Request::$op)), )+
                    _ => None,
                })
            }
        }

        impl Operation for Request {
            type Handler = dyn Handler;

            fn decode_frame(buf: &mut [u8]) -> Result<Decoded<Self>, Rejection> {
                Request::decode(buf)
            }

            fn name(&self) -> &'static str {
                self.operation()
            }

            fn changes_state(&self) -> bool {
                Request::changes_state(self)
            }

            fn fingerprint(&self) -> String {
                match self {
                    $( Request::$op(body) => Fingerprint::fingerprint(body), )+
                }
            }

            fn answer(
                self,
                handler: &dyn Handler,
                once: Option<&Idempotency>,
                out: &mut bytes::BytesMut,
                request_id: Option<&RequestId>,
            ) -> Result<(), $crate::Refusal> {
                match self {
                    $(
                        Request::$op(fields) => {
                            let answer = handler.$method(fields, once)?;
                            $crate::response::encode_ok(out, request_id, &answer.message, &answer.result);
                        }
                    )+
                }
                Ok(())
            }
        }
    };
}

/// Whether an entry's kind is `write` (the other is `read`).
const fn is_write(kind: &str) -> bool {
    matches!(kind.as_bytes(), b"write")
}

/// `username` and `password`, for CreateAccount and Login on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// A request with nothing but the caller's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionOnly {
    pub session_id: String,
}

/// DisplayItemsForSale. `include_sold_out` (an extension of this server,
/// ignored by older ones and left out by older clients) lists the seller's
/// items without units too, so that they can be restocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnItems {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_sold_out: bool,
}

impl From<SessionOnly> for OwnItems {
    fn from(s: SessionOnly) -> Self {
        OwnItems {
            session_id: s.session_id,
            include_sold_out: false,
        }
    }
}

/// A request with no fields at all (Ping).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoFields {}

/// RegisterItemForSale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterItem {
    pub session_id: String,
    pub item_name: String,
    pub category: i64,
    pub keywords: Vec<String>,
    pub condition: String,
    pub sale_price: f64,
    pub quantity: i64,
}

/// ChangeItemPrice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePrice {
    pub session_id: String,
    pub item_id: i64,
    pub new_price: f64,
}

/// UpdateUnitsForSale: removes `quantity_change` units (negative adds them back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateUnits {
    pub session_id: String,
    pub item_id: i64,
    pub quantity_change: i64,
}

/// SearchItemsForSale. `keywords` may be left out (no keywords).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub session_id: String,
    pub category: i64,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// A request naming one item (GetItem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRef {
    pub session_id: String,
    pub item_id: i64,
}

/// AddItemToCart and RemoveItemFromCart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartChange {
    pub session_id: String,
    pub item_id: i64,
    pub quantity: i64,
}

/// MakePurchase with the card details (never stored or logged).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    pub session_id: String,
    pub cardholder_name: String,
    pub card_number: Scalar,
    pub expiry_month: Scalar,
    pub expiry_year: Scalar,
    pub security_code: Scalar,
}

impl fmt::Debug for Checkout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Card data must never reach a log, even through `{:?}`.
        f.debug_struct("Checkout")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// ProvideFeedback: `feedback` is `1`/`0` or `"up"`/`"down"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub session_id: String,
    pub item_id: i64,
    pub feedback: Scalar,
}

/// The buyer's GetSellerRating, naming the seller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SellerRef {
    pub session_id: String,
    pub seller_id: i64,
}

impl Fingerprint for Credentials {
    fn fingerprint(&self) -> String {
        // The password is a secret; the username is the key's scope anyway.
        format!("username={:?}", self.username)
    }
}

impl Fingerprint for SessionOnly {
    fn fingerprint(&self) -> String {
        String::new()
    }
}

impl Fingerprint for OwnItems {
    fn fingerprint(&self) -> String {
        format!("include_sold_out={}", self.include_sold_out)
    }
}

impl Fingerprint for NoFields {
    fn fingerprint(&self) -> String {
        String::new()
    }
}

impl Fingerprint for RegisterItem {
    fn fingerprint(&self) -> String {
        format!(
            "item_name={:?} category={} keywords={:?} condition={:?} sale_price={} quantity={}",
            self.item_name,
            self.category,
            self.keywords,
            self.condition,
            self.sale_price,
            self.quantity
        )
    }
}

impl Fingerprint for ChangePrice {
    fn fingerprint(&self) -> String {
        format!("item_id={} new_price={}", self.item_id, self.new_price)
    }
}

impl Fingerprint for UpdateUnits {
    fn fingerprint(&self) -> String {
        format!(
            "item_id={} quantity_change={}",
            self.item_id, self.quantity_change
        )
    }
}

impl Fingerprint for Search {
    fn fingerprint(&self) -> String {
        format!(
            "category={} keywords={:?} limit={:?} offset={:?}",
            self.category, self.keywords, self.limit, self.offset
        )
    }
}

impl Fingerprint for ItemRef {
    fn fingerprint(&self) -> String {
        format!("item_id={}", self.item_id)
    }
}

impl Fingerprint for CartChange {
    fn fingerprint(&self) -> String {
        format!("item_id={} quantity={}", self.item_id, self.quantity)
    }
}

impl Fingerprint for Checkout {
    fn fingerprint(&self) -> String {
        // Card data is never stored, not even as a fingerprint: a purchase is
        // identified by its key and its buyer alone.
        String::new()
    }
}

impl Fingerprint for Feedback {
    fn fingerprint(&self) -> String {
        format!(
            "item_id={} feedback={}",
            self.item_id,
            self.feedback.to_text()
        )
    }
}

impl Fingerprint for SellerRef {
    fn fingerprint(&self) -> String {
        format!("seller_id={}", self.seller_id)
    }
}

/// Requests of the seller server.
pub mod seller {
    use super::*;
    use crate::response::{
        Empty, ItemList, ItemRegistered, Pong, PriceChanged, SellerCreated, SellerRating,
        SellerSession, UnitsUpdated,
    };

    requests! {
        "seller";
        /// Creates a seller account.
        write CreateAccount(Credentials) -> SellerCreated, create_account,
        /// Starts a session.
        write Login(Credentials) -> SellerSession, login,
        /// Ends a session; OK also when it already ended.
        write Logout(SessionOnly) -> Empty, logout,
        /// The caller's own rating.
        read GetSellerRating(SessionOnly) -> SellerRating, get_seller_rating,
        /// Lists a new item.
        write RegisterItemForSale(RegisterItem) -> ItemRegistered, register_item_for_sale,
        /// Changes the price of one of the caller's items.
        write ChangeItemPrice(ChangePrice) -> PriceChanged, change_item_price,
        /// Removes (or adds back) units of one of the caller's items.
        write UpdateUnitsForSale(UpdateUnits) -> UnitsUpdated, update_units_for_sale,
        /// The caller's items with units left (and, when asked, those without).
        read DisplayItemsForSale(OwnItems) -> ItemList, display_items_for_sale,
        /// Liveness check; needs no session.
        read Ping(NoFields) -> Pong, ping,
    }
}

/// Requests of the buyer server.
pub mod buyer {
    use super::*;
    use crate::response::{
        BuyerCreated, BuyerSession, CartContents, Empty, ItemDetail, Pong, PurchaseHistory,
        PurchaseReceipt, SearchResults, SellerRating, Votes,
    };

    requests! {
        "buyer";
        /// Creates a buyer account.
        write CreateAccount(Credentials) -> BuyerCreated, create_account,
        /// Starts a session with an active cart filled from the saved cart.
        write Login(Credentials) -> BuyerSession, login,
        /// Ends a session, discarding its active cart.
        write Logout(SessionOnly) -> Empty, logout,
        /// Ranked search in one category.
        read SearchItemsForSale(Search) -> SearchResults, search_items_for_sale,
        /// One item by id.
        read GetItem(ItemRef) -> ItemDetail, get_item,
        /// Adds units of an item to the active cart.
        write AddItemToCart(CartChange) -> CartContents, add_item_to_cart,
        /// Removes units of an item from the active cart.
        write RemoveItemFromCart(CartChange) -> CartContents, remove_item_from_cart,
        /// Overwrites the saved cart with the active cart.
        write SaveCart(SessionOnly) -> Empty, save_cart,
        /// Empties the active and the saved cart.
        write ClearCart(SessionOnly) -> Empty, clear_cart,
        /// The active cart.
        read DisplayCart(SessionOnly) -> CartContents, display_cart,
        /// Buys the whole active cart.
        write MakePurchase(Checkout) -> PurchaseReceipt, make_purchase,
        /// Votes on an item.
        write ProvideFeedback(Feedback) -> Votes, provide_feedback,
        /// A seller's rating.
        read GetSellerRating(SellerRef) -> SellerRating, get_seller_rating,
        /// The caller's purchase history.
        read GetBuyerPurchases(SessionOnly) -> PurchaseHistory, get_buyer_purchases,
        /// Liveness check; needs no session.
        read Ping(NoFields) -> Pong, ping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, FrameDecoder};
    use bytes::BytesMut;

    /// Compiles only when `O` answers `R`.
    fn replies<O: Op<Reply = R>, R>() {}

    #[test]
    fn each_operation_is_a_type_with_its_name_kind_fields_and_reply() {
        use crate::response::{CartContents, Empty, Pong, SearchResults, SellerSession};
        assert_eq!(buyer::op::AddItemToCart::NAME, "AddItemToCart");
        const {
            assert!(buyer::op::AddItemToCart::CHANGES_STATE);
            assert!(!buyer::op::SearchItemsForSale::CHANGES_STATE);
            assert!(seller::op::Logout::CHANGES_STATE);
            assert!(!seller::op::Ping::CHANGES_STATE);
        }
        replies::<buyer::op::AddItemToCart, CartContents>();
        replies::<buyer::op::SearchItemsForSale, SearchResults>();
        replies::<seller::op::Login, SellerSession>();
        replies::<seller::op::Logout, Empty>();
        replies::<buyer::op::Ping, Pong>();
        let request = buyer::op::SaveCart::request(session("s"));
        assert_eq!(request, buyer::Request::SaveCart(session("s")));
        assert_eq!(request.operation(), buyer::op::SaveCart::NAME);
        assert_eq!(request.changes_state(), buyer::op::SaveCart::CHANGES_STATE);
        // The list, the types and the names agree.
        assert!(buyer::Request::OPERATIONS.contains(&buyer::op::GetBuyerPurchases::NAME));
        assert!(seller::Request::OPERATIONS.contains(&seller::op::DisplayItemsForSale::NAME));
    }

    fn session(s: &str) -> SessionOnly {
        SessionOnly {
            session_id: s.into(),
        }
    }

    fn creds() -> Credentials {
        Credentials {
            username: "ann \"o'brien\"".into(),
            password: "pä55; DROP TABLE".into(),
        }
    }

    pub(crate) fn every_seller_request() -> Vec<seller::Request> {
        use seller::Request::*;
        vec![
            CreateAccount(creds()),
            Login(creds()),
            Logout(session("s1")),
            GetSellerRating(session("s1")),
            RegisterItemForSale(RegisterItem {
                session_id: "s1".into(),
                item_name: "Blue mug".into(),
                category: 3,
                keywords: vec!["mug".into(), "blue".into()],
                condition: "New".into(),
                sale_price: 9.99,
                quantity: 10,
            }),
            ChangeItemPrice(ChangePrice {
                session_id: "s1".into(),
                item_id: 12,
                new_price: 0.5,
            }),
            UpdateUnitsForSale(UpdateUnits {
                session_id: "s1".into(),
                item_id: 12,
                quantity_change: -3,
            }),
            DisplayItemsForSale(session("s1").into()),
            Ping(NoFields {}),
        ]
    }

    pub(crate) fn every_buyer_request() -> Vec<buyer::Request> {
        use buyer::Request::*;
        vec![
            CreateAccount(creds()),
            Login(creds()),
            Logout(session("b")),
            SearchItemsForSale(Search {
                session_id: "b".into(),
                category: 3,
                keywords: vec!["mug".into()],
                limit: Some(10),
                offset: Some(20),
            }),
            SearchItemsForSale(Search {
                session_id: "b".into(),
                category: 0,
                keywords: vec![],
                limit: None,
                offset: None,
            }),
            GetItem(ItemRef {
                session_id: "b".into(),
                item_id: 1,
            }),
            AddItemToCart(CartChange {
                session_id: "b".into(),
                item_id: 1,
                quantity: 2,
            }),
            RemoveItemFromCart(CartChange {
                session_id: "b".into(),
                item_id: 1,
                quantity: 1,
            }),
            SaveCart(session("b")),
            ClearCart(session("b")),
            DisplayCart(session("b")),
            MakePurchase(Checkout {
                session_id: "b".into(),
                cardholder_name: "Ann".into(),
                card_number: Scalar::Text("4111111111111111".into()),
                expiry_month: Scalar::Int(12),
                expiry_year: Scalar::Int(2031),
                security_code: Scalar::Text("012".into()),
            }),
            ProvideFeedback(Feedback {
                session_id: "b".into(),
                item_id: 1,
                feedback: Scalar::Text("up".into()),
            }),
            ProvideFeedback(Feedback {
                session_id: "b".into(),
                item_id: 1,
                feedback: Scalar::Int(0),
            }),
            GetSellerRating(SellerRef {
                session_id: "b".into(),
                seller_id: 4,
            }),
            GetBuyerPurchases(session("b")),
            Ping(NoFields {}),
        ]
    }

    /// Encodes with a request id into a frame, decodes the frame back.
    fn round_trip<R: Serialize>(request: &R, id: &RequestId) -> BytesMut {
        let mut out = BytesMut::new();
        frame::encode(
            &mut out,
            &Envelope {
                request_id: Some(id),
                idempotency_key: None,
                request,
            },
        );
        FrameDecoder::default().decode(&mut out).unwrap().unwrap()
    }

    #[test]
    fn every_seller_operation_round_trips_through_encode_and_decode() {
        let requests = every_seller_request();
        let mut seen: Vec<&str> = requests.iter().map(|r| r.operation()).collect();
        seen.dedup();
        assert_eq!(seen, seller::Request::OPERATIONS);
        for (i, request) in requests.iter().enumerate() {
            let id = RequestId::Int(i as i64);
            let mut body = round_trip(request, &id);
            let decoded = seller::Request::decode(&mut body).unwrap();
            assert_eq!(&decoded.request, request);
            assert_eq!(decoded.request_id, Some(id));
        }
    }

    #[test]
    fn every_buyer_operation_round_trips_through_encode_and_decode() {
        let requests = every_buyer_request();
        let mut seen: Vec<&str> = requests.iter().map(|r| r.operation()).collect();
        seen.dedup();
        assert_eq!(seen, buyer::Request::OPERATIONS);
        for request in &requests {
            let id = RequestId::Text(format!("req-{}", request.operation()));
            let mut body = round_trip(request, &id);
            let decoded = buyer::Request::decode(&mut body).unwrap();
            assert_eq!(&decoded.request, request);
            assert_eq!(decoded.request_id, Some(id));
        }
    }

    fn decode_buyer(json: &str) -> Result<Decoded<buyer::Request>, Rejection> {
        buyer::Request::decode(&mut json.as_bytes().to_vec())
    }

    #[test]
    fn unknown_fields_such_as_a_claimed_buyer_id_are_ignored() {
        let d = decode_buyer(
            r#"{"operation":"DisplayCart","session_id":"x","buyer_id":1,"extra":[1,{"a":null}]}"#,
        )
        .unwrap();
        assert_eq!(d.request, buyer::Request::DisplayCart(session("x")));
        assert_eq!(d.request_id, None);
    }

    #[test]
    fn garbage_bytes_are_a_bad_request() {
        for junk in [
            &b"not json"[..],
            b"{\"operation\":",
            b"\xff\xfe{}",
            b"{\"operation\":\"Ping\"} trailing",
        ] {
            let err = buyer::Request::decode(&mut junk.to_vec()).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{junk:?}");
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_a_bad_request() {
        for json in ["[1,2]", "\"Ping\"", "42", "null"] {
            let err = decode_buyer(json).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{json}");
            assert!(err.message.contains("not a JSON object"), "{json}");
        }
    }

    #[test]
    fn a_missing_field_is_a_bad_request_that_names_it_and_echoes_the_id() {
        let err =
            decode_buyer(r#"{"operation":"GetItem","session_id":"s","request_id":9}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("item_id"), "{}", err.message);
        assert_eq!(err.request_id, Some(RequestId::Int(9)));
        let err = decode_buyer(r#"{"session_id":"s"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("operation"));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_bad_request() {
        for json in [
            r#"{"operation":"GetItem","session_id":"s","item_id":"12"}"#,
            r#"{"operation":"GetItem","session_id":"s","item_id":1.5}"#,
            r#"{"operation":"GetItem","session_id":7,"item_id":1}"#,
            r#"{"operation":"SearchItemsForSale","session_id":"s","category":1,"keywords":"mug"}"#,
            r#"{"operation":"SearchItemsForSale","session_id":"s","category":1,"keywords":[1]}"#,
            r#"{"operation":"ProvideFeedback","session_id":"s","item_id":1,"feedback":[1]}"#,
            r#"{"operation":5}"#,
            r#"{"operation":"Ping","request_id":[1]}"#,
        ] {
            let err = decode_buyer(json).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{json}");
        }
    }

    #[test]
    fn an_operation_of_the_other_side_is_unknown_here() {
        let err =
            decode_buyer(r#"{"operation":"RegisterItemForSale","request_id":"r"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOperation);
        assert_eq!(err.request_id, Some(RequestId::Text("r".into())));
        let err = seller::Request::decode(&mut br#"{"operation":"GetItem"}"#.to_vec()).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOperation);
        let err = seller::Request::decode(&mut br#"{"operation":"ping"}"#.to_vec()).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::UnknownOperation,
            "names are case-sensitive"
        );
    }

    #[test]
    fn card_details_never_appear_in_debug_output() {
        let requests = every_buyer_request();
        let purchase = &requests[11];
        assert_eq!(purchase.operation(), "MakePurchase");
        let shown = format!("{purchase:?}");
        assert!(shown.contains("MakePurchase"));
        assert!(!shown.contains("4111"), "{shown}");
        assert!(!shown.contains("012"), "{shown}");
    }
}
