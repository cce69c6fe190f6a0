//! The migration runner: the ordered files of `sql/` applied once each.
//!
//! Each database records applied versions (with a checksum of the file) in
//! `schema_migrations`. A session-level advisory lock makes two servers that start
//! at once take turns; the second finds everything applied and does nothing. Each
//! migration runs in its own transaction, so a failed one leaves no trace.

use crate::conn::Conn;
use crate::StoreError;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// customer_db's migrations, in order.
pub const CUSTOMER: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../../sql/customer/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "read_mostly_sessions",
        sql: include_str!("../../sql/customer/0002_read_mostly_sessions.sql"),
    },
    Migration {
        version: 3,
        name: "purchases",
        sql: include_str!("../../sql/customer/0003_purchases.sql"),
    },
    Migration {
        version: 4,
        name: "idempotency_keys_and_item_names",
        sql: include_str!("../../sql/customer/0004_idempotency_keys_and_item_names.sql"),
    },
    Migration {
        version: 5,
        name: "one_session_rule",
        sql: include_str!("../../sql/customer/0005_one_session_rule.sql"),
    },
];

/// product_db's migrations, in order.
pub const PRODUCT: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../../sql/product/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "keywords_of_available_items",
        sql: include_str!("../../sql/product/0002_keywords_of_available_items.sql"),
    },
    Migration {
        version: 3,
        name: "purchases",
        sql: include_str!("../../sql/product/0003_purchases.sql"),
    },
    Migration {
        version: 4,
        name: "idempotency_keys_and_item_names",
        sql: include_str!("../../sql/product/0004_idempotency_keys_and_item_names.sql"),
    },
    Migration {
        version: 5,
        name: "ranked_keyword_index",
        sql: include_str!("../../sql/product/0005_ranked_keyword_index.sql"),
    },
    Migration {
        version: 6,
        name: "page_bounded_search",
        sql: include_str!("../../sql/product/0006_page_bounded_search.sql"),
    },
    Migration {
        version: 7,
        name: "seller_items_on_sale",
        sql: include_str!("../../sql/product/0007_seller_items_on_sale.sql"),
    },
];

/// Key of the advisory lock held while migrating ("marketplace" in ASCII).
const LOCK_KEY: i64 = 0x6d61_726b_6574;

/// FNV-1a: detects an applied migration file that was edited afterwards.
fn checksum(sql: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Applies the migrations not yet applied; returns the versions it applied.
///
/// # Errors
/// `Unavailable` when the database cannot be reached; `Internal` when a migration
/// fails or an applied one no longer matches its file.
pub fn apply(conn: &mut Conn, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    conn.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
    let result = apply_locked(conn, migrations);
    if let Err(e) = conn.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]) {
        // Dropping the connection releases the lock.
        conn.mark_broken();
        return Err(e);
    }
    result
}

fn apply_locked(conn: &mut Conn, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text    NOT NULL,
             checksum   bigint  NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let applied: Vec<(i32, i64)> = conn
        .query("SELECT version, checksum FROM schema_migrations", &[])?
        .iter()
        .map(|row| Ok((row.try_get("version")?, row.try_get("checksum")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut newly = Vec::new();
    for m in migrations {
        let sum = checksum(m.sql);
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, recorded)) if *recorded == sum => continue,
            Some(_) => {
                return Err(StoreError::Internal(format!(
                    "migration {} ({}) was changed after it was applied",
                    m.version, m.name
                )))
            }
            None => {}
        }
        conn.begin();
        let applied = conn
            .batch(m.sql)
            .map_err(|e| {
                StoreError::Internal(format!("migration {} ({}) failed: {e}", m.version, m.name))
            })
            .and_then(|()| {
                conn.commit_after(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&m.version, &m.name, &sum],
                )
            });
        if let Err(e) = applied {
            let _ = conn.rollback();
            return Err(e);
        }
        newly.push(m.version);
    }
    Ok(newly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_and_unique() {
        for list in [CUSTOMER, PRODUCT] {
            for pair in list.windows(2) {
                assert!(pair[0].version < pair[1].version);
            }
            assert_eq!(list[0].version, 1);
        }
    }

    #[test]
    fn the_checksum_changes_with_the_file() {
        assert_eq!(checksum("CREATE TABLE a ()"), checksum("CREATE TABLE a ()"));
        assert_ne!(checksum("CREATE TABLE a ()"), checksum("CREATE TABLE b ()"));
    }
}
