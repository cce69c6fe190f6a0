-- Search reads a page, not every match. Each item_keywords row carries its
-- item's score (thumbs_up - thumbs_down), kept in step by the triggers below,
-- so the matches of one keyword come out of one index already in ranking order
-- (score, then item id) and a page costs its own rows; with several keywords
-- the matches are grouped from the same index alone, and only the page's
-- items are read from items.

ALTER TABLE item_keywords ADD COLUMN score bigint NOT NULL DEFAULT 0;

UPDATE item_keywords k SET score = i.thumbs_up - i.thumbs_down
  FROM items i
 WHERE i.item_id = k.item_id AND i.thumbs_up <> i.thumbs_down;

CREATE INDEX item_keywords_ranked ON item_keywords (category, keyword, score DESC, item_id);

-- Listing (or restocking from zero) enters an item's keywords with its
-- current score; selling out removes them.
CREATE OR REPLACE FUNCTION sync_item_keywords() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (OLD.quantity = 0 AND NEW.quantity > 0) THEN
        IF NEW.quantity > 0 THEN
            INSERT INTO item_keywords (category, keyword, item_id, score)
            SELECT NEW.category, kw, NEW.item_id, NEW.thumbs_up - NEW.thumbs_down
              FROM unnest(NEW.keywords) AS kw;
        END IF;
    ELSIF OLD.quantity > 0 AND NEW.quantity = 0 THEN
        DELETE FROM item_keywords
         WHERE category = NEW.category AND keyword = ANY (NEW.keywords)
           AND item_id = NEW.item_id;
    END IF;
    RETURN NULL;
END $$;

-- A vote moves the item's score in every one of its keyword rows, in the
-- vote's own transaction (the item's row lock orders votes on one item).
CREATE FUNCTION sync_item_keyword_scores() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.quantity > 0
       AND NEW.thumbs_up - NEW.thumbs_down IS DISTINCT FROM OLD.thumbs_up - OLD.thumbs_down THEN
        UPDATE item_keywords SET score = NEW.thumbs_up - NEW.thumbs_down
         WHERE category = NEW.category AND keyword = ANY (NEW.keywords)
           AND item_id = NEW.item_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER items_sync_keyword_scores
AFTER UPDATE OF thumbs_up, thumbs_down ON items
FOR EACH ROW EXECUTE FUNCTION sync_item_keyword_scores();
