//! The validation rules of PROTOCOL.md, one function per value.
//!
//! Each returns the normalised value or an [`Invalid`] carrying the protocol code to
//! answer (`INVALID_ARGUMENT`, or `PAYMENT_DECLINED` for card rules). Servers call
//! these before touching a database, so a rejected request changes nothing.

use crate::request::{Checkout, Scalar};
use crate::response::Condition;
use crate::ErrorCode;
use std::fmt;

/// The largest price, quantity or quantity change the protocol accepts.
pub const MAX_AMOUNT: i64 = 1_000_000_000;
/// The most keywords an item or a search may carry.
pub const MAX_KEYWORDS: usize = 5;
/// The default and largest page size of a search.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// A value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        code: ErrorCode::InvalidArgument,
        message: message.into(),
    })
}

fn declined<T>(message: &str) -> Result<T, Invalid> {
    Err(Invalid {
        code: ErrorCode::PaymentDeclined,
        message: format!("payment declined: {message}"),
    })
}

fn chars_between(field: &str, s: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = s.chars().count();
    if n < min || n > max {
        return invalid(format!(
            "{field} must be {min} to {max} characters, got {n}"
        ));
    }
    Ok(())
}

/// `username`: 1 to 32 characters.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn username(s: &str) -> Result<(), Invalid> {
    chars_between("username", s, 1, 32)
}

/// `password`: 1 to 72 bytes (the message never repeats the password).
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn password(s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 72 {
        return invalid(format!("password must be 1 to 72 bytes, got {}", s.len()));
    }
    Ok(())
}

/// Text in Unicode's composed form (NFC): `e` + a combining acute accent
/// becomes `é`, so the same word typed either way is the same word.
pub fn composed(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfc().collect()
}

/// `item_name`: 1 to 32 characters once composed (NFC); returned composed.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn item_name(s: &str) -> Result<String, Invalid> {
    let name = composed(s);
    chars_between("item_name", &name, 1, 32)?;
    Ok(name)
}

/// `category`: 0 to 2^31-1.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn category(n: i64) -> Result<i32, Invalid> {
    i32::try_from(n).ok().filter(|c| *c >= 0).map_or_else(
        || invalid(format!("category must be 0 to 2147483647, got {n}")),
        Ok,
    )
}

/// `keywords`: at most 5, each 1 to 8 characters once composed (NFC);
/// returned composed and lower-cased with duplicates collapsed, in first-seen
/// order.
///
/// # Errors
/// `INVALID_ARGUMENT` for too many keywords or one of a bad length.
pub fn keywords(list: &[String]) -> Result<Vec<String>, Invalid> {
    if list.len() > MAX_KEYWORDS {
        return invalid(format!(
            "at most {MAX_KEYWORDS} keywords are allowed, got {}",
            list.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for keyword in list {
        let keyword = composed(keyword);
        chars_between("each keyword", &keyword, 1, 8)?;
        let lower = keyword.to_lowercase();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    Ok(out)
}

/// `condition`: `New` or `Used` in any case.
///
/// # Errors
/// `INVALID_ARGUMENT` for anything else.
pub fn condition(s: &str) -> Result<Condition, Invalid> {
    Condition::parse(s).map_or_else(
        || invalid(format!("condition must be New or Used, got {s:?}")),
        Ok,
    )
}

/// `sale_price` / `new_price`: finite, 0 to 10^9; returned in cents.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn price(p: f64) -> Result<i64, Invalid> {
    if !p.is_finite() || !(0.0..=MAX_AMOUNT as f64).contains(&p) {
        return invalid(format!("price must be between 0 and 1000000000, got {p}"));
    }
    Ok((p * 100.0).round() as i64)
}

/// `quantity` of a cart change: 1 to 10^9.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn quantity(n: i64) -> Result<i64, Invalid> {
    if !(1..=MAX_AMOUNT).contains(&n) {
        return invalid(format!("quantity must be 1 to 1000000000, got {n}"));
    }
    Ok(n)
}

/// `quantity` of RegisterItemForSale: 0 to 10^9.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn stock(n: i64) -> Result<i64, Invalid> {
    if !(0..=MAX_AMOUNT).contains(&n) {
        return invalid(format!("quantity must be 0 to 1000000000, got {n}"));
    }
    Ok(n)
}

/// `quantity_change` of UpdateUnitsForSale: -10^9 to 10^9.
///
/// # Errors
/// `INVALID_ARGUMENT` outside that range.
pub fn quantity_change(n: i64) -> Result<i64, Invalid> {
    if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&n) {
        return invalid(format!(
            "quantity_change must be -1000000000 to 1000000000, got {n}"
        ));
    }
    Ok(n)
}

/// `feedback`: `1`/`"up"` is a thumbs up (`true`), `0`/`"down"` a thumbs down.
///
/// # Errors
/// `INVALID_ARGUMENT` for any other value.
pub fn vote(v: &Scalar) -> Result<bool, Invalid> {
    match v {
        Scalar::Int(1) => Ok(true),
        Scalar::Int(0) => Ok(false),
        Scalar::Text(s) if s.eq_ignore_ascii_case("up") => Ok(true),
        Scalar::Text(s) if s.eq_ignore_ascii_case("down") => Ok(false),
        other => invalid(format!(
            "feedback must be 1 or 0 (\"up\" or \"down\"), got {}",
            other.to_text()
        )),
    }
}

/// A search's `limit` (default 50, 1 to 500) and `offset` (default 0, at least 0).
///
/// # Errors
/// `INVALID_ARGUMENT` outside those ranges.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), Invalid> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return invalid(format!("limit must be 1 to {MAX_LIMIT}, got {limit}"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return invalid(format!("offset must be 0 or more, got {offset}"));
    }
    Ok((limit, offset))
}

/// Whether `digits` pass the Luhn check digit of card numbers.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn small_number(v: &Scalar) -> Option<i64> {
    match v {
        Scalar::Int(n) => Some(*n),
        Scalar::Text(s) if all_digits(s) && s.len() <= 6 => s.parse().ok(),
        Scalar::Text(_) => None,
    }
}

/// The card rules of a checkout, judged against today's `(year, month)`.
///
/// # Errors
/// `PAYMENT_DECLINED` naming the rule that failed (never echoing the card data).
pub fn card(checkout: &Checkout, today: (i32, u32)) -> Result<(), Invalid> {
    let holder = checkout.cardholder_name.chars().count();
    if !(1..=64).contains(&holder) || checkout.cardholder_name.trim().is_empty() {
        return declined("the cardholder name must be 1 to 64 characters");
    }
    let number = checkout.card_number.to_text();
    if !all_digits(&number) || !(12..=19).contains(&number.len()) {
        return declined("the card number must be 12 to 19 digits");
    }
    if !luhn(&number) {
        return declined("the card number fails its check digit");
    }
    let month = small_number(&checkout.expiry_month);
    let Some(month @ 1..=12) = month else {
        return declined("the expiry month must be 1 to 12");
    };
    let year = match &checkout.expiry_year {
        Scalar::Int(n) => Some(*n),
        Scalar::Text(s) if s.len() == 4 && all_digits(s) => s.parse().ok(),
        Scalar::Text(_) => None,
    };
    let Some(year @ 1000..=9999) = year else {
        return declined("the expiry year must have 4 digits");
    };
    if (year, month) < (i64::from(today.0), i64::from(today.1)) {
        return declined("the card has expired");
    }
    let code = checkout.security_code.to_text();
    if !all_digits(&code) || !(3..=4).contains(&code.len()) {
        return declined("the security code must be 3 or 4 digits");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: fmt::Debug>(r: Result<T, Invalid>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn names_and_keywords_are_one_word_however_their_accents_were_typed() {
        let decomposed = "cre\u{300}me";
        assert_eq!(keywords(&[decomposed.into()]).unwrap(), vec!["crème"]);
        assert_eq!(
            keywords(&["Crème".into(), decomposed.into()]).unwrap(),
            vec!["crème"],
            "one keyword, not two"
        );
        assert_eq!(item_name("e\u{301}clair").unwrap(), "éclair");
        // Eight letters with combining accents are eight characters composed.
        assert!(keywords(&["e\u{301}".repeat(8)]).is_ok());
    }

    #[test]
    fn username_is_one_to_32_characters_counted_as_characters() {
        assert!(username("a").is_ok());
        assert!(username(&"é".repeat(32)).is_ok());
        assert_eq!(code(username("")), ErrorCode::InvalidArgument);
        assert_eq!(code(username(&"é".repeat(33))), ErrorCode::InvalidArgument);
    }

    #[test]
    fn password_is_one_to_72_bytes_and_never_echoed() {
        assert!(password("x").is_ok());
        assert!(password(&"x".repeat(72)).is_ok());
        assert!(password(&"é".repeat(36)).is_ok());
        assert!(password(&"é".repeat(37)).is_err(), "74 bytes");
        let err = password(&"secret".repeat(13)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(!err.message.contains("secret"));
        assert!(password("").is_err());
    }

    #[test]
    fn item_name_is_one_to_32_characters() {
        assert!(item_name(&"m".repeat(32)).is_ok());
        assert!(item_name(&"m".repeat(33)).is_err());
        assert!(item_name("").is_err());
    }

    #[test]
    fn category_is_zero_to_i32_max() {
        assert_eq!(category(0), Ok(0));
        assert_eq!(category(2_147_483_647), Ok(i32::MAX));
        assert_eq!(code(category(-1)), ErrorCode::InvalidArgument);
        assert_eq!(code(category(2_147_483_648)), ErrorCode::InvalidArgument);
    }

    #[test]
    fn keywords_are_at_most_five_of_one_to_eight_characters_lowered_and_collapsed() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(keywords(&[]), Ok(vec![]));
        assert_eq!(
            keywords(&list(&["Mug", "mug", "BLUE", "a", "12345678"])),
            Ok(list(&["mug", "blue", "a", "12345678"]))
        );
        assert_eq!(
            code(keywords(&list(&["a", "b", "c", "d", "e", "f"]))),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(keywords(&list(&["123456789"]))),
            ErrorCode::InvalidArgument
        );
        assert_eq!(code(keywords(&list(&[""]))), ErrorCode::InvalidArgument);
        assert_eq!(keywords(&list(&["ÄÖÜßéèêë"])), Ok(list(&["äöüßéèêë"])));
    }

    #[test]
    fn condition_is_new_or_used_in_any_case() {
        assert_eq!(condition("NEW"), Ok(Condition::New));
        assert_eq!(condition("used"), Ok(Condition::Used));
        assert_eq!(code(condition("broken")), ErrorCode::InvalidArgument);
        assert_eq!(code(condition("")), ErrorCode::InvalidArgument);
    }

    #[test]
    fn price_is_zero_to_a_billion_kept_to_the_cent() {
        assert_eq!(price(0.0), Ok(0));
        assert_eq!(price(9.999), Ok(1000));
        assert_eq!(price(0.1 + 0.2), Ok(30));
        assert_eq!(price(1e9), Ok(100_000_000_000));
        assert_eq!(code(price(1e9 + 0.01)), ErrorCode::InvalidArgument);
        assert_eq!(code(price(-0.01)), ErrorCode::InvalidArgument);
        assert_eq!(code(price(f64::NAN)), ErrorCode::InvalidArgument);
        assert_eq!(code(price(f64::INFINITY)), ErrorCode::InvalidArgument);
    }

    #[test]
    fn quantities_respect_their_bounds() {
        assert_eq!(quantity(1), Ok(1));
        assert_eq!(quantity(MAX_AMOUNT), Ok(MAX_AMOUNT));
        assert!(quantity(0).is_err());
        assert!(quantity(MAX_AMOUNT + 1).is_err());
        assert_eq!(stock(0), Ok(0));
        assert!(stock(-1).is_err());
        assert!(stock(MAX_AMOUNT + 1).is_err());
        assert_eq!(quantity_change(-MAX_AMOUNT), Ok(-MAX_AMOUNT));
        assert!(quantity_change(-MAX_AMOUNT - 1).is_err());
        assert!(quantity_change(MAX_AMOUNT + 1).is_err());
    }

    #[test]
    fn vote_accepts_one_zero_up_and_down_only() {
        assert_eq!(vote(&Scalar::Int(1)), Ok(true));
        assert_eq!(vote(&Scalar::Int(0)), Ok(false));
        assert_eq!(vote(&Scalar::Text("UP".into())), Ok(true));
        assert_eq!(vote(&Scalar::Text("down".into())), Ok(false));
        assert_eq!(code(vote(&Scalar::Int(2))), ErrorCode::InvalidArgument);
        assert_eq!(code(vote(&Scalar::Int(-1))), ErrorCode::InvalidArgument);
        assert_eq!(
            code(vote(&Scalar::Text("1".into()))),
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn page_defaults_to_fifty_and_caps_at_five_hundred() {
        assert_eq!(page(None, None), Ok((50, 0)));
        assert_eq!(page(Some(500), Some(7)), Ok((500, 7)));
        assert_eq!(page(Some(1), None), Ok((1, 0)));
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(501), None).is_err());
        assert!(page(None, Some(-1)).is_err());
    }

    fn checkout() -> Checkout {
        Checkout {
            session_id: "s".into(),
            cardholder_name: "Ann Smith".into(),
            card_number: Scalar::Text("4111111111111111".into()),
            expiry_month: Scalar::Int(11),
            expiry_year: Scalar::Int(2026),
            security_code: Scalar::Text("012".into()),
        }
    }

    const TODAY: (i32, u32) = (2026, 11);

    fn declined_by(change: impl FnOnce(&mut Checkout)) -> ErrorCode {
        let mut c = checkout();
        change(&mut c);
        code(card(&c, TODAY))
    }

    #[test]
    fn a_valid_card_passes_including_one_expiring_this_month() {
        assert_eq!(card(&checkout(), TODAY), Ok(()));
        let mut c = checkout();
        c.card_number = Scalar::Int(4_111_111_111_111_111);
        c.expiry_month = Scalar::Text("12".into());
        c.expiry_year = Scalar::Text("2026".into());
        c.security_code = Scalar::Int(1234);
        assert_eq!(card(&c, TODAY), Ok(()));
        c.card_number = Scalar::Text("000000000000".into());
        assert_eq!(card(&c, TODAY), Ok(()), "12 digits passing Luhn");
    }

    #[test]
    fn each_card_rule_declines_on_the_wrong_side_of_its_limit() {
        use ErrorCode::PaymentDeclined as D;
        assert_eq!(declined_by(|c| c.cardholder_name = String::new()), D);
        assert_eq!(declined_by(|c| c.cardholder_name = "x".repeat(65)), D);
        assert_eq!(
            declined_by(|c| c.card_number = Scalar::Text("4111111111111112".into())),
            D
        );
        assert_eq!(
            declined_by(|c| c.card_number = Scalar::Text("00000000000".into())),
            D
        );
        assert_eq!(
            declined_by(|c| c.card_number = Scalar::Text("0".repeat(20))),
            D
        );
        assert_eq!(
            declined_by(|c| c.card_number = Scalar::Text("4111-1111-1111-1111".into())),
            D
        );
        assert_eq!(declined_by(|c| c.expiry_month = Scalar::Int(0)), D);
        assert_eq!(declined_by(|c| c.expiry_month = Scalar::Int(13)), D);
        assert_eq!(
            declined_by(|c| c.expiry_month = Scalar::Int(10)),
            D,
            "last month"
        );
        assert_eq!(declined_by(|c| c.expiry_year = Scalar::Int(2025)), D);
        assert_eq!(declined_by(|c| c.expiry_year = Scalar::Int(26)), D);
        assert_eq!(
            declined_by(|c| c.expiry_year = Scalar::Text("26".into())),
            D
        );
        assert_eq!(
            declined_by(|c| c.security_code = Scalar::Text("12".into())),
            D
        );
        assert_eq!(
            declined_by(|c| c.security_code = Scalar::Text("12345".into())),
            D
        );
        assert_eq!(
            declined_by(|c| c.security_code = Scalar::Text("12a".into())),
            D
        );
        let err = card(
            &Checkout {
                card_number: Scalar::Text("4111111111111112".into()),
                ..checkout()
            },
            TODAY,
        )
        .unwrap_err();
        assert!(!err.message.contains("4111"));
    }
}
