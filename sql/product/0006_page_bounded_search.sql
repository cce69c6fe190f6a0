-- Search whose cost is bounded by the page, not by the matches.
--
-- Ranking (PROTOCOL.md): keywords matched (most first), then score
-- (thumbs_up - thumbs_down, highest first), then item id. For a search of the
-- keyword set K, the items that match exactly the subset S of K are the items
-- listed under S that carry none of K's other keywords. So item_keyword_sets
-- holds, for every item with units for sale, one row per non-empty subset of
-- its keywords (at most 31), in an index ordered by (category, subset, score
-- DESC, item_id) that also carries the item's keywords: a search reads the
-- level of |K| matches from one range, then the level of |K|-1 from |K|
-- ranges merged, and so on, each already in ranking order, and stops at the
-- end of its page. What it skips on the way (items of a higher level seen
-- again under a smaller subset) is bounded by the offset.
--
-- Counts: search_counts holds signed deltas of the number of available
-- items per (category, keyword), '' standing for the whole category. Writers
-- only insert (no row lock to wait on, no deadlock between two purchases
-- selling out items in different orders); every second a server folds each
-- key's rows into one (fold_search_counts), so a count reads a few rows.

-- Every subset is a text key: its keywords in byte order, each prefixed by
-- its length in characters (1 to 8, one digit): {warm, hot} -> '3hot4warm'.
-- Unambiguous whatever the keywords contain. The servers build the same keys
-- for a search (store/src/search.rs). keyword_subsets returns the keys of
-- every non-empty subset of a keyword list (duplicates collapse): plain
-- plpgsql without a query, about 20 us for 4 keywords (a SQL function with
-- string_agg over generate_series took ten times that, planned at each call).
CREATE FUNCTION keyword_subsets(kw text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    w    text[] := kw;
    keys text[] := '{}';
    n    int := cardinality(kw);
    t    text;
    p    text;
    c    int;
BEGIN
    -- Insertion sort in byte order (at most 5 keywords).
    FOR i IN 2 .. n LOOP
        t := w[i];
        c := i - 1;
        WHILE c >= 1 AND w[c] COLLATE "C" > t COLLATE "C" LOOP
            w[c + 1] := w[c];
            c := c - 1;
        END LOOP;
        w[c + 1] := t;
    END LOOP;
    -- The subsets of the first i keywords are those of the first i - 1,
    -- the i-th alone, and each earlier one followed by the i-th.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN i > 1 AND w[i] = w[i - 1];
        p := char_length(w[i]) || w[i];
        c := cardinality(keys);
        keys := keys || p;
        FOR j IN 1 .. c LOOP
            keys := keys || (keys[j] || p);
        END LOOP;
    END LOOP;
    RETURN keys;
END $$;

CREATE TABLE item_keyword_sets (
    category integer NOT NULL,
    -- The key of a non-empty subset of the item's keywords; compared byte by
    -- byte whatever the database's collation (only equality matters here).
    keys     text    COLLATE "C" NOT NULL,
    score    bigint  NOT NULL,   -- the item's thumbs_up - thumbs_down
    item_id  bigint  NOT NULL,
    keywords text[]  NOT NULL    -- all the item's keywords
);
CREATE INDEX item_keyword_sets_ranked
    ON item_keyword_sets (category, keys, score DESC, item_id) INCLUDE (keywords);

CREATE TABLE search_counts (
    category integer NOT NULL,
    keyword  text    COLLATE "C" NOT NULL,   -- '' counts every available item of the category
    n        bigint  NOT NULL
);
CREATE INDEX search_counts_key ON search_counts (category, keyword) INCLUDE (n);

-- Folds each key's delta rows into one; returns how many rows it folded.
-- The servers call it every second, the catalogue loader after each batch.
-- One fold at a time (the advisory lock; the others skip their turn), and
-- writers never touch existing rows, so nothing waits on anything: rows
-- inserted after the fold's snapshot stay for the next one.
CREATE FUNCTION fold_search_counts() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7365617263680001) THEN
        RETURN 0;
    END IF;
    WITH many AS (
        SELECT category, keyword FROM search_counts
         GROUP BY category, keyword HAVING count(*) > 1
    ), gone AS (
        DELETE FROM search_counts s USING many m
         WHERE s.category = m.category AND s.keyword = m.keyword
        RETURNING s.category, s.keyword, s.n
    ), kept AS (
        INSERT INTO search_counts (category, keyword, n)
        SELECT category, keyword, sum(n) FROM gone
         GROUP BY category, keyword HAVING sum(n) <> 0
    )
    SELECT count(*) INTO folded FROM gone;
    RETURN folded;
END $$;

-- Keeps item_keyword_sets and search_counts in step with items. Invariant:
-- an item with units for sale has one row per subset of its keywords, each
-- with the item's current score; a sold-out item has none.
CREATE FUNCTION sync_item_search() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_listed boolean := TG_OP = 'UPDATE' AND OLD.quantity > 0;
    listed     boolean := NEW.quantity > 0;
    old_score  bigint;
    new_score  bigint := NEW.thumbs_up - NEW.thumbs_down;
    count_keys text[];
    delta      bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_score := OLD.thumbs_up - OLD.thumbs_down;
    END IF;
    IF listed AND NOT was_listed THEN
        INSERT INTO item_keyword_sets (category, keys, score, item_id, keywords)
        SELECT NEW.category, s, new_score, NEW.item_id, NEW.keywords
          FROM unnest(keyword_subsets(NEW.keywords)) AS s;
        delta := 1;
    ELSIF was_listed AND NOT listed THEN
        DELETE FROM item_keyword_sets
         WHERE category = NEW.category
           AND keys = ANY (keyword_subsets(NEW.keywords))
           AND score = old_score AND item_id = NEW.item_id;
        delta := -1;
    ELSIF listed AND old_score IS DISTINCT FROM new_score THEN
        UPDATE item_keyword_sets SET score = new_score
         WHERE category = NEW.category
           AND keys = ANY (keyword_subsets(NEW.keywords))
           AND score = old_score AND item_id = NEW.item_id;
    END IF;
    IF delta IS NOT NULL THEN
        count_keys := ARRAY(SELECT DISTINCT w FROM unnest(NEW.keywords) AS w) || ''::text;
        INSERT INTO search_counts (category, keyword, n)
        SELECT NEW.category, w, delta FROM unnest(count_keys) AS w;
    END IF;
    RETURN NULL;
END $$;

-- Old servers may still be writing during a rolling upgrade: hold their
-- writes until the new structures are filled and the triggers swapped.
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

DROP TRIGGER items_sync_keyword_scores ON items;
DROP TRIGGER items_sync_keywords ON items;
DROP FUNCTION sync_item_keyword_scores();
DROP FUNCTION sync_item_keywords();
DROP TABLE item_keywords;

INSERT INTO item_keyword_sets (category, keys, score, item_id, keywords)
SELECT i.category, s, i.thumbs_up - i.thumbs_down, i.item_id, i.keywords
  FROM items i, unnest(keyword_subsets(i.keywords)) AS s
 WHERE i.quantity > 0;

INSERT INTO search_counts (category, keyword, n)
SELECT i.category, w, count(*)
  FROM items i,
       unnest(ARRAY(SELECT DISTINCT k FROM unnest(i.keywords) AS k) || ''::text) AS w
 WHERE i.quantity > 0
 GROUP BY i.category, w;

CREATE TRIGGER items_sync_search
AFTER INSERT OR UPDATE OF quantity, thumbs_up, thumbs_down ON items
FOR EACH ROW EXECUTE FUNCTION sync_item_search();
