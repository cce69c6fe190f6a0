//! Who is asking: a session id parsed once at the edge ([`SessionId`]), each
//! side's session statements, and the session use cases of both sides (log
//! in, renew, log out, sweep). A session is renewed by the database function
//! `touch_<side>_session` (sql/customer/0005_one_session_rule.sql): one
//! statement per request, a write only once per grace period.

use crate::account::{Accounts, BUYERS, SELLERS};
use crate::conn::Conn;
use crate::db::Store;
use crate::once::run_once_on;
use crate::StoreError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use tokio_postgres::Row;
use uuid::Uuid;
use wire::request::Idempotency;

/// A session id as the database stores it. Parsed once where a request
/// enters the server: text that is not a UUID cannot be a live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub(crate) Uuid);

impl SessionId {
    /// The session named by `text`.
    ///
    /// # Errors
    /// `SessionExpired` when `text` cannot be a session id.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| StoreError::SessionExpired)
    }

    fn fresh() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// As its text, the form the wire carries and a recorded Login result holds.
impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::parse_str(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl Store {
    /// Checks the password and opens a session.
    ///
    /// # Errors
    /// `AuthFailed` for an unknown username or a wrong password alike.
    pub fn login_seller(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<(SessionId, i64), StoreError> {
        let seller_id = self.check_password(&SELLERS, username, password)?;
        let keyed = SELLERS.keyed_by_name(once, username);
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| {
                let session = SessionId::fresh();
                c.execute(
                    "INSERT INTO seller_sessions (session_id, seller_id) VALUES ($1, $2)",
                    &[&session.0, &seller_id],
                )?;
                Ok((session, seller_id))
            },
        )
    }

    /// Ends a session; succeeds also for an unknown or ended one.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn logout_seller(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.end_session(&SELLERS, session, once)
    }

    /// Renews the session and returns its seller.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn seller_session(&self, session: SessionId) -> Result<i64, StoreError> {
        self.touch_session(&SELLERS, session)
    }

    /// Deletes expired seller sessions; returns how many.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn sweep_seller_sessions(&self) -> Result<u64, StoreError> {
        self.sweep_sessions(&SELLERS)
    }

    /// Checks the password and opens a session whose active cart starts as a
    /// copy of the saved cart (one statement).
    ///
    /// # Errors
    /// `AuthFailed` for an unknown username or a wrong password alike.
    pub fn login_buyer(
        &self,
        username: &str,
        password: &str,
        once: Option<&Idempotency>,
    ) -> Result<(SessionId, i64), StoreError> {
        let buyer_id = self.check_password(&BUYERS, username, password)?;
        let keyed = BUYERS.keyed_by_name(once, username);
        run_once_on(|| self.customer(), keyed.as_ref(), |c| login(c, buyer_id))
    }

    /// Ends a session and discards its active cart; succeeds also for an
    /// unknown or ended one.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn logout_buyer(
        &self,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        self.end_session(&BUYERS, session, once)
    }

    /// Renews the session and returns its buyer.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn buyer_session(&self, session: SessionId) -> Result<i64, StoreError> {
        self.touch_session(&BUYERS, session)
    }

    /// [`Store::buyer_session`] overlapped with `read`, a read on product_db
    /// that does not depend on the buyer: the session check is sent, `read`
    /// runs while its answer is on its way. The read's result stands only
    /// for a live session (an expired one hears so, whatever the read found).
    ///
    /// # Errors
    /// As `buyer_session`, then as `read`.
    pub(crate) fn buyer_session_while<T>(
        &self,
        session: SessionId,
        read: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut customer = self.customer()?;
        let (touched, value) =
            customer.query_one_while(BUYERS.touch_session, &[&session.0, &self.timeout()], read);
        drop(customer);
        session_account(&touched?)?;
        value
    }

    /// Deletes expired buyer sessions (and their carts); returns how many.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn sweep_buyer_sessions(&self) -> Result<u64, StoreError> {
        self.sweep_sessions(&BUYERS)
    }

    /// Renews a live session and returns its account.
    pub(crate) fn touch_session(
        &self,
        side: &Accounts,
        session: SessionId,
    ) -> Result<i64, StoreError> {
        let id = session.0;
        let row = self
            .customer()?
            .query_one(side.touch_session, &[&id, &self.timeout()])?;
        session_account(&row)
    }

    /// Ends a session; succeeds also for an unknown or ended one. With a key,
    /// the key is recorded when the session was live (an ended session's
    /// Logout has nothing to apply, and answers the same).
    pub(crate) fn end_session(
        &self,
        side: &Accounts,
        session: SessionId,
        once: Option<&Idempotency>,
    ) -> Result<(), StoreError> {
        let id = session.0;
        let keyed = match once {
            Some(_) => match self.touch_session(side, session) {
                Ok(account) => side.keyed(once, account),
                Err(StoreError::SessionExpired) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        run_once_on(
            || self.customer(),
            keyed.as_ref(),
            |c| c.execute(side.end_session, &[&id]).map(|_| ()),
        )
    }

    /// Deletes the side's expired sessions; returns how many.
    fn sweep_sessions(&self, side: &Accounts) -> Result<u64, StoreError> {
        self.customer()?
            .execute(side.sweep_sessions, &[&self.timeout()])
    }
}

/// The account a session check names in a row's `account_id` column (the
/// `touch_<side>_session` functions, alone or inside a statement);
/// `SessionExpired` when it is NULL.
pub(crate) fn session_account(row: &Row) -> Result<i64, StoreError> {
    row.try_get::<_, Option<i64>>("account_id")?
        .ok_or(StoreError::SessionExpired)
}

/// Opens a session for `buyer_id` whose active cart starts as a copy of the
/// saved cart (one statement); returns the session id and the buyer.
fn login(c: &mut Conn, buyer_id: i64) -> Result<(SessionId, i64), StoreError> {
    let session = SessionId::fresh();
    c.execute(
        "WITH s AS (
             INSERT INTO buyer_sessions (session_id, buyer_id) VALUES ($1, $2)
             RETURNING session_id
         )
         INSERT INTO active_carts (session_id, item_id, quantity)
         SELECT s.session_id, c.item_id, c.quantity
           FROM s, saved_carts c WHERE c.buyer_id = $2",
        &[&session.0, &buyer_id],
    )?;
    Ok((session, buyer_id))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_cannot_be_a_session_id_is_an_expired_session() {
        for text in ["", "abc", "00000000-0000-0000-0000-00000000000g"] {
            assert!(matches!(
                SessionId::parse(text),
                Err(StoreError::SessionExpired)
            ));
        }
        let id = SessionId::fresh();
        assert_eq!(SessionId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn a_login_result_recorded_as_text_before_session_ids_had_a_type_still_decodes() {
        // What a Login's idempotency key recorded when it returned (String, i64).
        let recorded = r#"["67e55044-10b1-426f-9247-bb680e5fe0c8",7]"#;
        let (session, id): (SessionId, i64) = serde_json::from_str(recorded).unwrap();
        assert_eq!(session.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(id, 7);
        assert_eq!(serde_json::to_string(&(session, id)).unwrap(), recorded);
    }
}
