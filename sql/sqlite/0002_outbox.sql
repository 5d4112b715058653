-- Room events waiting to be published, written in the same transaction as the change they
-- announce; the relay deletes a row only after the transport confirmed it.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event      TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

-- Which node's relay may publish (one at a time keeps every room in id order).
CREATE TABLE relay_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
