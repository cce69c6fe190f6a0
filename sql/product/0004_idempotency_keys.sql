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
