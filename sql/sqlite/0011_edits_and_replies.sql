-- Editing and deleting messages: when a message was last edited, and when it was deleted for
-- everyone (its content is emptied and its attachment removed then; the row stays as a
-- tombstone, so ids, replies and receipts keep their meaning).
ALTER TABLE messages ADD COLUMN edited_at TEXT;
ALTER TABLE messages ADD COLUMN deleted_at TEXT;

-- The message this one answers (of the same room; checked when it is sent).
ALTER TABLE messages ADD COLUMN reply_to INTEGER REFERENCES messages (id);
