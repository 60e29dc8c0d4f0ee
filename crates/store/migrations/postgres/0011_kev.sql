-- Threat intelligence for prioritisation (issue 14): CISA's Known Exploited Vulnerabilities
-- catalogue, replaced whole at each refresh, and one row per intelligence source saying where it
-- came from, how current it is and what went wrong last. Same conventions as 0001 (timestamps are
-- TIMESTAMPTZ, dates DATE).

CREATE TABLE kev_entries (
    cve_id                        TEXT PRIMARY KEY,
    date_added                    DATE,
    due_date                      DATE,
    known_ransomware_campaign_use TEXT NOT NULL,
    vendor_project                TEXT,
    product                       TEXT,
    vulnerability_name            TEXT,
    short_description             TEXT,
    required_action               TEXT,
    notes                         TEXT
);

CREATE TABLE intel_sources (
    source           TEXT PRIMARY KEY,
    url              TEXT,
    etag             TEXT,
    last_modified    TEXT,
    -- The last time the source was read and found current (a new file or 304 Not Modified).
    fetched_at       TIMESTAMPTZ,
    -- The last attempt, successful or not: failures are retried sooner than a day.
    attempted_at     TIMESTAMPTZ,
    catalog_version  TEXT,
    date_released    TIMESTAMPTZ,
    count            BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT
);
