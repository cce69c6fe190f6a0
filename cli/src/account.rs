//! The account commands both CLIs share; each side passes its own request
//! constructors and reads its own result type.

use crate::args::Args;
use crate::shell::{CliError, Ctx, Login};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wire::request::{Credentials, SessionOnly};
use wire::response::Empty;

fn credentials(ctx: &Ctx, mut args: Args) -> Result<Credentials, CliError> {
    let username = args.word("USER")?;
    let given = args.opt_word();
    args.done()?;
    Ok(Credentials {
        password: ctx.secret(given, "Password: ")?,
        username,
    })
}

/// `create-account USER [PASSWORD]`.
///
/// # Errors
/// Bad arguments, or the server's refusal.
pub fn create<R: wire::Operation + Serialize, B: DeserializeOwned>(
    ctx: &mut Ctx,
    args: Args,
    side: &str,
    request: fn(Credentials) -> R,
    id: fn(&B) -> i64,
) -> Result<(), CliError> {
    let creds = credentials(ctx, args)?;
    let r: B = ctx.call(&request(creds))?;
    ctx.show(&format!("{side} account {} created", id(&r)));
    Ok(())
}

/// `login USER [PASSWORD]`: remembers the session for the following commands.
///
/// # Errors
/// Bad arguments, or the server's refusal.
pub fn login<R: wire::Operation + Serialize, B: DeserializeOwned>(
    ctx: &mut Ctx,
    args: Args,
    side: &str,
    request: fn(Credentials) -> R,
    ids: fn(B) -> (String, i64),
) -> Result<(), CliError> {
    let creds = credentials(ctx, args)?;
    let username = creds.username.clone();
    let (session_id, account_id) = ids(ctx.call(&request(creds))?);
    ctx.show(&format!("logged in as {username} ({side} {account_id})"));
    ctx.login = Some(Login {
        session_id,
        username,
    });
    Ok(())
}

/// Ends the session on the server and forgets it.
///
/// # Errors
/// Not logged in, or the server cannot be reached.
pub fn end_session<R: wire::Operation + Serialize>(
    ctx: &mut Ctx,
    request: fn(SessionOnly) -> R,
) -> Result<(), CliError> {
    let session = SessionOnly {
        session_id: ctx.session()?,
    };
    let _: Empty = ctx.call(&request(session))?;
    ctx.login = None;
    Ok(())
}

/// `logout`.
///
/// # Errors
/// Extra arguments, not logged in, or the server cannot be reached.
pub fn logout<R: wire::Operation + Serialize>(
    ctx: &mut Ctx,
    args: Args,
    request: fn(SessionOnly) -> R,
) -> Result<(), CliError> {
    args.done()?;
    end_session(ctx, request)?;
    ctx.show("logged out");
    Ok(())
}
