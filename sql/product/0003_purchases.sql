-- The product_db side of MakePurchase (see customer_db's 0003_purchases.sql):
-- each purchase is decided here exactly once. 'taken' rows record what was
-- taken, at which price, from which seller, so the decision can be read again
-- by a retry or by recovery.

CREATE TABLE purchase_decisions (
    purchase_id bigint PRIMARY KEY,
    taken       boolean NOT NULL,   -- true: stock taken; false: fenced off, never to take stock
    decided_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE purchase_takings (
    purchase_id      bigint NOT NULL REFERENCES purchase_decisions,
    item_id          bigint NOT NULL,
    seller_id        bigint NOT NULL,
    quantity         bigint NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (purchase_id, item_id)
);

-- Takes the stock of every line or of none. Returns the taken lines with
-- outcome 'taken'; or one row: 'short' (item_id lacked stock, quantity = what
-- it has), 'missing' (item_id does not exist) or 'fenced' (decided against
-- before). Items are locked in id order, so concurrent purchases cannot
-- deadlock and never oversell.
CREATE FUNCTION take_stock(p_purchase bigint, p_items bigint[], p_quantities bigint[])
RETURNS TABLE (outcome text, item_id bigint, seller_id bigint, quantity bigint, unit_price_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_taken boolean;
    r record;
    v_found int := 0;
BEGIN
    SELECT d.taken INTO v_taken FROM purchase_decisions d WHERE d.purchase_id = p_purchase;
    IF FOUND THEN
        IF v_taken THEN
            RETURN QUERY SELECT 'taken'::text, t.item_id, t.seller_id, t.quantity, t.unit_price_cents
                           FROM purchase_takings t WHERE t.purchase_id = p_purchase ORDER BY t.item_id;
        ELSE
            RETURN QUERY SELECT 'fenced'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
        END IF;
        RETURN;
    END IF;
    FOR r IN
        SELECT i.item_id AS id, i.quantity AS have, c.want
          FROM unnest(p_items, p_quantities) AS c(id, want)
          JOIN items i ON i.item_id = c.id
         ORDER BY i.item_id
           FOR UPDATE OF i
    LOOP
        v_found := v_found + 1;
        IF r.have < r.want THEN
            INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, false);
            RETURN QUERY SELECT 'short'::text, r.id, NULL::bigint, r.have, NULL::bigint;
            RETURN;
        END IF;
    END LOOP;
    IF v_found < cardinality(p_items) THEN
        INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, false);
        RETURN QUERY SELECT 'missing'::text, c.id, NULL::bigint, NULL::bigint, NULL::bigint
                       FROM unnest(p_items) AS c(id)
                      WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.item_id = c.id)
                      LIMIT 1;
        RETURN;
    END IF;
    INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, true);
    INSERT INTO purchase_takings (purchase_id, item_id, seller_id, quantity, unit_price_cents)
    SELECT p_purchase, i.item_id, i.seller_id, c.want, i.price_cents
      FROM unnest(p_items, p_quantities) AS c(id, want) JOIN items i ON i.item_id = c.id;
    UPDATE items i SET quantity = i.quantity - c.want
      FROM unnest(p_items, p_quantities) AS c(id, want)
     WHERE i.item_id = c.id;
    RETURN QUERY SELECT 'taken'::text, t.item_id, t.seller_id, t.quantity, t.unit_price_cents
                   FROM purchase_takings t WHERE t.purchase_id = p_purchase ORDER BY t.item_id;
END $$;

-- Recovery's question: has this purchase taken stock? Decides 'no' for good
-- when nothing was decided yet, so a late take_stock can no longer take it.
CREATE FUNCTION fence_purchase(p_purchase bigint)
RETURNS boolean LANGUAGE sql AS $$
    INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, false)
    ON CONFLICT (purchase_id) DO NOTHING;
    SELECT taken FROM purchase_decisions WHERE purchase_id = p_purchase;
$$;
