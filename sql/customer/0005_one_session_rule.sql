-- The session rule, once. 0001 and 0002 wrote it out in each side's
-- function (four definitions in all) and again in each side's sweep; now
-- session_state holds it, and the per-side functions only name their table.
--
-- A session last renewed at p_last is 'expired' once timeout + grace have
-- passed (it is deleted), 'renew' once the grace period has (its renewal is
-- written), and 'live' otherwise (a read, no write): see 0002 for why.

CREATE FUNCTION session_state(p_last timestamptz, p_timeout_secs float8)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_last <= now() - make_interval(secs => p_timeout_secs + session_grace(p_timeout_secs))
            THEN 'expired'
        WHEN p_last <= now() - make_interval(secs => session_grace(p_timeout_secs))
            THEN 'renew'
        ELSE 'live'
    END
$$;

CREATE OR REPLACE FUNCTION touch_seller_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id   bigint;
    v_last timestamptz;
BEGIN
    SELECT seller_id, last_active_at INTO v_id, v_last
      FROM seller_sessions WHERE session_id = p_session;
    CASE session_state(v_last, p_timeout_secs)
        WHEN 'expired' THEN
            DELETE FROM seller_sessions WHERE session_id = p_session;
            RETURN NULL;
        WHEN 'renew' THEN
            UPDATE seller_sessions SET last_active_at = now() WHERE session_id = p_session;
        ELSE NULL;
    END CASE;
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION touch_buyer_session(p_session uuid, p_timeout_secs float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id   bigint;
    v_last timestamptz;
BEGIN
    SELECT buyer_id, last_active_at INTO v_id, v_last
      FROM buyer_sessions WHERE session_id = p_session;
    CASE session_state(v_last, p_timeout_secs)
        WHEN 'expired' THEN
            DELETE FROM buyer_sessions WHERE session_id = p_session;
            RETURN NULL;
        WHEN 'renew' THEN
            UPDATE buyer_sessions SET last_active_at = now() WHERE session_id = p_session;
        ELSE NULL;
    END CASE;
    RETURN v_id;
END $$;
