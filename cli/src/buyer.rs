//! The buyer's commands.

use crate::account;
use crate::args::{Args, Usage};
use crate::shell::{CliError, Command, Ctx, Side};
use crate::table::{self, money, Table};
use wire::buyer::op;
use wire::request::{
    CartChange, Checkout, Feedback, ItemRef, NoFields, Scalar, Search, SellerRef, SessionOnly,
};
use wire::response::CartContents;

fn session(ctx: &Ctx) -> Result<SessionOnly, CliError> {
    Ok(SessionOnly {
        session_id: ctx.session()?,
    })
}

fn create_account(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    account::create::<op::CreateAccount>(ctx, args, "buyer", |r| r.buyer_id)
}

fn login(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    warn_unsaved_cart(ctx);
    account::login::<op::Login, op::Logout>(ctx, args, "buyer", |r| (r.session_id, r.buyer_id))?;
    ctx.cart_unsaved = false;
    if !ctx.json {
        // The new session's cart starts as the saved cart: say what came back.
        let cart = ctx.call::<op::DisplayCart>(session(ctx)?)?;
        let units: i64 = cart.cart_items.values().sum();
        if units > 0 {
            ctx.show(&format!(
                "your saved cart is back: {}, {} (cart shows it)",
                table::count(cart.cart_items.len() as i64, "item", "items"),
                table::count(units, "unit", "units")
            ));
        }
    }
    Ok(())
}

/// Says that changes to the cart since the last save go with the session.
fn warn_unsaved_cart(ctx: &mut Ctx) {
    if ctx.cart_unsaved && ctx.login.is_some() {
        ctx.show("your cart changes since the last save are discarded (save keeps a cart)");
        ctx.cart_unsaved = false;
    }
}

/// Ends the session on the server (its unsaved cart goes) and forgets it.
///
/// # Errors
/// When the server cannot be reached.
pub fn logout_session(ctx: &mut Ctx) -> Result<(), CliError> {
    warn_unsaved_cart(ctx);
    account::end_session::<op::Logout>(ctx)
}

fn logout(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    warn_unsaved_cart(ctx);
    account::logout::<op::Logout>(ctx, args)
}

fn search(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let category: i64 = args.number("CATEGORY")?;
    wire::validate::category(category).map_err(|_| {
        Usage(format!(
            "CATEGORY must be 0 to {}, got {category}",
            i32::MAX
        ))
    })?;
    let limit = args.option_number("limit")?;
    let offset = args.option_number("offset")?;
    let keywords = args.rest();
    if keywords.len() > 5 {
        return Err(Usage(format!("at most 5 keywords, got {}", keywords.len())).into());
    }
    if let Some(k) = keywords
        .iter()
        .find(|k| !(1..=8).contains(&k.chars().count()))
    {
        return Err(Usage(format!(
            "keyword {k:?} has {} characters; keywords have 1 to 8",
            k.chars().count()
        ))
        .into());
    }
    let r = ctx.call::<op::SearchItemsForSale>(Search {
        session_id: ctx.session()?,
        category,
        keywords,
        limit,
        offset,
    })?;
    for item in &r.items {
        ctx.seen_prices.insert(item.item_id, item.sale_price);
    }
    let first = offset.unwrap_or(0);
    let total = if r.total_exact {
        r.total.to_string()
    } else {
        format!("more than {}", r.total)
    };
    let matches = if r.total == 1 { "match" } else { "matches" };
    if r.items.is_empty() {
        ctx.show(&match r.total {
            0 => "no items match".to_owned(),
            _ => format!("nothing at offset {first} ({total} {matches})"),
        });
    } else {
        let shown = r.items.len() as i64;
        let next = if first + shown < r.total {
            format!("; the next page: --offset {}", first + shown)
        } else {
            String::new()
        };
        ctx.show(&format!(
            "{}\n{shown} of {total} {matches}, from offset {first}{next}",
            table::items(&r.items, true),
        ));
    }
    Ok(())
}

fn item(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let item_id = args.number("ITEM")?;
    args.done()?;
    let r = ctx.call::<op::GetItem>(ItemRef {
        session_id: ctx.session()?,
        item_id,
    })?;
    ctx.seen_prices.insert(r.item.item_id, r.item.sale_price);
    ctx.show(&table::items(&[r.item], true));
    Ok(())
}

/// What a cart comes to now.
struct CartTotal {
    /// Of the units that can be bought now.
    total: f64,
    /// Lines that cannot be bought as they stand (sold out, fewer units left,
    /// no longer listed): a purchase would be refused.
    short: Vec<i64>,
}

/// Prints a cart with item names, prices and the total (one GetItem per line),
/// marking lines that cannot be bought now and prices that changed since this
/// CLI last showed them ("was 7.00"); the total counts only what can be
/// bought. With `--json`, one JSON line: the response's `cart_items` and the
/// same lines and total.
fn show_cart(ctx: &mut Ctx, cart: &CartContents) -> Result<CartTotal, CliError> {
    if ctx.json {
        return cart_json(ctx, cart);
    }
    if cart.cart_items.is_empty() {
        ctx.show("(the cart is empty)");
        return Ok(CartTotal {
            total: 0.0,
            short: Vec::new(),
        });
    }
    let mut lines: Vec<(i64, i64)> = cart
        .cart_items
        .iter()
        .filter_map(|(id, q)| id.parse().ok().map(|id| (id, *q)))
        .collect();
    lines.sort_unstable();
    let mut t = Table::new(&[">ITEM", "NAME", ">QTY", ">PRICE", ">SUBTOTAL"]);
    let mut total = 0.0;
    let mut short = Vec::new();
    for (item_id, quantity) in lines {
        let detail = ctx.call::<op::GetItem>(ItemRef {
            session_id: ctx.session()?,
            item_id,
        });
        let (name, price, buyable) = match detail {
            Ok(d) if d.item.quantity == 0 => (
                format!("{} (sold out)", d.item.item_name),
                Some(d.item.sale_price),
                0,
            ),
            Ok(d) if d.item.quantity < quantity => (
                format!("{} (only {} left)", d.item.item_name, d.item.quantity),
                Some(d.item.sale_price),
                d.item.quantity,
            ),
            Ok(d) => (d.item.item_name, Some(d.item.sale_price), quantity),
            Err(CliError::Server(f)) if f.code == wire::ErrorCode::NotFound => {
                ("(no longer listed)".into(), None, 0)
            }
            Err(e) => return Err(e),
        };
        if buyable < quantity {
            short.push(item_id);
        }
        let price_cell = match price {
            None => "-".to_owned(),
            Some(p) => {
                let was = ctx
                    .seen_prices
                    .insert(item_id, p)
                    .filter(|old| (old - p).abs() >= 0.005);
                match was {
                    Some(old) => format!("{} (was {})", money(p), money(old)),
                    None => money(p),
                }
            }
        };
        let subtotal = price.filter(|_| buyable > 0).map(|p| p * buyable as f64);
        total += subtotal.unwrap_or(0.0);
        t.row(vec![
            item_id.to_string(),
            name,
            quantity.to_string(),
            price_cell,
            subtotal.map_or_else(|| "-".into(), money),
        ]);
    }
    let note = if short.is_empty() {
        String::new()
    } else {
        " (what can be bought now)".to_owned()
    };
    ctx.show(&format!("{}\ntotal {}{note}", t.render(), money(total)));
    Ok(CartTotal { total, short })
}

/// The `--json` form of a cart: `{"status":"OK","cart_items":{..},"lines":[{
/// "item_id","item_name","quantity","unit_price","subtotal","available"}],
/// "total"}`; a line whose item is gone has null name and prices.
fn cart_json(ctx: &mut Ctx, cart: &CartContents) -> Result<CartTotal, CliError> {
    use simd_json::json;
    let mut lines = Vec::new();
    let mut total = 0.0;
    let mut short = Vec::new();
    for (id, &quantity) in &cart.cart_items {
        let Ok(item_id) = id.parse::<i64>() else {
            continue;
        };
        let detail = ctx.call_quietly::<op::GetItem>(ItemRef {
            session_id: ctx.session()?,
            item_id,
        });
        lines.push(match detail {
            Ok(d) => {
                let buyable = quantity.min(d.item.quantity);
                if buyable < quantity {
                    short.push(item_id);
                }
                let subtotal = d.item.sale_price * buyable as f64;
                total += subtotal;
                json!({"item_id": item_id, "item_name": d.item.item_name,
                       "quantity": quantity, "unit_price": d.item.sale_price,
                       "subtotal": subtotal, "available": d.item.quantity})
            }
            Err(CliError::Server(f)) if f.code == wire::ErrorCode::NotFound => {
                short.push(item_id);
                json!({"item_id": item_id, "item_name": null, "quantity": quantity,
                       "unit_price": null, "subtotal": null, "available": 0})
            }
            Err(e) => return Err(e),
        });
    }
    let value = json!({"status": "OK", "cart_items": cart.cart_items.clone(),
                       "lines": lines, "total": (total * 100.0).round() / 100.0});
    println!(
        "{}",
        simd_json::to_string(&value).map_err(|e| CliError::Other(e.to_string()))?
    );
    Ok(CartTotal { total, short })
}

fn change(ctx: &mut Ctx, mut args: Args, add: bool) -> Result<(), CliError> {
    let item_id = args.number("ITEM")?;
    let quantity: i64 = match args.opt_word() {
        Some(q) => q
            .parse()
            .map_err(|_| Usage(format!("QTY must be a number, got {q:?}")))?,
        None => 1,
    };
    args.done()?;
    wire::validate::quantity(quantity).map_err(|_| {
        Usage(format!(
            "QTY must be 1 to {}, got {quantity}",
            wire::validate::MAX_AMOUNT
        ))
    })?;
    let change = CartChange {
        session_id: ctx.session()?,
        item_id,
        quantity,
    };
    let cart = if add {
        ctx.call_quietly::<op::AddItemToCart>(change)?
    } else {
        ctx.call_quietly::<op::RemoveItemFromCart>(change)?
    };
    ctx.cart_unsaved = true;
    show_cart(ctx, &cart).map(|_| ())
}

fn cart(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let cart = ctx.call_quietly::<op::DisplayCart>(session(ctx)?)?;
    show_cart(ctx, &cart).map(|_| ())
}

fn save(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let _ = ctx.call::<op::SaveCart>(session(ctx)?)?;
    ctx.cart_unsaved = false;
    ctx.show("cart saved: it will be there at your next login");
    Ok(())
}

fn clear(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let _ = ctx.call::<op::ClearCart>(session(ctx)?)?;
    ctx.cart_unsaved = false;
    ctx.show("cart cleared (and the saved cart too)");
    Ok(())
}

fn buy(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let name = args.option("name");
    let number = args.option("number");
    let expiry = args.option("expiry");
    let cvc = args.option("cvc");
    let confirmed = args.flag("yes");
    args.done()?;
    // What was given on the line is checked before anything is sent or any
    // charge is asked about: a typing mistake is the person's to fix, in the
    // field's own words, not a payment the processor declined.
    let number = number.map(|n| card_digits(&n));
    if let Some(name) = &name {
        check_holder(name)?;
    }
    if let Some(number) = &number {
        check_number(number)?;
    }
    if let Some(expiry) = &expiry {
        parse_expiry(expiry)?;
    }
    if let Some(cvc) = &cvc {
        check_security_code(cvc)?;
    }
    let session_id = ctx.session()?;
    if ctx.interactive && !confirmed {
        let cart = ctx.call::<op::DisplayCart>(session(ctx)?)?;
        if cart.cart_items.is_empty() {
            return Err(CliError::Other("the cart is empty; nothing to buy".into()));
        }
        let CartTotal { total, short } = show_cart(ctx, &cart)?;
        if let Some(item) = short.first() {
            return Err(CliError::Other(format!(
                "item {item} cannot be bought as the cart has it (see above): change the \
                 line (remove {item}) before buying; nothing was charged"
            )));
        }
        if !ctx.confirm(&format!("Charge {} to your card? [y/N] ", money(total)))? {
            ctx.show("not charged: nothing bought");
            return Ok(());
        }
    }
    let cardholder_name = ctx.ask(name, "Cardholder name: ")?;
    check_holder(&cardholder_name)?;
    let card_number = match number {
        Some(number) => number,
        None => card_digits(&ctx.ask(None, "Card number: ")?),
    };
    check_number(&card_number)?;
    let expiry = ctx.ask(expiry, "Expiry (MM/YYYY): ")?;
    let (month, year) = parse_expiry(&expiry)?;
    let security_code = ctx.secret(cvc, "Security code: ")?;
    check_security_code(&security_code)?;
    let r = ctx.call::<op::MakePurchase>(Checkout {
        session_id,
        cardholder_name,
        card_number: Scalar::Text(card_number),
        expiry_month: Scalar::Int(month),
        expiry_year: Scalar::Int(year),
        security_code: Scalar::Text(security_code),
    })?;
    ctx.cart_unsaved = false;
    let mut t = Table::new(&[">ITEM", "NAME", ">QTY", ">UNIT PRICE"]);
    for line in &r.lines {
        t.row(vec![
            line.item_id.to_string(),
            line.item_name.clone(),
            line.quantity.to_string(),
            money(line.unit_price),
        ]);
    }
    ctx.show(&format!(
        "purchase {} done\n{}\ntotal {}",
        r.purchase_id,
        t.render(),
        money(r.total)
    ));
    Ok(())
}

/// A card number as typed, less the spaces and dashes people group it with.
fn card_digits(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// The cardholder name: 1 to 64 characters, not only spaces.
fn check_holder(name: &str) -> Result<(), Usage> {
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(Usage(format!(
            "the cardholder name must be 1 to 64 characters, got {}",
            if name.trim().is_empty() {
                "none".to_owned()
            } else {
                name.chars().count().to_string()
            }
        )));
    }
    Ok(())
}

/// The card number: 12 to 19 digits with a right check digit. Never echoed.
fn check_number(number: &str) -> Result<(), Usage> {
    if number.is_empty()
        || !number.bytes().all(|b| b.is_ascii_digit())
        || !(12..=19).contains(&number.len())
    {
        return Err(Usage("the card number must be 12 to 19 digits".into()));
    }
    if !wire::validate::luhn(number) {
        return Err(Usage(
            "the card number fails its check digit: a digit is mistyped".into(),
        ));
    }
    Ok(())
}

/// The security code: 3 or 4 digits. Never echoed.
fn check_security_code(code: &str) -> Result<(), Usage> {
    if !(3..=4).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Usage("the security code must be 3 or 4 digits".into()));
    }
    Ok(())
}

/// `MM/YYYY`, or `MM/YY` read as 20YY; anything else is an input error (not a
/// card the bank declined).
fn parse_expiry(expiry: &str) -> Result<(i64, i64), Usage> {
    let bad = || {
        Usage(format!(
            "expiry must look like 12/2030 (or 12/30), got {expiry:?}"
        ))
    };
    let (month, year) = expiry.trim().split_once('/').ok_or_else(bad)?;
    let (month, year) = (month.trim(), year.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(month) || !digits(year) || month.len() > 2 {
        return Err(bad());
    }
    let month: i64 = month.parse().map_err(|_| bad())?;
    let year: i64 = match year.len() {
        2 => 2000 + year.parse::<i64>().map_err(|_| bad())?,
        4 => year.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month) {
        return Err(Usage(format!("the expiry month is 1 to 12, got {month}")));
    }
    Ok((month, year))
}

fn vote(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let item_id = args.number("ITEM")?;
    let verdict = args.word("up|down")?.to_lowercase();
    args.done()?;
    if verdict != "up" && verdict != "down" {
        return Err(Usage(format!("the vote is up or down, got {verdict:?}")).into());
    }
    let r = ctx.call::<op::ProvideFeedback>(Feedback {
        session_id: ctx.session()?,
        item_id,
        feedback: Scalar::Text(verdict),
    })?;
    ctx.show(&format!(
        "item {}: {} up, {} down",
        r.item_id, r.thumbs_up, r.thumbs_down
    ));
    Ok(())
}

fn rating(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let seller_id = args.number("SELLER")?;
    args.done()?;
    let r = ctx.call::<op::GetSellerRating>(SellerRef {
        session_id: ctx.session()?,
        seller_id,
    })?;
    ctx.show(&table::rating(&r));
    Ok(())
}

fn history(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let r = ctx.call::<op::GetBuyerPurchases>(session(ctx)?)?;
    if r.purchases.is_empty() {
        ctx.show("(no purchases yet)");
        return Ok(());
    }
    let mut t = Table::new(&[
        ">PURCHASE",
        ">ITEM",
        "NAME",
        ">QTY",
        ">UNIT PRICE",
        ">TOTAL",
        "WHEN",
    ]);
    // Lines come grouped by purchase, newest first; each purchase ends with
    // its total.
    let mut rest = &r.purchases[..];
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|p| p.purchase_id == first.purchase_id)
            .count();
        let (lines, after) = rest.split_at(n);
        let mut total = 0.0;
        for p in lines {
            total += p.unit_price * p.quantity as f64;
            t.row(vec![
                p.purchase_id.to_string(),
                p.item_id.to_string(),
                p.item_name.clone(),
                p.quantity.to_string(),
                money(p.unit_price),
                String::new(),
                p.purchased_at.clone(),
            ]);
        }
        t.row(vec![
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            money(total),
            String::new(),
        ]);
        rest = after;
    }
    ctx.show(&t.render());
    Ok(())
}

fn ping(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let r = ctx.call::<op::Ping>(NoFields {})?;
    ctx.show(&format!("{} server, protocol {}", r.server, r.version));
    Ok(())
}

/// The buyer CLI.
pub const SIDE: Side = Side {
    name: "buyer",
    default_server: "127.0.0.1:6001",
    server_env: "BUYER_SERVER",
    logout: logout_session,
    commands: &[
        Command {
            name: "create-account",
            usage: "create-account USER [PASSWORD]",
            about: "create a buyer account (asks for the password if not given)",
            example: "create-account bob",
            options: &[],
            run: create_account,
        },
        Command {
            name: "login",
            usage: "login USER [PASSWORD]",
            about: "log in; your saved cart becomes your cart",
            example: "login bob",
            options: &[],
            run: login,
        },
        Command {
            name: "logout",
            usage: "logout",
            about: "end the session (an unsaved cart is discarded)",
            example: "logout",
            options: &[],
            run: logout,
        },
        Command {
            name: "search",
            usage: "search CATEGORY [KEYWORD...] [--limit N] [--offset N]",
            about: "items of a category, ranked by matching keywords; --limit 1 to 500 \
                    (default 50), --offset counts from 0",
            example: "search 3 mug blue --limit 10",
            options: &["limit", "offset"],
            run: search,
        },
        Command {
            name: "item",
            usage: "item ITEM",
            about: "one item's details",
            example: "item 12",
            options: &[],
            run: item,
        },
        Command {
            name: "add",
            usage: "add ITEM [QTY]",
            about: "put units of an item in your cart; QTY defaults to 1",
            example: "add 12 2",
            options: &[],
            run: |ctx, args| change(ctx, args, true),
        },
        Command {
            name: "remove",
            usage: "remove ITEM [QTY]",
            about: "take units of an item out of your cart; QTY defaults to 1",
            example: "remove 12 1",
            options: &[],
            run: |ctx, args| change(ctx, args, false),
        },
        Command {
            name: "cart",
            usage: "cart",
            about: "your cart with names, prices and the total",
            example: "cart",
            options: &[],
            run: cart,
        },
        Command {
            name: "save",
            usage: "save",
            about: "keep this cart for your next login",
            example: "save",
            options: &[],
            run: save,
        },
        Command {
            name: "clear",
            usage: "clear",
            about: "empty your cart and your saved cart",
            example: "clear",
            options: &[],
            run: clear,
        },
        Command {
            name: "buy",
            usage: "buy [--name N --number CARD --expiry MM/YYYY --cvc CODE] [--yes]",
            about: "buy the whole cart (asks for the card details not given; at a terminal \
                    shows the cart and asks before charging, unless --yes)",
            example:
                "buy --name \"Bob Smith\" --number 4111111111111111 --expiry 12/2030 --cvc 123",
            options: &["name", "number", "expiry", "cvc", "yes!"],
            run: buy,
        },
        Command {
            name: "vote",
            usage: "vote ITEM up|down",
            about: "thumbs up or down for an item (a new vote replaces yours)",
            example: "vote 12 up",
            options: &[],
            run: vote,
        },
        Command {
            name: "rating",
            usage: "rating SELLER",
            about: "a seller's thumbs up/down and items sold",
            example: "rating 4",
            options: &[],
            run: rating,
        },
        Command {
            name: "history",
            usage: "history",
            about: "your purchases, newest first",
            example: "history",
            options: &[],
            run: history,
        },
        Command {
            name: "ping",
            usage: "ping",
            about: "check the server answers",
            example: "ping",
            options: &[],
            run: ping,
        },
    ],
};
