-- `chatnode admin`: disabled accounts and revoking every token of an account.

-- When an operator disabled the account; NULL while it is enabled. Every token of a disabled
-- account is refused, on every node, from the next request on.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
-- Tokens issued at or before this Unix second are refused: JWTs are not stored, so revoking
-- all of an account's tokens is a cut-off on their `iat`.
ALTER TABLE users ADD COLUMN tokens_revoked_at INTEGER;
