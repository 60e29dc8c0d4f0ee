-- Portal accounts, their sessions, and REST API tokens. Same conventions as 0001 (timestamps are
-- INTEGER microseconds). Passwords and tokens are stored only as hashes (argon2 PHC strings for
-- passwords, SHA-256 hex of the random token for API tokens).

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_name ON users (lower(name));

-- tower-sessions records, serialised as JSON. Expired rows are swept by the server.
CREATE TABLE sessions (
    id          TEXT    PRIMARY KEY,
    data        TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL,
    scope         TEXT    NOT NULL CHECK (scope IN ('read', 'admin')),
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
