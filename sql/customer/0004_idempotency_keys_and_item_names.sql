-- Idempotency keys (PROTOCOL.md, "Retries"): a state-changing request that
-- carries a key is applied at most once per key. The key is recorded in the
-- same transaction as the effect, in the database that holds the effect, with
-- the first attempt's result, so a resend gets that result again. `scope` is
-- the caller: 'seller:<id>' / 'buyer:<id>' for session operations,
-- 'seller-name:<username>' / 'buyer-name:<username>' for CreateAccount and
-- Login. Keys older than 24 hours are swept.
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

-- A purchase is its own record of its key: a resend of MakePurchase finds the
-- purchase begun by the first attempt and returns its receipt (or finishes it).
ALTER TABLE purchases ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX purchases_idempotency_key
    ON purchases (buyer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

DROP FUNCTION begin_purchase(uuid, float8);

-- As before, and with a key: the purchase this buyer began with that key, if
-- any (state 'pending' or 'done'), instead of a new one; state 'reused' when
-- the key was used for another operation. Two attempts with one
-- key at once: the second waits on the unique index and then finds the first.
CREATE FUNCTION begin_purchase(p_session uuid, p_timeout_secs float8, p_key text)
RETURNS TABLE (purchase_id bigint, buyer_id bigint, items bigint[], quantities bigint[], state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_buyer bigint;
    v_items bigint[];
    v_quantities bigint[];
    v_purchase bigint;
BEGIN
    v_buyer := touch_buyer_session(p_session, p_timeout_secs);
    IF v_buyer IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::bigint, NULL::bigint[], NULL::bigint[], NULL::text;
        RETURN;
    END IF;
    IF p_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM idempotency_keys k WHERE k.scope = 'buyer:' || v_buyer AND k.key = p_key
    ) THEN
        -- The key belongs to another operation of this buyer.
        RETURN QUERY SELECT NULL::bigint, v_buyer, NULL::bigint[], NULL::bigint[], 'reused'::text;
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        RETURN QUERY SELECT p.purchase_id, p.buyer_id, p.cart_items, p.cart_quantities, p.state
                       FROM purchases p
                      WHERE p.buyer_id = v_buyer AND p.idempotency_key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    SELECT array_agg(c.item_id ORDER BY c.item_id), array_agg(c.quantity ORDER BY c.item_id)
      INTO v_items, v_quantities
      FROM active_carts c WHERE c.session_id = p_session;
    IF v_items IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, v_buyer, '{}'::bigint[], '{}'::bigint[], NULL::text;
        RETURN;
    END IF;
    INSERT INTO purchases AS p (buyer_id, total_cents, state, session_id, cart_items,
                                cart_quantities, idempotency_key)
    VALUES (v_buyer, 0, 'pending', p_session, v_items, v_quantities, p_key)
    ON CONFLICT (buyer_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING p.purchase_id INTO v_purchase;
    IF v_purchase IS NULL THEN
        -- Another attempt with this key began (and committed) meanwhile.
        RETURN QUERY SELECT p.purchase_id, p.buyer_id, p.cart_items, p.cart_quantities, p.state
                       FROM purchases p
                      WHERE p.buyer_id = v_buyer AND p.idempotency_key = p_key;
        RETURN;
    END IF;
    RETURN QUERY SELECT v_purchase, v_buyer, v_items, v_quantities, 'pending'::text;
END $$;

-- Purchase lines keep the item's name as it was when bought (PROTOCOL.md).
ALTER TABLE purchase_lines ADD COLUMN item_name text NOT NULL DEFAULT '';
DROP FUNCTION finish_purchase(bigint, bigint[], bigint[], bigint[], bigint[]);

CREATE FUNCTION finish_purchase(
    p_purchase bigint, p_items bigint[], p_quantities bigint[], p_sellers bigint[], p_prices bigint[],
    p_names text[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_buyer bigint;
    v_session uuid;
    v_total bigint;
    r record;
BEGIN
    SELECT p.state, p.buyer_id, p.session_id, p.total_cents INTO v_state, v_buyer, v_session, v_total
      FROM purchases p WHERE p.purchase_id = p_purchase FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_state = 'done' THEN
        RETURN v_total;
    END IF;
    INSERT INTO purchase_lines (purchase_id, item_id, seller_id, quantity, unit_price_cents, item_name)
    SELECT p_purchase, l.item, l.seller, l.quantity, l.price, l.name
      FROM unnest(p_items, p_sellers, p_quantities, p_prices, p_names)
           AS l(item, seller, quantity, price, name);
    SELECT coalesce(sum(l.quantity * l.price), 0) INTO v_total
      FROM unnest(p_quantities, p_prices) AS l(quantity, price);
    UPDATE purchases SET state = 'done', total_cents = v_total, purchased_at = now()
     WHERE purchase_id = p_purchase;
    UPDATE buyers SET items_purchased = items_purchased + (SELECT sum(q) FROM unnest(p_quantities) q)
     WHERE buyers.buyer_id = v_buyer;
    FOR r IN
        SELECT l.seller, sum(l.quantity) AS sold
          FROM unnest(p_sellers, p_quantities) AS l(seller, quantity)
         GROUP BY l.seller ORDER BY l.seller
    LOOP
        UPDATE sellers SET items_sold = items_sold + r.sold WHERE seller_id = r.seller;
    END LOOP;
    IF v_session IS NOT NULL THEN
        DELETE FROM active_carts WHERE session_id = v_session;
    END IF;
    DELETE FROM saved_carts WHERE saved_carts.buyer_id = v_buyer;
    RETURN v_total;
END $$;
