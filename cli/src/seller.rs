//! The seller's commands.

use crate::account;
use crate::args::{Args, Usage};
use crate::shell::{CliError, Command, Ctx, Side};
use crate::table;
use wire::request::{ChangePrice, NoFields, OwnItems, RegisterItem, SessionOnly, UpdateUnits};
use wire::seller::op;

fn session(ctx: &Ctx) -> Result<SessionOnly, CliError> {
    Ok(SessionOnly {
        session_id: ctx.session()?,
    })
}

fn create_account(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    account::create::<op::CreateAccount>(ctx, args, "seller", |r| r.seller_id)
}

fn login(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    account::login::<op::Login, op::Logout>(ctx, args, "seller", |r| (r.session_id, r.seller_id))
}

/// Ends the session on the server and forgets it.
///
/// # Errors
/// When the server cannot be reached.
pub fn logout_session(ctx: &mut Ctx) -> Result<(), CliError> {
    account::end_session::<op::Logout>(ctx)
}

fn logout(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    account::logout::<op::Logout>(ctx, args)
}

fn rating(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let r = ctx.call::<op::GetSellerRating>(session(ctx)?)?;
    ctx.show(&table::rating(&r));
    Ok(())
}

fn register(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let item_name = args.word("NAME")?;
    let category: i64 = args
        .option_number("category")?
        .ok_or_else(|| Usage("missing --category".into()))?;
    wire::validate::category(category).map_err(|_| {
        Usage(format!(
            "--category must be 0 to {}, got {category}",
            i32::MAX
        ))
    })?;
    let keywords: Vec<String> = args
        .option("keywords")
        .map(|k| {
            k.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let condition = args.option("condition").unwrap_or_else(|| "New".into());
    let sale_price = args
        .option("price")
        .ok_or_else(|| Usage("missing --price".into()))?;
    let sale_price = table::amount(&sale_price, "--price")?;
    let quantity: i64 = args.option_number("qty")?.unwrap_or(1);
    wire::validate::stock(quantity).map_err(|_| {
        Usage(format!(
            "--qty must be 0 to {}, got {quantity}",
            wire::validate::MAX_AMOUNT
        ))
    })?;
    args.done()?;
    let name_length = item_name.chars().count();
    if !(1..=32).contains(&name_length) {
        return Err(Usage(format!(
            "NAME must be 1 to 32 characters, got {name_length}"
        ))
        .into());
    }
    if keywords.len() > 5 {
        return Err(Usage(format!("at most 5 keywords, got {}", keywords.len())).into());
    }
    if let Some(k) = keywords
        .iter()
        .find(|k: &&String| !(1..=8).contains(&k.chars().count()))
    {
        return Err(Usage(format!(
            "keyword {k:?} has {} characters; keywords have 1 to 8",
            k.chars().count()
        ))
        .into());
    }
    let r = ctx.call::<op::RegisterItemForSale>(RegisterItem {
        session_id: ctx.session()?,
        item_name,
        category,
        keywords,
        condition,
        sale_price,
        quantity,
    })?;
    if quantity == 0 {
        ctx.show(&format!(
            "item {0} registered in category {1}, with no units: sold out until you \
             add-units {0} COUNT",
            r.item_id, r.category
        ));
    } else {
        ctx.show(&format!(
            "item {} registered in category {}",
            r.item_id, r.category
        ));
    }
    Ok(())
}

fn price(ctx: &mut Ctx, mut args: Args) -> Result<(), CliError> {
    let item_id = args.number("ITEM")?;
    let new_price = table::amount(&args.word("PRICE")?, "PRICE")?;
    args.done()?;
    let r = ctx.call::<op::ChangeItemPrice>(ChangePrice {
        session_id: ctx.session()?,
        item_id,
        new_price,
    })?;
    ctx.show(&format!(
        "item {} now costs {}",
        r.item_id,
        table::money(r.sale_price)
    ));
    Ok(())
}

fn units(ctx: &mut Ctx, mut args: Args, sign: i64) -> Result<(), CliError> {
    let item_id = args.number("ITEM")?;
    let count: i64 = args.number("COUNT")?;
    args.done()?;
    // The wire field is signed (negative adds back); the commands are not.
    wire::validate::quantity(count).map_err(|_| {
        Usage(format!(
            "COUNT must be 1 to {}, got {count}",
            wire::validate::MAX_AMOUNT
        ))
    })?;
    let r = ctx.call::<op::UpdateUnitsForSale>(UpdateUnits {
        session_id: ctx.session()?,
        item_id,
        quantity_change: sign * count,
    })?;
    ctx.show(&format!("item {} has {} units", r.item_id, r.quantity));
    Ok(())
}

fn items(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let r = ctx.call::<op::DisplayItemsForSale>(OwnItems {
        session_id: ctx.session()?,
        include_sold_out: true,
    })?;
    ctx.show(&table::items(&r.items, false));
    if r.items.iter().any(|i| i.quantity == 0) {
        ctx.show("(sold out: put units back on sale with add-units ITEM_ID COUNT)");
    }
    Ok(())
}

fn ping(ctx: &mut Ctx, args: Args) -> Result<(), CliError> {
    args.done()?;
    let r = ctx.call::<op::Ping>(NoFields {})?;
    ctx.show(&format!("{} server, protocol {}", r.server, r.version));
    Ok(())
}

/// The seller CLI.
pub const SIDE: Side = Side {
    name: "seller",
    default_server: "127.0.0.1:5001",
    server_env: "SELLER_SERVER",
    logout: logout_session,
    commands: &[
        Command {
            name: "create-account",
            usage: "create-account USER [PASSWORD]",
            about: "create a seller account (asks for the password if not given)",
            example: "create-account alice",
            options: &[],
            run: create_account,
        },
        Command {
            name: "login",
            usage: "login USER [PASSWORD]",
            about: "log in (asks for the password if not given)",
            example: "login alice",
            options: &[],
            run: login,
        },
        Command {
            name: "logout",
            usage: "logout",
            about: "end the session",
            example: "logout",
            options: &[],
            run: logout,
        },
        Command {
            name: "register",
            usage: "register NAME --category N --price P [--qty N] [--keywords a,b] [--condition New|Used]",
            about: "put an item up for sale: NAME has 1-32 characters; up to 5 keywords of \
                    1-8 characters each; --qty defaults to 1 (0 lists it sold out), \
                    --condition to New (New or Used, in any case); the price is kept to the \
                    cent",
            example: "register \"Blue mug\" --category 3 --keywords mug,blue --condition New --price 9.99 --qty 10",
            options: &["category", "price", "qty", "keywords", "condition"],
            run: register,
        },
        Command {
            name: "price",
            usage: "price ITEM PRICE",
            about: "change the price of one of your items",
            example: "price 12 8.50",
            options: &[],
            run: price,
        },
        Command {
            name: "remove-units",
            usage: "remove-units ITEM COUNT",
            about: "take units of one of your items off sale",
            example: "remove-units 12 3",
            options: &[],
            run: |ctx, args| units(ctx, args, 1),
        },
        Command {
            name: "add-units",
            usage: "add-units ITEM COUNT",
            about: "put more units of one of your items on sale",
            example: "add-units 12 5",
            options: &[],
            run: |ctx, args| units(ctx, args, -1),
        },
        Command {
            name: "items",
            usage: "items",
            about: "your items, sold-out ones marked (restock them with add-units)",
            example: "items",
            options: &[],
            run: items,
        },
        Command {
            name: "rating",
            usage: "rating",
            about: "your thumbs up/down and items sold",
            example: "rating",
            options: &[],
            run: rating,
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
