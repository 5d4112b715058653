-- The room event log: every durable change to a room (messages, joins, leaves, receipts)
-- with its per-room position `seq`, so a client can replay changes exactly.

-- The newest position handed out in the room (taking the next one locks the room's row until
-- commit, so positions follow commit order on every node), and the newest one the retention
-- has pruned (a replay from before it would have a gap, so it is answered with a reset).
ALTER TABLE rooms ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN log_floor BIGINT NOT NULL DEFAULT 0;

-- The event as the outbox carries it (its JSON, `seq` included).
CREATE TABLE room_events (
    room_id    BIGINT      NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        BIGINT      NOT NULL,
    -- The message an event is about, so deleting the message can redact its events.
    message_id BIGINT,
    event      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX room_events_created_at ON room_events (created_at);
CREATE INDEX room_events_message ON room_events (room_id, message_id) WHERE message_id IS NOT NULL;
