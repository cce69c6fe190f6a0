-- customer_db: accounts, sessions, carts and purchase history.
--
-- Sessions are rows, never server memory: any frontend instance honours any
-- session, and expiry is judged by the database clock (now()).

CREATE TABLE sellers (
    seller_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text   NOT NULL UNIQUE,
    password_hash text   NOT NULL,          -- argon2id PHC string, never the password
    items_sold    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE buyers (
    buyer_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text   NOT NULL UNIQUE,
    password_hash   text   NOT NULL,
    items_purchased bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Session rows are updated on every request; a low fillfactor and no index on
-- last_active_at keep those updates HOT (no index maintenance). The periodic
-- sweep scans these small tables instead.
CREATE TABLE seller_sessions (
    session_id     uuid   PRIMARY KEY,
    seller_id      bigint NOT NULL REFERENCES sellers ON DELETE CASCADE,
    last_active_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX seller_sessions_seller ON seller_sessions (seller_id);

CREATE TABLE buyer_sessions (
    session_id     uuid   PRIMARY KEY,
    buyer_id       bigint NOT NULL REFERENCES buyers ON DELETE CASCADE,
    last_active_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX buyer_sessions_buyer ON buyer_sessions (buyer_id);

-- The active cart of a session: deleted with the session.
CREATE TABLE active_carts (
    session_id uuid   NOT NULL REFERENCES buyer_sessions ON DELETE CASCADE,
    item_id    bigint NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (session_id, item_id)
);

-- The saved cart of a buyer: outlives sessions.
CREATE TABLE saved_carts (
    buyer_id bigint NOT NULL REFERENCES buyers ON DELETE CASCADE,
    item_id  bigint NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (buyer_id, item_id)
);

-- Purchase history.
CREATE TABLE purchases (
    purchase_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    buyer_id     bigint NOT NULL REFERENCES buyers,
    total_cents  bigint NOT NULL,
    purchased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchases_buyer ON purchases (buyer_id, purchase_id DESC);

CREATE TABLE purchase_lines (
    purchase_id      bigint NOT NULL REFERENCES purchases ON DELETE CASCADE,
    item_id          bigint NOT NULL,
    seller_id        bigint NOT NULL,
    quantity         bigint NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (purchase_id, item_id)
);

-- Renews a live session and returns its seller, or deletes an expired one and
-- returns NULL. One call per request: the session check costs one statement.
CREATE FUNCTION touch_seller_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seller bigint;
BEGIN
    UPDATE seller_sessions SET last_active_at = now()
     WHERE session_id = p_session
       AND last_active_at > now() - make_interval(secs => p_timeout_secs)
    RETURNING seller_id INTO v_seller;
    IF v_seller IS NULL THEN
        DELETE FROM seller_sessions WHERE session_id = p_session;
    END IF;
    RETURN v_seller;
END $$;

CREATE FUNCTION touch_buyer_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_buyer bigint;
BEGIN
    UPDATE buyer_sessions SET last_active_at = now()
     WHERE session_id = p_session
       AND last_active_at > now() - make_interval(secs => p_timeout_secs)
    RETURNING buyer_id INTO v_buyer;
    IF v_buyer IS NULL THEN
        DELETE FROM buyer_sessions WHERE session_id = p_session;
    END IF;
    RETURN v_buyer;
END $$;

-- Overwrites the buyer's saved cart with the session's active cart. The buyer
-- row lock serialises concurrent saves of one buyer's sessions, so the saved
-- cart is always exactly one session's cart, never a mix.
CREATE FUNCTION save_cart(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_buyer bigint;
BEGIN
    v_buyer := touch_buyer_session(p_session, p_timeout_secs);
    IF v_buyer IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM buyers WHERE buyer_id = v_buyer FOR UPDATE;
    DELETE FROM saved_carts WHERE buyer_id = v_buyer;
    INSERT INTO saved_carts (buyer_id, item_id, quantity)
    SELECT v_buyer, item_id, quantity FROM active_carts WHERE session_id = p_session;
    RETURN v_buyer;
END $$;
