//! A catalogue for search benchmarks: `loadgen --catalogue N` fills product_db
//! with N items in batched `INSERT ... SELECT` statements generated inside
//! PostgreSQL (no row crosses the network), through the same triggers as a
//! registration, so the keyword index is built as the servers would build it.
//!
//! The distribution (item `g` of 1..=N):
//! - category 0 holds every even `g` (half the catalogue); the odd ones spread
//!   evenly over categories 1-9;
//! - [`HOT`] is on 40% of category 0 (20% of the catalogue: 100,000 items of
//!   500,000), [`WARM`] on 6% of category 0 (15,000 of 500,000);
//! - one keyword `k0`-`k39` each, skewed (the square of a uniform draw: `k0`
//!   on about 16%, `k39` on under 1%), and one of `w0`-`w49` evenly;
//! - 1-5 units each (all on sale), scores from -4 to 10, 1,000 sellers.

use std::time::Instant;

/// The keyword on 40% of category 0.
pub const HOT: &str = "hot";
/// The keyword on 6% of category 0.
pub const WARM: &str = "warm";
/// The big category.
pub const CATEGORY: i64 = 0;

const BATCH: i64 = 50_000;

/// Adds `n` items to the product_db at `url`, numbering them after the items
/// already there; prints a line per batch to stderr.
///
/// # Errors
/// A message when the database cannot be reached or refuses a batch.
pub fn load(url: &str, n: i64) -> Result<(), String> {
    let mut db = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| format!("cannot reach product_db at {url}: {e}"))?;
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = BATCH.min(n - done);
        db.execute(
            "INSERT INTO items (seller_id, category, item_name, keywords, condition,
                                price_cents, quantity, thumbs_up, thumbs_down)
             SELECT 1 + g % 1000,
                    CASE WHEN g % 2 = 0 THEN 0 ELSE 1 + (g / 2) % 9 END,
                    'item ' || g,
                    array_remove(ARRAY[
                        CASE WHEN g % 2 = 0 AND (g / 2) % 5 < 2 THEN 'hot' END,
                        CASE WHEN g % 2 = 0 AND (g / 2) % 100 BETWEEN 40 AND 45 THEN 'warm' END,
                        'k' || floor(40 * power((g * 0.6180339887) % 1, 2))::int,
                        'w' || (g * 7) % 50
                    ], NULL),
                    CASE WHEN g % 3 = 0 THEN 'Used' ELSE 'New' END,
                    100 + (g * 37) % 50000,
                    1 + g % 5,
                    (g * 13) % 11,
                    (g * 7) % 5
               FROM generate_series($1::bigint, $2::bigint) AS g",
            &[&(done + 1), &(done + batch)],
        )
        .map_err(|e| format!("loading items {}..{}: {e}", done + 1, done + batch))?;
        // The batch's search-count deltas, folded (servers fold every second,
        // but there may be none running).
        db.batch_execute("SELECT fold_search_counts()")
            .map_err(|e| format!("folding the search counts: {e}"))?;
        done += batch;
        eprintln!(
            "catalogue: {done} of {n} items in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // What autovacuum would do to a catalogue that has settled: statistics,
    // and the visibility map that lets counts read the indexes alone.
    for table in ["items", "item_keyword_sets", "search_counts"] {
        // One statement each: VACUUM cannot run inside a transaction.
        db.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .map_err(|e| format!("VACUUM ANALYZE {table}: {e}"))?;
    }
    eprintln!(
        "catalogue: {n} items loaded and vacuumed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
