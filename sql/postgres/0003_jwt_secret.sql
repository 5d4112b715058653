-- The JWT signing secret generated when no --jwt-secret is configured: the first node to
-- start stores it, and every node sharing the database signs and verifies with it.
CREATE TABLE jwt_secret (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    secret     TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
