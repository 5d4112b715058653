-- The name the client gave an attachment (its last path component, cleaned), for
-- Content-Disposition; NULL for files stored before it was kept.
ALTER TABLE attachments ADD COLUMN original_name TEXT;
