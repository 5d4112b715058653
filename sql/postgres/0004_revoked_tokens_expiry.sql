-- Logout now revokes access tokens too, so revoked_tokens takes a row per logout more; each
-- revocation first deletes the expired rows, and this index keeps that delete cheap.
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
