-- Users, rooms, memberships, messages and their attachments, revoked refresh tokens.
-- Timestamps are timestamptz (microseconds, like the strings the SQLite schema keeps); the
-- store formats them exactly as SQLite's rows read.

CREATE TABLE users (
    id            BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT        NOT NULL,
    username      TEXT        NOT NULL UNIQUE,
    phone_number  TEXT        NOT NULL,
    first_name    TEXT        NOT NULL,
    last_name     TEXT        NOT NULL,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- One account per address whatever its letter case (SQLite: COLLATE NOCASE); lookups by
-- email use the same expression.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE revoked_tokens (
    jti        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

CREATE TABLE rooms (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT        NOT NULL,
    admin_id   BIGINT      NOT NULL REFERENCES users (id),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE room_members (
    room_id   BIGINT      NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

-- Identity values are never reused, so "after id N" is a stable catch-up cursor; the store
-- inserts a room's messages under that room's row lock, so within a room ids also follow
-- commit order.
CREATE TABLE messages (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    BIGINT      NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    sender_id  BIGINT      NOT NULL REFERENCES users (id),
    content    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX messages_by_room ON messages (room_id, id);

CREATE TABLE attachments (
    message_id   BIGINT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    file_name    TEXT   NOT NULL UNIQUE,
    content_type TEXT   NOT NULL,
    size         BIGINT NOT NULL
);
