-- MakePurchase spans both databases, so it is a saga of idempotent steps:
-- 1. begin_purchase (here): check the session, snapshot the active cart, and
--    record the purchase as 'pending';
-- 2. take_stock (product_db): decide once, for good, whether the stock is
--    taken, all lines or none;
-- 3. finish_purchase (here): record the lines and total, count items sold and
--    purchased, empty both carts.
-- A crash between steps leaves a pending purchase; recovery asks product_db to
-- decide (fencing off a purchase that never took stock) and then finishes or
-- abandons it. History shows only finished purchases.

ALTER TABLE purchases
    ADD COLUMN state text NOT NULL DEFAULT 'done' CHECK (state IN ('pending', 'done')),
    ADD COLUMN session_id uuid,
    ADD COLUMN cart_items bigint[],
    ADD COLUMN cart_quantities bigint[];
CREATE INDEX purchases_pending ON purchases (purchased_at) WHERE state = 'pending';

CREATE FUNCTION begin_purchase(p_session uuid, p_timeout_secs float8)
RETURNS TABLE (purchase_id bigint, buyer_id bigint, items bigint[], quantities bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_buyer bigint;
    v_items bigint[];
    v_quantities bigint[];
    v_purchase bigint;
BEGIN
    v_buyer := touch_buyer_session(p_session, p_timeout_secs);
    IF v_buyer IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::bigint, NULL::bigint[], NULL::bigint[];
        RETURN;
    END IF;
    SELECT array_agg(c.item_id ORDER BY c.item_id), array_agg(c.quantity ORDER BY c.item_id)
      INTO v_items, v_quantities
      FROM active_carts c WHERE c.session_id = p_session;
    IF v_items IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, v_buyer, '{}'::bigint[], '{}'::bigint[];
        RETURN;
    END IF;
    INSERT INTO purchases (buyer_id, total_cents, state, session_id, cart_items, cart_quantities)
    VALUES (v_buyer, 0, 'pending', p_session, v_items, v_quantities)
    RETURNING purchases.purchase_id INTO v_purchase;
    RETURN QUERY SELECT v_purchase, v_buyer, v_items, v_quantities;
END $$;

-- Idempotent: a finished purchase returns its total again and changes nothing.
-- Seller rows are updated in id order, so concurrent finishes cannot deadlock.
CREATE FUNCTION finish_purchase(
    p_purchase bigint, p_items bigint[], p_quantities bigint[], p_sellers bigint[], p_prices bigint[]
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
    INSERT INTO purchase_lines (purchase_id, item_id, seller_id, quantity, unit_price_cents)
    SELECT p_purchase, l.item, l.seller, l.quantity, l.price
      FROM unnest(p_items, p_sellers, p_quantities, p_prices) AS l(item, seller, quantity, price);
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
