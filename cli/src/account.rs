//! The account commands both CLIs share; each side names its own operations
//! (whose result types differ).

use crate::args::Args;
use crate::shell::{CliError, Ctx, Login};
use wire::request::{Credentials, SessionOnly};
use wire::response::Empty;
use wire::Op;

/// USER and PASSWORD; the password is asked for without echo when not given
/// (twice when `confirm`, as for a new account).
fn credentials(ctx: &Ctx, mut args: Args, confirm: bool) -> Result<Credentials, CliError> {
    let username = args.word("USER")?;
    let given = args.opt_word();
    args.done()?;
    let asked = given.is_none() && ctx.interactive;
    let password = ctx.secret(given, "Password: ")?;
    if asked && confirm && ctx.secret(None, "Password again: ")? != password {
        return Err(CliError::Other(
            "the two passwords differ; nothing was created".into(),
        ));
    }
    Ok(Credentials { password, username })
}

/// `create-account USER [PASSWORD]`.
///
/// # Errors
/// Bad arguments, or the server's refusal.
pub fn create<C: Op<Fields = Credentials>>(
    ctx: &mut Ctx,
    args: Args,
    side: &str,
    id: fn(&C::Reply) -> i64,
) -> Result<(), CliError> {
    let creds = credentials(ctx, args, true)?;
    let r = ctx.call::<C>(creds)?;
    ctx.show(&format!("{side} account {} created", id(&r)));
    Ok(())
}

/// `login USER [PASSWORD]`: remembers the session for the following commands.
/// Someone already logged in is logged out (and told so) once the new login
/// succeeds.
///
/// # Errors
/// Bad arguments, or the server's refusal.
pub fn login<L: Op<Fields = Credentials>, X: Op<Fields = SessionOnly, Reply = Empty>>(
    ctx: &mut Ctx,
    args: Args,
    side: &str,
    ids: fn(L::Reply) -> (String, i64),
) -> Result<(), CliError> {
    let creds = credentials(ctx, args, false)?;
    let username = creds.username.clone();
    let (session_id, account_id) = ids(ctx.call::<L>(creds)?);
    let previous = ctx.login.replace(Login {
        session_id,
        username: username.clone(),
    });
    let again = previous.as_ref().is_some_and(|p| p.username == username);
    let mut said = if again {
        format!("logged in again as {username} ({side} {account_id})")
    } else {
        format!("logged in as {username} ({side} {account_id})")
    };
    if let Some(previous) = previous {
        let ended = ctx.call::<X>(SessionOnly {
            session_id: previous.session_id,
        });
        said.push_str(&match (ended, again) {
            (Ok(_), true) => "; the earlier session is ended".to_owned(),
            (Ok(_), false) => format!("; {} is logged out", previous.username),
            (Err(_), true) => "; the earlier session is left to expire".to_owned(),
            (Err(_), false) => format!("; {}'s session is left to expire", previous.username),
        });
    }
    ctx.show(&said);
    Ok(())
}

/// Ends the session on the server and forgets it.
///
/// # Errors
/// Not logged in, or the server cannot be reached.
pub fn end_session<X: Op<Fields = SessionOnly, Reply = Empty>>(
    ctx: &mut Ctx,
) -> Result<(), CliError> {
    let session = SessionOnly {
        session_id: ctx.session()?,
    };
    ctx.call::<X>(session)?;
    ctx.login = None;
    Ok(())
}

/// `logout`.
///
/// # Errors
/// Extra arguments, not logged in, or the server cannot be reached.
pub fn logout<X: Op<Fields = SessionOnly, Reply = Empty>>(
    ctx: &mut Ctx,
    args: Args,
) -> Result<(), CliError> {
    args.done()?;
    end_session::<X>(ctx)?;
    ctx.show("logged out");
    Ok(())
}
