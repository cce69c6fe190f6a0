//! Typed responses: the envelope (`status`, `message`, `code`, `request_id`) and the
//! result fields of every operation.
//!
//! Servers encode with [`encode_ok`] / [`encode_error`]; clients decode with
//! [`Response::decode`], naming the result type of the operation they called.

use crate::request::RequestId;
use crate::{frame, ErrorCode, Status};
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use simd_json::prelude::*;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Serialize)]
struct Outgoing<'a, B: Serialize> {
    status: Status,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a RequestId>,
    #[serde(flatten)]
    body: &'a B,
}

/// Appends one framed `OK` response with `body`'s fields to `out`.
pub fn encode_ok<B: Serialize>(
    out: &mut BytesMut,
    request_id: Option<&RequestId>,
    message: &str,
    body: &B,
) {
    frame::encode(
        out,
        &Outgoing {
            status: Status::Ok,
            message,
            code: None,
            request_id,
            body,
        },
    );
}

/// Appends one framed error response to `out`; the status follows from `code`.
pub fn encode_error(
    out: &mut BytesMut,
    request_id: Option<&RequestId>,
    code: ErrorCode,
    message: &str,
) {
    frame::encode(
        out,
        &Outgoing {
            status: code.status(),
            message,
            code: Some(code),
            request_id,
            body: &Empty {},
        },
    );
}

/// A failed call as a client sees it: the code and the server's sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Failure {}

/// A request a server refuses while handling it: the code and sentence to answer
/// and, for faults on the server's side (`INTERNAL`, `UNAVAILABLE`), the detail
/// to log there and never send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<String>,
}

impl Refusal {
    /// A refusal with nothing to log.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            detail: None,
        }
    }
}

impl From<crate::validate::Invalid> for Refusal {
    fn from(e: crate::validate::Invalid) -> Self {
        Refusal::new(e.code, e.message)
    }
}

/// A decoded response with result fields of type `B`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<B> {
    pub request_id: Option<RequestId>,
    pub status: Status,
    pub message: String,
    pub code: Option<ErrorCode>,
    /// The result fields; present exactly when `status` is `OK`.
    pub body: Option<B>,
}

/// What is wrong with a reply that is not a well-formed response. Servers
/// written for the predecessor's clients send some of these (an error without
/// a `code`, a result without one of its fields), so a client can count them
/// by [`Malformed::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    NotJson(String),
    NotAnObject,
    NoStatus,
    /// `status`, `code` or `request_id` of the wrong form.
    BadField(&'static str, String),
    /// An `Error` or `Timeout` without a `code`.
    NoCode,
    /// An `OK` result without a field its operation returns.
    MissingField(String),
    /// An `OK` result whose fields do not fit otherwise.
    BadResult(String),
}

impl Malformed {
    /// A short name for counting: `NOT_JSON`, `NOT_AN_OBJECT`, `NO_STATUS`,
    /// `BAD_FIELD`, `NO_CODE`, `MISSING_FIELD` or `BAD_RESULT`.
    pub fn kind(&self) -> &'static str {
        match self {
            Malformed::NotJson(_) => "NOT_JSON",
            Malformed::NotAnObject => "NOT_AN_OBJECT",
            Malformed::NoStatus => "NO_STATUS",
            Malformed::BadField(..) => "BAD_FIELD",
            Malformed::NoCode => "NO_CODE",
            Malformed::MissingField(_) => "MISSING_FIELD",
            Malformed::BadResult(_) => "BAD_RESULT",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotJson(e) => write!(f, "the response is not valid JSON: {e}"),
            Malformed::NotAnObject => f.write_str("the response is not a JSON object"),
            Malformed::NoStatus => f.write_str("the response has no `status`"),
            Malformed::BadField(name, e) => write!(f, "bad `{name}`: {e}"),
            Malformed::NoCode => f.write_str("an error response has no `code`"),
            Malformed::MissingField(e) | Malformed::BadResult(e) => write!(f, "bad result: {e}"),
        }
    }
}

impl std::error::Error for Malformed {}

impl<B: DeserializeOwned> Response<B> {
    /// Decodes a response frame body in place.
    ///
    /// # Errors
    /// What is malformed: not JSON, no `status`, an `Error` without a known
    /// `code`, or result fields that do not fit `B`.
    pub fn decode(buf: &mut [u8]) -> Result<Self, Malformed> {
        let value =
            simd_json::to_borrowed_value(buf).map_err(|e| Malformed::NotJson(e.to_string()))?;
        let object = value.as_object().ok_or(Malformed::NotAnObject)?;
        let field = |name: &str| object.get(name).filter(|v| !v.is_null());
        let status: Status = match field("status") {
            Some(v) => {
                Status::deserialize(v).map_err(|e| Malformed::BadField("status", e.to_string()))?
            }
            None => return Err(Malformed::NoStatus),
        };
        let message = field("message")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let code = match field("code") {
            Some(v) => Some(
                ErrorCode::deserialize(v)
                    .map_err(|e| Malformed::BadField("code", e.to_string()))?,
            ),
            None => None,
        };
        let request_id = match field("request_id") {
            Some(v) => Some(
                RequestId::deserialize(v)
                    .map_err(|e| Malformed::BadField("request_id", e.to_string()))?,
            ),
            None => None,
        };
        let body = match status {
            Status::Ok => Some(B::deserialize(&value).map_err(|e| {
                let e = e.to_string();
                if e.contains("missing field") {
                    Malformed::MissingField(e)
                } else {
                    Malformed::BadResult(e)
                }
            })?),
            Status::Error | Status::Timeout if code.is_none() => return Err(Malformed::NoCode),
            _ => None,
        };
        Ok(Response {
            request_id,
            status,
            message,
            code,
            body,
        })
    }
}

impl<B> Response<B> {
    /// The result fields, or the failure.
    ///
    /// # Errors
    /// The [`Failure`] of an `Error` or `Timeout` response.
    pub fn into_result(self) -> Result<B, Failure> {
        match (self.body, self.code) {
            (Some(body), _) => Ok(body),
            (None, code) => Err(Failure {
                code: code.unwrap_or(ErrorCode::Internal),
                message: self.message,
            }),
        }
    }
}

/// A price in cents as the JSON number the protocol carries (`999` -> `9.99`).
pub fn cents_to_price(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// An OK response with no result fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// An item's condition, canonical on output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    New,
    Used,
}

impl Condition {
    /// Parses `New` / `Used` in any letter case.
    pub fn parse(s: &str) -> Option<Condition> {
        if s.eq_ignore_ascii_case("new") {
            Some(Condition::New)
        } else if s.eq_ignore_ascii_case("used") {
            Some(Condition::Used)
        } else {
            None
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::New => "New",
            Condition::Used => "Used",
        }
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Condition::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown condition {s:?}")))
    }
}

/// An item as every response shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: i64,
    pub category: i64,
    pub item_name: String,
    pub keywords: Vec<String>,
    pub condition: Condition,
    pub sale_price: f64,
    pub quantity: i64,
    pub thumbs_up: i64,
    pub thumbs_down: i64,
    pub seller_id: i64,
}

/// Seller CreateAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerCreated {
    pub seller_id: i64,
}

/// Seller Login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerSession {
    pub session_id: String,
    pub seller_id: i64,
}

/// Buyer CreateAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerCreated {
    pub buyer_id: i64,
}

/// Buyer Login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerSession {
    pub session_id: String,
    pub buyer_id: i64,
}

/// GetSellerRating on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerRating {
    pub seller_id: i64,
    pub thumbs_up: i64,
    pub thumbs_down: i64,
    pub items_sold: i64,
}

/// RegisterItemForSale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRegistered {
    pub item_id: i64,
    pub category: i64,
}

/// ChangeItemPrice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceChanged {
    pub item_id: i64,
    pub sale_price: f64,
}

/// UpdateUnitsForSale: the new count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitsUpdated {
    pub item_id: i64,
    pub quantity: i64,
}

/// DisplayItemsForSale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemList {
    pub items: Vec<Item>,
}

/// SearchItemsForSale: one page of the ranking and the number of matches,
/// counted exactly up to [`SEARCH_COUNT_CAP`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub items: Vec<Item>,
    /// The number of matches, at most [`SEARCH_COUNT_CAP`].
    pub total: i64,
    /// False when there are more than `total` matches.
    #[serde(default = "exact")]
    pub total_exact: bool,
}

/// Search counts matches exactly up to this many (PROTOCOL.md).
pub const SEARCH_COUNT_CAP: i64 = 10_000;

fn exact() -> bool {
    true
}

/// GetItem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemDetail {
    pub item: Item,
}

/// The active cart: item id (as a string) to quantity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartContents {
    pub cart_items: BTreeMap<String, i64>,
}

/// One line of a purchase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseLine {
    pub item_id: i64,
    /// The item's name as it was when bought.
    #[serde(default)]
    pub item_name: String,
    pub quantity: i64,
    pub unit_price: f64,
}

/// MakePurchase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseReceipt {
    pub purchase_id: i64,
    pub total: f64,
    pub lines: Vec<PurchaseLine>,
}

/// ProvideFeedback: the item's counts after the vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Votes {
    pub item_id: i64,
    pub thumbs_up: i64,
    pub thumbs_down: i64,
}

/// One entry of the purchase history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseRecord {
    pub purchase_id: i64,
    pub item_id: i64,
    /// The item's name as it was when bought.
    #[serde(default)]
    pub item_name: String,
    pub quantity: i64,
    pub unit_price: f64,
    pub purchased_at: String,
}

/// GetBuyerPurchases, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseHistory {
    pub purchases: Vec<PurchaseRecord>,
}

/// Ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub server: String,
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameDecoder;

    fn one_frame(out: &mut BytesMut) -> BytesMut {
        FrameDecoder::default().decode(out).unwrap().unwrap()
    }

    fn item() -> Item {
        Item {
            item_id: 12,
            category: 3,
            item_name: "Blue \"mug\" ☕".into(),
            keywords: vec!["mug".into(), "blue".into()],
            condition: Condition::Used,
            sale_price: 9.99,
            quantity: 4,
            thumbs_up: 2,
            thumbs_down: 1,
            seller_id: 7,
        }
    }

    fn round_trip<B>(body: &B)
    where
        B: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let mut out = BytesMut::new();
        let id = RequestId::Text("r-1".into());
        encode_ok(&mut out, Some(&id), "done", body);
        let mut frame = one_frame(&mut out);
        let response = Response::<B>::decode(&mut frame).unwrap();
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.message, "done");
        assert_eq!(response.request_id, Some(id));
        assert_eq!(response.code, None);
        assert_eq!(&response.into_result().unwrap(), body);
    }

    #[test]
    fn every_result_type_round_trips() {
        round_trip(&Empty {});
        round_trip(&SellerCreated { seller_id: 1 });
        round_trip(&SellerSession {
            session_id: "abc".into(),
            seller_id: 1,
        });
        round_trip(&BuyerCreated { buyer_id: 2 });
        round_trip(&BuyerSession {
            session_id: "abc".into(),
            buyer_id: 2,
        });
        round_trip(&SellerRating {
            seller_id: 1,
            thumbs_up: 3,
            thumbs_down: 4,
            items_sold: 5,
        });
        round_trip(&ItemRegistered {
            item_id: 9,
            category: 3,
        });
        round_trip(&PriceChanged {
            item_id: 9,
            sale_price: 0.01,
        });
        round_trip(&UnitsUpdated {
            item_id: 9,
            quantity: 0,
        });
        round_trip(&ItemList {
            items: vec![item(), item()],
        });
        round_trip(&SearchResults {
            items: vec![item()],
            total: 40,
            total_exact: false,
        });
        round_trip(&ItemDetail { item: item() });
        round_trip(&CartContents {
            cart_items: [("12".to_owned(), 3)].into_iter().collect(),
        });
        round_trip(&PurchaseReceipt {
            purchase_id: 1,
            total: 29.97,
            lines: vec![PurchaseLine {
                item_id: 12,
                item_name: "Blue mug".into(),
                quantity: 3,
                unit_price: 9.99,
            }],
        });
        round_trip(&Votes {
            item_id: 1,
            thumbs_up: 1,
            thumbs_down: 0,
        });
        round_trip(&PurchaseHistory {
            purchases: vec![PurchaseRecord {
                purchase_id: 1,
                item_id: 12,
                item_name: "Blue mug".into(),
                quantity: 3,
                unit_price: 9.99,
                purchased_at: "2026-11-25T18:00:00Z".into(),
            }],
        });
        round_trip(&Pong {
            server: "buyer".into(),
            version: 1,
        });
    }

    #[test]
    fn an_error_response_has_status_code_and_message_and_no_result() {
        let mut out = BytesMut::new();
        encode_error(&mut out, None, ErrorCode::NotFound, "no item 3");
        let mut frame = one_frame(&mut out);
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            r#"{"status":"Error","message":"no item 3","code":"NOT_FOUND"}"#
        );
        let response = Response::<ItemDetail>::decode(&mut frame).unwrap();
        assert_eq!(response.status, Status::Error);
        assert_eq!(
            response.into_result().unwrap_err(),
            Failure {
                code: ErrorCode::NotFound,
                message: "no item 3".into()
            }
        );
    }

    #[test]
    fn session_expired_is_sent_with_status_timeout() {
        let mut out = BytesMut::new();
        encode_error(
            &mut out,
            Some(&RequestId::Int(4)),
            ErrorCode::SessionExpired,
            "log in again",
        );
        let mut frame = one_frame(&mut out);
        let text = String::from_utf8(frame.to_vec()).unwrap();
        assert!(text.contains(r#""status":"Timeout""#), "{text}");
        let response = Response::<Empty>::decode(&mut frame).unwrap();
        assert_eq!(response.status, Status::Timeout);
        assert_eq!(response.request_id, Some(RequestId::Int(4)));
    }

    #[test]
    fn prices_are_written_to_the_cent_and_conditions_read_in_any_case() {
        assert_eq!(cents_to_price(999), 9.99);
        assert_eq!(cents_to_price(100_000_000_000), 1e9);
        assert_eq!(Condition::parse("uSeD"), Some(Condition::Used));
        assert_eq!(Condition::parse("mint"), None);
        let mut out = BytesMut::new();
        encode_ok(&mut out, None, "ok", &item());
        let text = String::from_utf8(one_frame(&mut out).to_vec()).unwrap();
        assert!(text.contains(r#""sale_price":9.99"#), "{text}");
        assert!(text.contains(r#""condition":"Used""#), "{text}");
    }

    #[test]
    fn malformed_responses_are_reported_not_panicked_on() {
        for (bad, kind) in [
            ("nope", "NOT_JSON"),
            ("[]", "NOT_AN_OBJECT"),
            (r#"{"message":"x"}"#, "NO_STATUS"),
            (r#"{"status":"Error","message":"x"}"#, "NO_CODE"),
            (r#"{"status":"Weird"}"#, "BAD_FIELD"),
            (r#"{"status":"Error","code":"NOPE"}"#, "BAD_FIELD"),
            (r#"{"status":"OK","message":"x"}"#, "MISSING_FIELD"),
            (r#"{"status":"OK","seller_id":"one"}"#, "BAD_RESULT"),
        ] {
            let err =
                Response::<SellerCreated>::decode(&mut bad.as_bytes().to_vec()).expect_err(bad);
            assert_eq!(err.kind(), kind, "{bad}: {err}");
        }
    }
}
