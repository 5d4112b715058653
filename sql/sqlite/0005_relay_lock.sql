-- The relay lease is now a lock the holder's death releases at once (an OS file lock next
-- to a SQLite file, a session advisory lock in PostgreSQL). Dropping the table also makes a
-- node of an older version fail to publish beside new ones rather than publish out of order.
DROP TABLE IF EXISTS relay_lease;
