//! Search statements whose cost is bounded by the page, not by the matches
//! (sql/product/0006_page_bounded_search.sql has the structures).
//!
//! With keywords K (|K| = m, at most 5), the ranking's first key is how many of
//! K an item carries, so the ranking is a sequence of levels: the items
//! carrying all of K, then those carrying m - 1 of them, down to 1. The items
//! carrying exactly the subset S of K are those listed under S in
//! `item_keyword_sets` that carry none of K's other keywords, and each range
//! of that index is already in the level's order (score, then item id). So a
//! search is one statement: per level a merge of its subsets' ranges (one
//! range for the top level, m for the next, ...), the levels appended in
//! order, and a `LIMIT`/`OFFSET` that stops reading at the end of the page.
//!
//! The total comes from `search_counts` (maintained per category and per
//! keyword): one keyword, or none, reads its count; several read the count of
//! each, and when one of them is over the cap the union is too. Otherwise the
//! union is the sum of the counts less the items that carry two or more of
//! the keywords, read from the ranges of the keyword pairs: what this costs is
//! what the keywords have in common, nothing when they have nothing.

use crate::item::read_item;
use crate::session::SessionId;
use crate::{Store, StoreError};
use std::sync::LazyLock;
use std::time::Duration;
use wire::response::Item;

/// The most keywords a search carries (PROTOCOL.md).
pub const MAX_KEYWORDS: usize = 5;

/// Counts stop here: a total above it is reported as "more than 10,000".
pub const COUNT_LIMIT: i64 = 10_001;

/// The key of a set of distinct keywords sorted in byte order, as
/// `keyword_key` builds it in SQL: each keyword prefixed by its length in
/// characters, a single digit since keywords have 1 to 8.
pub fn keyword_key<S: AsRef<str>>(sorted: &[S]) -> String {
    let mut key = String::new();
    for word in sorted {
        let word = word.as_ref();
        debug_assert!((1..=9).contains(&word.chars().count()));
        key.push_str(&word.chars().count().to_string());
        key.push_str(word);
    }
    key
}

/// The non-empty subsets of `m` keywords as bit masks, in the order the
/// search statement names them: by level (most keywords first), then by mask.
fn subsets(m: usize) -> Vec<u32> {
    let mut masks: Vec<u32> = (1..(1u32 << m)).collect();
    masks.sort_by_key(|mask| (std::cmp::Reverse(mask.count_ones()), *mask));
    masks
}

/// The keywords of a search sorted in byte order (the order of `keyword_key`)
/// and the keys of their subsets in the order of [`keyword_sql`]'s `$5`.
pub fn keyword_params(keywords: &[String]) -> (Vec<String>, Vec<String>) {
    let mut sorted = keywords.to_vec();
    sorted.sort();
    sorted.dedup();
    let keys = subsets(sorted.len())
        .into_iter()
        .map(|mask| {
            let words: Vec<&str> = sorted
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, w)| w.as_str())
                .collect();
            keyword_key(&words)
        })
        .collect();
    (sorted, keys)
}

/// `ARRAY[$4[i], ...]` for the keywords in `mask`.
fn words(mask: u32, m: usize) -> String {
    let list: Vec<String> = (0..m)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| format!("($4::text[])[{}]", i + 1))
        .collect();
    format!("ARRAY[{}]", list.join(", "))
}

/// One subset's range of the index: `$5[index]`, without the items carrying
/// any of `others`.
fn range(columns: &str, index: usize, others: u32, m: usize) -> String {
    let filter = if others == 0 {
        String::new()
    } else {
        format!(" AND NOT keywords && {}", words(others, m))
    };
    format!(
        "SELECT {columns} FROM item_keyword_sets \
          WHERE category = $1 AND keys = ($5::text[])[{index}]{filter}"
    )
}

/// Whether any item of a category carries two of a search's keywords: `$1`
/// category, `$2` the keys of the keyword pairs ([`pair_keys`]). One probe of
/// the index, so that a search of keywords no item shares can skip the
/// levels above one ([`Levels::One`]).
pub const PAIRS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM item_keyword_sets \
                              WHERE category = $1 AND keys = ANY ($2::text[])) AS shared";

/// The keys of the keyword pairs among `keys` (as [`keyword_params`] orders
/// them), for [`PAIRS_SQL`].
pub fn pair_keys(m: usize, keys: &[String]) -> Vec<String> {
    subsets(m)
        .into_iter()
        .zip(keys)
        .filter(|(mask, _)| mask.count_ones() == 2)
        .map(|(_, key)| key.clone())
        .collect()
}

/// Which levels of the ranking a search statement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Levels {
    /// All of them.
    All,
    /// Only single keywords, for keywords no item shares (seen by
    /// [`PAIRS_SQL`]): what the statement would read above level one is empty,
    /// and the union is the sum of the counts. The statement checks again in
    /// its own snapshot and answers a total of -1 when an item sharing two of
    /// them was listed meanwhile; the caller then runs [`Levels::All`].
    One,
}

/// The search statement for `m` keywords (1 to 5): `$1` category, `$2`
/// limit, `$3` offset, `$4` the keywords sorted in byte order, `$5` the keys
/// of their subsets ([`keyword_params`]). One row per item of the page, the
/// total (`total`, capped at [`COUNT_LIMIT`]) first, then the item columns;
/// one row with NULL item columns when the page is empty.
pub fn keyword_sql(m: usize, read: Levels) -> String {
    assert!((1..=MAX_KEYWORDS).contains(&m));
    let all = (1u32 << m) - 1;
    let masks = subsets(m);
    let index = |mask: u32| masks.iter().position(|&x| x == mask).map_or(0, |p| p + 1);
    let mut levels = Vec::new();
    let top = match read {
        Levels::All => m as u32,
        Levels::One => 1,
    };
    for level in (1..=top).rev() {
        let ranges: Vec<String> = masks
            .iter()
            .filter(|mask| mask.count_ones() == level)
            .map(|&mask| {
                format!(
                    "({} ORDER BY score DESC, item_id LIMIT $2::bigint + $3::bigint)",
                    range("item_id, score", index(mask), all & !mask, m)
                )
            })
            .collect();
        levels.push(if let [only] = ranges.as_slice() {
            // The top level: one range, already in order.
            format!("(SELECT item_id, score, {level} AS matched FROM {only} l)")
        } else {
            format!(
                "(SELECT item_id, score, {level} AS matched FROM ({}) l \
                  ORDER BY score DESC, item_id LIMIT $2::bigint + $3::bigint)",
                ranges.join(" UNION ALL ")
            )
        });
    }
    let pairs: Vec<String> = masks
        .iter()
        .filter(|mask| mask.count_ones() == 2)
        .map(|&mask| format!("($5::text[])[{}]", index(mask)))
        .collect();
    let total = if m == 1 {
        "(SELECT coalesce(sum(n), 0)::bigint FROM search_counts \
           WHERE category = $1 AND keyword = ($4::text[])[1])"
            .to_owned()
    } else if read == Levels::One {
        format!(
            "CASE WHEN EXISTS (SELECT 1 FROM item_keyword_sets \
                                WHERE category = $1 AND keys = ANY (ARRAY[{}])) \
                  THEN -1 \
                  ELSE (SELECT least(coalesce(sum(n), 0), {COUNT_LIMIT})::bigint FROM search_counts \
                         WHERE category = $1 AND keyword = ANY ($4::text[])) END",
            pairs.join(", ")
        )
    } else {
        // No keyword over the cap: the union is the sum of their counts less
        // the items counted more than once. Those are found in the ranges of
        // pairs (typically short, unlike a keyword's own): an item carrying
        // k_i and an earlier k_j is counted again under k_i, so for each i it
        // is subtracted once, from the range of (k_j, k_i) with j its first
        // keyword in K.
        let mut repeats = Vec::new();
        for i in 1..m {
            for j in 0..i {
                let pair = (1u32 << i) | (1u32 << j);
                let earlier = (1u32 << j) - 1;
                repeats.push(format!("({})", range("1", index(pair), earlier, m)));
            }
        }
        format!(
            "CASE WHEN (SELECT max(n) FROM (SELECT sum(n) AS n FROM search_counts \
                         WHERE category = $1 AND keyword = ANY ($4::text[]) GROUP BY keyword) c) \
                       > {cap} \
                  THEN {COUNT_LIMIT}::bigint \
                  ELSE (SELECT coalesce(sum(n), 0)::bigint FROM search_counts \
                         WHERE category = $1 AND keyword = ANY ($4::text[])) \
                     - (SELECT count(*) FROM ({}) r) END",
            repeats.join(" UNION ALL "),
            cap = COUNT_LIMIT - 1,
        )
    };
    format!(
        "SELECT {total} AS total, {columns} \
           FROM (SELECT 1) one \
           LEFT JOIN LATERAL ( \
               SELECT r.matched, r.score, i.* FROM ( \
                   SELECT * FROM ({levels}) ranked LIMIT $2 OFFSET $3 \
               ) r JOIN items i ON i.item_id = r.item_id \
           ) i ON true \
          ORDER BY i.matched DESC, i.score DESC, i.item_id",
        columns = crate::item::item_columns!(),
        levels = levels.join(" UNION ALL "),
    )
}

/// [`keyword_sql`] for 1 to 5 keywords and both [`Levels`], built once.
static KEYWORD_SQL: LazyLock<Vec<[String; 2]>> = LazyLock::new(|| {
    (1..=MAX_KEYWORDS)
        .map(|m| [keyword_sql(m, Levels::All), keyword_sql(m, Levels::One)])
        .collect()
});

/// The statement for `m` keywords (1 to 5).
pub fn keyword_statement(m: usize, read: Levels) -> &'static str {
    &KEYWORD_SQL[m - 1][usize::from(read == Levels::One)]
}

/// How many keywords a search needs before probing for shared ones pays: with
/// two, the levels above one are a single range.
pub const PROBE_FROM: usize = 3;

/// Search without keywords: `$1` category, `$2` limit, `$3` offset; rows as
/// [`keyword_sql`]'s. Newest first from the partial index of available items;
/// the total is the category's count.
pub const CATEGORY_SQL: &str = concat!(
    "SELECT (SELECT coalesce(sum(n), 0)::bigint FROM search_counts
              WHERE category = $1 AND keyword = '') AS total, ",
    crate::item::item_columns!(),
    " FROM (SELECT 1) one
      LEFT JOIN LATERAL (
          SELECT * FROM items
           WHERE category = $1 AND quantity > 0
           ORDER BY item_id DESC LIMIT $2 OFFSET $3
      ) i ON true
     ORDER BY i.item_id DESC"
);

/// How often a server folds the search counts' delta rows.
pub const FOLD_EVERY: Duration = Duration::from_secs(1);

/// The longest `autovacuum_naptime` that keeps the search index's dead rows
/// from piling up under churn, in seconds. The private cluster and the
/// containers run with 5 s (pgcluster/src/lib.rs, `AUTOVACUUM_NAPTIME`, says what
/// PostgreSQL's default of a minute costs).
pub const NAPTIME_LIMIT_SECS: i64 = 10;

/// Whether autovacuum is on and how often it looks, in seconds: product_db's
/// server settings.
const AUTOVACUUM_SQL: &str =
    "SELECT (SELECT setting = 'on' FROM pg_settings WHERE name = 'autovacuum') AS enabled,
            (SELECT setting::bigint FROM pg_settings WHERE name = 'autovacuum_naptime')
                AS naptime_secs";

/// What to say about product_db's autovacuum settings, if anything: the
/// search index churns (a row per keyword subset of every listed item,
/// deleted when it sells out), so an autovacuum that is off or looks less
/// often than every [`NAPTIME_LIMIT_SECS`] leaves dead rows for every
/// search, sell-out and vote to step over.
pub fn autovacuum_warning(enabled: bool, naptime_secs: i64) -> Option<String> {
    const FIX: &str = "ALTER SYSTEM SET autovacuum_naptime = '5s'; SELECT pg_reload_conf();";
    if !enabled {
        return Some(format!(
            "product_db runs without autovacuum: the search index's dead rows will slow \
             searches and writes more and more; as a superuser: \
             ALTER SYSTEM SET autovacuum = on; {FIX}"
        ));
    }
    (naptime_secs > NAPTIME_LIMIT_SECS).then(|| {
        format!(
            "product_db's autovacuum looks every {naptime_secs} s (autovacuum_naptime): the \
             search index's dead rows pile up between looks and slow searches and writes \
             (durable 100x100 throughput x0.86 at 60 s against 5 s); as a superuser: {FIX}"
        )
    })
}

impl Store {
    /// product_db's autovacuum settings: whether it is on, and its naptime in
    /// seconds (for [`autovacuum_warning`]).
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn autovacuum_settings(&self) -> Result<(bool, i64), StoreError> {
        let row = self.product()?.query_one(AUTOVACUUM_SQL, &[])?;
        Ok((row.try_get("enabled")?, row.try_get("naptime_secs")?))
    }

    /// Items of `category` with units left: with no keywords all of them, newest
    /// first; with keywords those sharing at least one, ranked by shared keywords,
    /// then score, then id. Returns one page and the number of all matches.
    ///
    /// # Errors
    /// `SessionExpired`, `Unavailable`.
    pub fn search(
        &self,
        session: SessionId,
        category: i32,
        keywords: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Item>, i64), StoreError> {
        // Searches may lag the primary a little: the standby serves them
        // while it keeps up. The session check is on its way meanwhile.
        let read = || {
            self.read_product(|product| {
                if keywords.is_empty() {
                    return product.query(CATEGORY_SQL, &[&category, &limit, &offset]);
                }
                let (sorted, keys) = keyword_params(keywords);
                let m = sorted.len();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&category, &limit, &offset, &sorted, &keys];
                if m >= PROBE_FROM {
                    let pairs = pair_keys(m, &keys);
                    let shared: bool = product
                        .query_one(PAIRS_SQL, &[&category, &pairs])?
                        .try_get("shared")?;
                    if !shared {
                        let one = product.query(keyword_statement(m, Levels::One), &params)?;
                        // -1: an item sharing two of them was listed meanwhile.
                        let raced = match one.first() {
                            Some(row) => row.try_get::<_, i64>("total")? < 0,
                            None => false,
                        };
                        if !raced {
                            return Ok(one);
                        }
                    }
                }
                product.query(keyword_statement(m, Levels::All), &params)
            })
        };
        let rows = self.buyer_session_while(session, read)?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get("total")?,
            None => 0,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<_, Option<i64>>("item_id")?.is_some() {
                items.push(read_item(row)?);
            }
        }
        Ok((items, total))
    }

    /// Folds each search count's delta rows into one (a count then reads one
    /// row until the next changes); returns how many rows it folded, 0 when
    /// another server was folding.
    ///
    /// # Errors
    /// `Unavailable`.
    pub fn fold_search_counts(&self) -> Result<i64, StoreError> {
        Ok(self
            .product()?
            .query_one("SELECT fold_search_counts() AS folded", &[])?
            .try_get("folded")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_length_prefixed_keywords_in_byte_order() {
        let (sorted, keys) = keyword_params(&["warm".into(), "hot".into(), "Ä".into()]);
        assert_eq!(sorted, ["hot", "warm", "Ä"]);
        assert_eq!(
            keys,
            [
                "3hot4warm1Ä",
                "3hot4warm",
                "3hot1Ä",
                "4warm1Ä",
                "3hot",
                "4warm",
                "1Ä"
            ]
        );
        // A keyword that looks like a key cannot collide with a pair.
        assert_ne!(keyword_key(&["1a1b"]), keyword_key(&["a", "b"]));
    }

    #[test]
    fn autovacuum_off_or_looking_less_often_than_every_10_s_is_reported() {
        assert_eq!(autovacuum_warning(true, 5), None);
        assert_eq!(autovacuum_warning(true, NAPTIME_LIMIT_SECS), None);
        let slow = autovacuum_warning(true, 60).expect("the default minute is reported");
        assert!(
            slow.contains("every 60 s") && slow.contains("autovacuum_naptime = '5s'"),
            "{slow}"
        );
        let off = autovacuum_warning(false, 5).expect("autovacuum off is reported");
        assert!(
            off.contains("without autovacuum") && off.contains("autovacuum = on"),
            "{off}"
        );
    }

    #[test]
    fn levels_run_from_all_keywords_down_to_one() {
        assert_eq!(subsets(3), [7, 3, 5, 6, 1, 2, 4]);
        assert_eq!(subsets(5).len(), 31);
        let sql = keyword_sql(3, Levels::All);
        let top = sql.find("3 AS matched").unwrap();
        let next = sql.find("2 AS matched").unwrap();
        let last = sql.find("1 AS matched").unwrap();
        assert!(top < next && next < last, "{sql}");
        let one = keyword_sql(3, Levels::One);
        assert!(!one.contains("2 AS matched") && one.contains("1 AS matched"));
        let keys = keyword_params(&["a".into(), "b".into(), "c".into()]).1;
        assert_eq!(pair_keys(3, &keys), ["1a1b", "1a1c", "1b1c"]);
    }
}
