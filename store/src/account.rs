//! Accounts of both sides: creating one, checking a password. Each side has
//! its own tables, named by its statements ([`SELLERS`], [`BUYERS`]).

use crate::db::Store;
use crate::once::{run_once_on, Keyed, Scope};
use crate::{password, StoreError};
use wire::request::Idempotency;

/// The statements of one side's accounts.
pub(crate) struct Accounts {
    /// `INSERT ... (username, password_hash) VALUES ($1, $2) RETURNING
    /// <side>_id AS account_id`
    pub insert: &'static str,
    /// `SELECT <side>_id AS account_id, password_hash ... WHERE username = $1`
    pub credentials: &'static str,
    /// `DELETE FROM <side>_sessions WHERE session_id = $1`
    pub end_session: &'static str,
    /// `SELECT touch_<side>_session($1, $2) AS account_id`: renews a live
    /// session, returns its account (NULL when expired).
    pub touch_session: &'static str,
    /// `DELETE FROM <side>_sessions WHERE session_state(last_active_at, $1) =
    /// 'expired'`: the sweep of sessions nobody came back to.
    pub sweep_sessions: &'static str,
    /// `seller` or `buyer`: the idempotency scope of an account is
    /// `<side>:<id>`, of a username `<side>-name:<username>`.
    pub side: &'static str,
}

impl Accounts {
    /// The idempotency scope of a request by account `id`.
    pub fn keyed<'a>(&self, once: Option<&'a Idempotency>, id: i64) -> Option<Keyed<'a>> {
        once.map(|once| Keyed {
            once,
            scope: Scope::Named(format!("{}:{id}", self.side)),
        })
    }

    /// The idempotency scope of CreateAccount and Login by `username`.
    pub fn keyed_by_name<'a>(
        &self,
        once: Option<&'a Idempotency>,
        username: &str,
    ) -> Option<Keyed<'a>> {
        once.map(|once| Keyed {
            once,
            scope: Scope::Named(format!("{}-name:{username}", self.side)),
        })
    }
}

pub(crate) const SELLERS: Accounts = Accounts {
    insert: "INSERT INTO sellers (username, password_hash) VALUES ($1, $2)
             RETURNING seller_id AS account_id",
    credentials: "SELECT seller_id AS account_id, password_hash FROM sellers WHERE username = $1",
    end_session: "DELETE FROM seller_sessions WHERE session_id = $1",
    touch_session: "SELECT touch_seller_session($1, $2) AS account_id",
    sweep_sessions:
        "DELETE FROM seller_sessions WHERE session_state(last_active_at, $1) = 'expired'",
    side: "seller",
};

pub(crate) const BUYERS: Accounts = Accounts {
    insert: "INSERT INTO buyers (username, password_hash) VALUES ($1, $2)
             RETURNING buyer_id AS account_id",
    credentials: "SELECT buyer_id AS account_id, password_hash FROM buyers WHERE username = $1",
    end_session: "DELETE FROM buyer_sessions WHERE session_id = $1",
    touch_session: "SELECT touch_buyer_session($1, $2) AS account_id",
    sweep_sessions:
        "DELETE FROM buyer_sessions WHERE session_state(last_active_at, $1) = 'expired'",
    side: "buyer",
};

impl Store {
    /// Registers a seller; the password is stored only as an argon2id hash.
    ///
    /// # Errors
    /// `UsernameTaken`, `Unavailable`.
    pub fn create_seller(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        self.create_account(&SELLERS, username, password, once)
    }

    /// Registers a buyer; the password is stored only as an argon2id hash.
    ///
    /// # Errors
    /// `UsernameTaken`, `Unavailable`.
    pub fn create_buyer(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        self.create_account(&BUYERS, username, password, once)
    }

    /// Registers an account; the password is stored only as an argon2id hash,
    /// computed before a database connection is taken.
    pub(crate) fn create_account(
        &self,
        side: &Accounts,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let hash = password::hash(password)?;
        let keyed = side.keyed_by_name(once, username);
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| match c.query_one(side.insert, &[&username, &hash]) {
                Ok(row) => Ok(row.try_get("account_id")?),
                Err(StoreError::Conflict(_)) => Err(StoreError::UsernameTaken),
                Err(e) => Err(e),
            },
        )
    }

    /// The account id when `password` is right; `AuthFailed` for an unknown
    /// username or a wrong password alike, in the same time.
    pub(crate) fn check_password(
        &self,
        side: &Accounts,
        username: &str,
        password: &str,
    ) -> Result<i64, StoreError> {
        // The connection goes back to the pool before the slow verification.
        let row = self.customer()?.query_opt(side.credentials, &[&username])?;
        let Some(row) = row else {
            password::verify_nobody(password);
            return Err(StoreError::AuthFailed);
        };
        let id: i64 = row.try_get("account_id")?;
        let stored: String = row.try_get("password_hash")?;
        if password::verify(password, &stored) {
            Ok(id)
        } else {
            Err(StoreError::AuthFailed)
        }
    }
}
