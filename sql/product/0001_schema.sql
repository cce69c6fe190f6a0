-- product_db: items, their keywords, per-buyer votes and per-seller vote totals.

CREATE TABLE items (
    item_id     bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seller_id   bigint  NOT NULL,
    category    integer NOT NULL CHECK (category >= 0),
    item_name   text    NOT NULL,
    keywords    text[]  NOT NULL DEFAULT '{}',
    condition   text    NOT NULL CHECK (condition IN ('New', 'Used')),
    price_cents bigint  NOT NULL CHECK (price_cents >= 0),
    quantity    bigint  NOT NULL CHECK (quantity >= 0),
    thumbs_up   bigint  NOT NULL DEFAULT 0,
    thumbs_down bigint  NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- DisplayItemsForSale and ownership checks.
CREATE INDEX items_seller ON items (seller_id, item_id);
-- Search without keywords: newest first within a category, sold-out excluded.
CREATE INDEX items_category_available ON items (category, item_id DESC) WHERE quantity > 0;

-- One row per (item, keyword): search with keywords is an index range scan on
-- (category, keyword), never a scan of items. Keywords are stored lower-case.
CREATE TABLE item_keywords (
    category integer NOT NULL,
    keyword  text    NOT NULL,
    item_id  bigint  NOT NULL REFERENCES items,
    PRIMARY KEY (category, keyword, item_id)
);

-- One vote per buyer per item; a new vote replaces the old one.
CREATE TABLE item_votes (
    item_id  bigint  NOT NULL REFERENCES items,
    buyer_id bigint  NOT NULL,
    up       boolean NOT NULL,
    PRIMARY KEY (item_id, buyer_id)
);

-- Sums of the votes on each seller's items, kept with every vote so a rating
-- is one row read however many items the seller has.
CREATE TABLE seller_ratings (
    seller_id   bigint PRIMARY KEY,
    thumbs_up   bigint NOT NULL DEFAULT 0,
    thumbs_down bigint NOT NULL DEFAULT 0
);

-- Records a vote and adjusts the item's and the seller's counts, atomically.
-- Locking the item row first serialises votes on one item, so concurrent votes
-- never lose an update; returns no row when the item does not exist.
CREATE FUNCTION cast_vote(p_item bigint, p_buyer bigint, p_up boolean)
RETURNS TABLE (up_votes bigint, down_votes bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_seller bigint;
    v_prev   boolean;
    d_up     bigint := 0;
    d_down   bigint := 0;
BEGIN
    SELECT seller_id INTO v_seller FROM items WHERE item_id = p_item FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT up INTO v_prev FROM item_votes WHERE item_id = p_item AND buyer_id = p_buyer;
    IF NOT FOUND THEN
        INSERT INTO item_votes (item_id, buyer_id, up) VALUES (p_item, p_buyer, p_up);
        IF p_up THEN d_up := 1; ELSE d_down := 1; END IF;
    ELSIF v_prev IS DISTINCT FROM p_up THEN
        UPDATE item_votes SET up = p_up WHERE item_id = p_item AND buyer_id = p_buyer;
        IF p_up THEN d_up := 1; d_down := -1; ELSE d_up := -1; d_down := 1; END IF;
    END IF;
    IF d_up <> 0 OR d_down <> 0 THEN
        UPDATE items SET thumbs_up = thumbs_up + d_up, thumbs_down = thumbs_down + d_down
         WHERE item_id = p_item;
        INSERT INTO seller_ratings AS r (seller_id, thumbs_up, thumbs_down)
        VALUES (v_seller, d_up, d_down)
        ON CONFLICT (seller_id) DO UPDATE
           SET thumbs_up = r.thumbs_up + EXCLUDED.thumbs_up,
               thumbs_down = r.thumbs_down + EXCLUDED.thumbs_down;
    END IF;
    RETURN QUERY SELECT i.thumbs_up, i.thumbs_down FROM items i WHERE i.item_id = p_item;
END $$;
