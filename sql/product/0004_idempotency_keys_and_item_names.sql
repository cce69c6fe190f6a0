-- Idempotency keys of the writes whose effect lives in product_db (items,
-- prices, units, votes): see customer_db's 0004_idempotency_keys.sql.
CREATE TABLE idempotency_keys (
    scope       text NOT NULL,
    key         text NOT NULL,
    operation   text NOT NULL,
    fingerprint text NOT NULL,
    response    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Purchase lines carry the item's name as it was when bought (PROTOCOL.md:
-- MakePurchase lines and GetBuyerPurchases have `item_name`), so take_stock
-- records and returns it.
ALTER TABLE purchase_takings ADD COLUMN item_name text NOT NULL DEFAULT '';
DROP FUNCTION take_stock(bigint, bigint[], bigint[]);

CREATE FUNCTION take_stock(p_purchase bigint, p_items bigint[], p_quantities bigint[])
RETURNS TABLE (outcome text, item_id bigint, seller_id bigint, quantity bigint, unit_price_cents bigint,
               item_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_taken boolean;
    r record;
    v_found int := 0;
BEGIN
    SELECT d.taken INTO v_taken FROM purchase_decisions d WHERE d.purchase_id = p_purchase;
    IF FOUND THEN
        IF v_taken THEN
            RETURN QUERY SELECT 'taken'::text, t.item_id, t.seller_id, t.quantity, t.unit_price_cents, t.item_name
                           FROM purchase_takings t WHERE t.purchase_id = p_purchase ORDER BY t.item_id;
        ELSE
            RETURN QUERY SELECT 'fenced'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text;
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
            RETURN QUERY SELECT 'short'::text, r.id, NULL::bigint, r.have, NULL::bigint, NULL::text;
            RETURN;
        END IF;
    END LOOP;
    IF v_found < cardinality(p_items) THEN
        INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, false);
        RETURN QUERY SELECT 'missing'::text, c.id, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text
                       FROM unnest(p_items) AS c(id)
                      WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.item_id = c.id)
                      LIMIT 1;
        RETURN;
    END IF;
    INSERT INTO purchase_decisions (purchase_id, taken) VALUES (p_purchase, true);
    INSERT INTO purchase_takings (purchase_id, item_id, seller_id, quantity, unit_price_cents, item_name)
    SELECT p_purchase, i.item_id, i.seller_id, c.want, i.price_cents, i.item_name
      FROM unnest(p_items, p_quantities) AS c(id, want) JOIN items i ON i.item_id = c.id;
    UPDATE items i SET quantity = i.quantity - c.want
      FROM unnest(p_items, p_quantities) AS c(id, want)
     WHERE i.item_id = c.id;
    RETURN QUERY SELECT 'taken'::text, t.item_id, t.seller_id, t.quantity, t.unit_price_cents, t.item_name
                   FROM purchase_takings t WHERE t.purchase_id = p_purchase ORDER BY t.item_id;
END $$;
