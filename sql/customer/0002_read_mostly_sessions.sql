-- Session checks become read-mostly. Renewing on every request made every
-- request a write (a new row version, WAL, a flushed commit). Now a session is
-- renewed only when its last renewal is older than a grace period of
-- timeout/60 (at most 5 s), and it lives until timeout + grace after that
-- renewal: so it never expires sooner than `timeout` after the last request,
-- and at most `grace` later.

CREATE FUNCTION session_grace(p_timeout_secs float8)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT least(p_timeout_secs / 60.0, 5.0)
$$;

CREATE OR REPLACE FUNCTION touch_seller_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seller bigint;
    v_last   timestamptz;
    v_grace  float8 := session_grace(p_timeout_secs);
BEGIN
    SELECT seller_id, last_active_at INTO v_seller, v_last
      FROM seller_sessions WHERE session_id = p_session;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_last <= now() - make_interval(secs => p_timeout_secs + v_grace) THEN
        DELETE FROM seller_sessions WHERE session_id = p_session;
        RETURN NULL;
    END IF;
    IF v_last <= now() - make_interval(secs => v_grace) THEN
        UPDATE seller_sessions SET last_active_at = now() WHERE session_id = p_session;
    END IF;
    RETURN v_seller;
END $$;

CREATE OR REPLACE FUNCTION touch_buyer_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_buyer bigint;
    v_last  timestamptz;
    v_grace float8 := session_grace(p_timeout_secs);
BEGIN
    SELECT buyer_id, last_active_at INTO v_buyer, v_last
      FROM buyer_sessions WHERE session_id = p_session;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_last <= now() - make_interval(secs => p_timeout_secs + v_grace) THEN
        DELETE FROM buyer_sessions WHERE session_id = p_session;
        RETURN NULL;
    END IF;
    IF v_last <= now() - make_interval(secs => v_grace) THEN
        UPDATE buyer_sessions SET last_active_at = now() WHERE session_id = p_session;
    END IF;
    RETURN v_buyer;
END $$;
