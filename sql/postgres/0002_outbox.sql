-- Room events waiting to be published, written in the same transaction as the change they
-- announce; the relay deletes a row only after the transport confirmed it.
CREATE TABLE outbox (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Wakes the relay of every node (they LISTEN on this channel) when the inserting transaction
-- commits; PostgreSQL folds the notices of one transaction into one.
CREATE FUNCTION chatnode_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatnode_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION chatnode_outbox_notify();

-- Which node's relay may publish (one at a time keeps every room in id order). The expiry is
-- on the database's clock, which every node shares.
CREATE TABLE relay_lease (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
