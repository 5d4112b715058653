-- Presence: which node holds sockets of which user, and each node's heartbeat. A user is
-- online while a live node (heartbeat not expired) holds a session of theirs; a dead node's
-- sessions are swept by whichever node sees its heartbeat expire first.

-- Stored, so "last seen" survives restarts; NULL until the user first goes offline.
ALTER TABLE users ADD COLUMN last_seen TEXT;
-- Privacy: when 0, others never see this user's last_seen (nor does the user see theirs).
ALTER TABLE users ADD COLUMN show_last_seen INTEGER NOT NULL DEFAULT 1;

-- Unix milliseconds: the last heartbeat and when the node counts as dead without another.
CREATE TABLE presence_nodes (
    node_id      TEXT    PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

CREATE TABLE presence_sessions (
    node_id TEXT    NOT NULL REFERENCES presence_nodes (node_id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (node_id, user_id)
) WITHOUT ROWID;

CREATE INDEX presence_sessions_by_user ON presence_sessions (user_id, node_id);
