-- Accounts and sessions hardened (issue 12). Same changes as ../sqlite/0009_account_hardening.sql.

-- Sessions are keyed by the SHA-256 of their id from now on, so that someone who can read the
-- database cannot ride a session. Rows keyed by a plain id would never be found again, and would
-- leave live ids readable until they expire: everyone signs in again.
DELETE FROM sessions;

-- A password someone else chose (the demo's one-time password) must be changed at the first
-- sign-in; until then the session can only reach the change-password page.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT false;
-- When the password last changed: sessions signed in before then end.
ALTER TABLE users ADD COLUMN password_changed_at TIMESTAMPTZ;

-- One-time tokens of the first-run setup page, printed by `rampart serve` while no admin exists.
-- Only their SHA-256 is kept; a token is deleted when used, and is worthless after expires_at.
CREATE TABLE setup_tokens (
    token_hash  TEXT        PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
