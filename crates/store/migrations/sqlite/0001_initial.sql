-- Rampart's schema, SQLite flavour. The PostgreSQL flavour (../postgres/0001_initial.sql) has the same
-- tables, columns and indexes; only the types differ.
--
-- Conventions:
-- * Timestamps are INTEGER microseconds since 1970-01-01 UTC: 8 bytes, sortable, and exact for the
--   microsecond precision PostgreSQL keeps too (both backends store the same values).
-- * Booleans are INTEGER 0/1. Severity is INTEGER 1 (Low) .. 4 (Critical), NULL when unknown.
-- * Lists (ip_addresses, tags, exploit_types) and run counters are JSON text.
-- * `change_kind` is a scratch column written by every upsert: 0 new, 1 updated, 2 unchanged,
--   3 reopened. The upsert returns it, so one statement both writes a row and says what happened to it.
--
-- Never edit this file once released: add a new migration.

CREATE TABLE integrations (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL,
    product            TEXT    NOT NULL CHECK (product IN ('endpoint', 'cloud')),
    cloud              TEXT    NOT NULL,
    tenant_id          TEXT    NOT NULL,
    client_id          TEXT    NOT NULL,
    secret_ciphertext  BLOB    NOT NULL,
    secret_nonce       BLOB    NOT NULL,
    secret_last4       TEXT    NOT NULL,
    secret_expires_on  TEXT,
    login_url          TEXT,
    api_url            TEXT,
    schedule_minutes   INTEGER NOT NULL,
    enabled            INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
-- Names are typed on command lines: 'Contoso' and 'contoso' must not be two integrations.
CREATE UNIQUE INDEX integrations_name ON integrations (lower(name));

CREATE TABLE sync_runs (
    id              INTEGER PRIMARY KEY,
    integration_id  INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    mode            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    started_at      INTEGER NOT NULL,
    heartbeat_at    INTEGER NOT NULL,
    finished_at     INTEGER,
    verdict         TEXT CHECK (verdict IN ('complete', 'incomplete', 'held')),
    verdict_reason  TEXT,
    counts          TEXT    NOT NULL DEFAULT '{}',
    api_calls       INTEGER NOT NULL DEFAULT 0,
    throttled       INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    -- host:boot:pid:start of the process running it, so a dead owner's run can be taken over.
    owner           TEXT
);
-- At most one running run per integration: the database itself refuses a second one, whichever
-- process asks.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (integration_id) WHERE status = 'running';
CREATE INDEX sync_runs_by_integration ON sync_runs (integration_id, id);

CREATE TABLE sync_state (
    integration_id  INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    key             TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (integration_id, key)
);

CREATE TABLE assets (
    id                 INTEGER PRIMARY KEY,
    integration_id     INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    source_id          TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    name               TEXT,
    os_platform        TEXT,
    os_version         TEXT,
    health_status      TEXT,
    onboarding_status  TEXT,
    exposure_level     TEXT,
    risk_score         TEXT,
    device_value       TEXT,
    ip_addresses       TEXT    NOT NULL DEFAULT '[]',
    tags               TEXT    NOT NULL DEFAULT '[]',
    rbac_group_id      INTEGER,
    rbac_group_name    TEXT,
    aad_device_id      TEXT,
    azure_resource_id  TEXT,
    is_duplicate       INTEGER NOT NULL DEFAULT 0,
    merged_into        TEXT,
    first_seen         INTEGER,
    last_seen          INTEGER,
    status             TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'missing')),
    first_observed     INTEGER NOT NULL,
    last_observed      INTEGER NOT NULL,
    missing_since      INTEGER,
    seen_run           INTEGER,
    change_kind        INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX assets_natural_key ON assets (integration_id, source_id);
CREATE INDEX assets_status ON assets (integration_id, status);

CREATE TABLE vulnerabilities (
    cve_id            TEXT    PRIMARY KEY,
    severity          INTEGER,
    cvss              REAL,
    cvss_vector       TEXT,
    epss              REAL,
    public_exploit    INTEGER NOT NULL DEFAULT 0,
    exploit_verified  INTEGER NOT NULL DEFAULT 0,
    exploit_in_kit    INTEGER NOT NULL DEFAULT 0,
    exploit_types     TEXT    NOT NULL DEFAULT '[]',
    published_on      INTEGER,
    updated_on        INTEGER,
    description       TEXT,
    first_observed    INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    change_kind       INTEGER NOT NULL DEFAULT 0
);

-- (vendor, name, version) is repeated on millions of findings: stored once, referenced by id.
CREATE TABLE software (
    id       INTEGER PRIMARY KEY,
    vendor   TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL
);
CREATE UNIQUE INDEX software_natural_key ON software (vendor, name, version);

CREATE TABLE findings (
    id                        INTEGER PRIMARY KEY,
    -- No foreign keys on this table, as on PostgreSQL (where checking them halved bulk-load
    -- speed): the store only ever inserts ids it has just resolved from assets and software in
    -- the same transaction, and delete_integration removes findings before their assets.
    integration_id            INTEGER NOT NULL,
    asset_id                  INTEGER NOT NULL,
    software_id               INTEGER NOT NULL,
    cve_id                    TEXT    NOT NULL,
    severity                  INTEGER,
    cvss                      REAL,
    exploitability            TEXT,
    recommended_update        TEXT,
    recommendation_reference  TEXT,
    first_seen                INTEGER,
    last_seen                 INTEGER,
    status                    TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'fixed')),
    first_observed            INTEGER NOT NULL,
    last_observed             INTEGER NOT NULL,
    fixed_at                  INTEGER,
    reopened_count            INTEGER NOT NULL DEFAULT 0,
    seen_run                  INTEGER,
    priority                  REAL,
    change_kind               INTEGER NOT NULL DEFAULT 0
);
-- The natural key. An asset belongs to one integration, so (asset, software, CVE) is unique within
-- the integration; leading with asset_id also serves "findings of this asset".
CREATE UNIQUE INDEX findings_natural_key ON findings (asset_id, software_id, cve_id);
-- Reconciliation, status filters and exports of one integration. seen_run is deliberately not
-- indexed: every re-sync rewrites it on every row, and an index on it would be rewritten too.
-- Reconciliation reads the (integration, open) range once per run instead.
CREATE INDEX findings_status ON findings (integration_id, status);
-- "Assets exposed to this CVE": covering, and only over open findings.
CREATE INDEX findings_open_by_cve ON findings (cve_id, integration_id, asset_id) WHERE status = 'open';

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT,
    details  TEXT
);

-- A small queue for the scheduler: one row per requested sync, claimed by one worker at a time;
-- a claim whose heartbeat stops is taken over after a lease.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    integration_id  INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL DEFAULT 'sync',
    state           TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    run_at          INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_at      INTEGER,
    heartbeat_at    INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_by_integration ON jobs (integration_id);
