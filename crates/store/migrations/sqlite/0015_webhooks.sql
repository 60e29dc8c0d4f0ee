-- Outgoing alerts by webhook (issue 14; docs/webhooks.md). Same conventions as 0001 (timestamps
-- are INTEGER microseconds).
--
-- A webhook's URL is sealed like a client secret (Teams and Slack URLs are credentials); only its
-- scheme and host are kept in clear, for lists. A generic webhook's signing secret is sealed too.

CREATE TABLE webhooks (
    id                 INTEGER PRIMARY KEY,
    -- NULL: the events of every workspace (only a global admin creates such a webhook).
    workspace_id       INTEGER REFERENCES workspaces (id) ON DELETE CASCADE,
    name               TEXT    NOT NULL,
    format             TEXT    NOT NULL CHECK (format IN ('generic', 'teams', 'slack')),
    url_ciphertext     BLOB    NOT NULL,
    url_nonce          BLOB    NOT NULL,
    -- Scheme and host followed by an ellipsis: what lists show.
    url_shown          TEXT    NOT NULL,
    -- The generic format's HMAC-SHA256 signing secret; NULL for Teams and Slack.
    secret_ciphertext  BLOB,
    secret_nonce       BLOB,
    -- The events it receives, comma-separated (immediate_finding, sla_breach, sync_failed,
    -- secret_expiring).
    events             TEXT    NOT NULL,
    enabled            INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    created_by         TEXT    NOT NULL
);
-- The vault's associated data is the name: it never changes and is unique.
CREATE UNIQUE INDEX webhooks_name ON webhooks (lower(name));

-- The outbox and the delivery log: one row per event and webhook.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    webhook_id       INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            TEXT    NOT NULL,
    -- The same breach or expiry is not alerted twice (NULL: never deduplicated, e.g. a test).
    dedup_key        TEXT,
    -- The event as JSON, free of secrets.
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When a pending delivery is next tried; a claim moves it a lease ahead, so that a worker
    -- that dies mid-send leaves it to be tried again.
    next_attempt_at  INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE UNIQUE INDEX webhook_deliveries_dedup ON webhook_deliveries (webhook_id, dedup_key);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Every attempt of a delivery, for the log.
CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    http_status  INTEGER,
    error        TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);

-- What has been alerted already (a finding becoming immediate, a finding's breach of its due
-- date, a secret's coming expiry), so that each is alerted once whatever the webhooks.
CREATE TABLE webhook_alerted (
    kind        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    alerted_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
);
