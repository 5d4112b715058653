-- Direct conversations, blocking, the chat list's order and unread counts, and receipts.

-- 'group' or 'direct'. A direct room's key is "<smaller id>:<larger id>": the unique index
-- makes one conversation per pair, whichever node or request creates it first.
ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'group';
ALTER TABLE rooms ADD COLUMN direct_key TEXT;
CREATE UNIQUE INDEX rooms_direct_key ON rooms (direct_key) WHERE direct_key IS NOT NULL;

-- Last activity (the newest message, else creation) in microseconds since the epoch: the
-- chat list's order and cursor. last_message_id spares the list a search per room.
ALTER TABLE rooms ADD COLUMN activity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN last_message_id INTEGER;
UPDATE rooms SET
    last_message_id = (SELECT MAX(id) FROM messages WHERE room_id = rooms.id),
    activity = CAST((julianday(COALESCE(
        (SELECT MAX(created_at) FROM messages WHERE room_id = rooms.id), created_at))
        - 2440587.5) * 86400000000.0 AS INTEGER);

-- Each member's positions: the newest message id delivered to them and read by them.
ALTER TABLE room_members ADD COLUMN delivered_upto INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN read_upto INTEGER NOT NULL DEFAULT 0;

-- Every forward move of a position, so a message's receipts say when each member got and
-- read it: the first move of a kind past the message's id. One row per (coalesced) move.
CREATE TABLE receipt_moves (
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    TEXT    NOT NULL,
    upto    INTEGER NOT NULL,
    at      TEXT    NOT NULL,
    PRIMARY KEY (room_id, user_id, kind, upto)
) WITHOUT ROWID;

CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;

CREATE INDEX users_by_phone ON users (phone_number);
