-- Exceptions (accepted risk, issue 14; docs/prioritisation.md, "Exceptions"): an administrator
-- accepts one finding, one fix (the update or upgrade that closes findings) or one CVE, across the
-- assets of one integration or of all, with a reason, an owner and an expiry. Same conventions as
-- 0001 (timestamps are INTEGER microseconds).
--
-- Nothing is written to the findings they cover: whether a finding is accepted, and when its
-- clock runs again, is worked out when it is read, from `created_at` and `ends_at`. So an
-- exception covers findings that appear after it was granted, and it ends at its expiry without
-- a job.

CREATE TABLE exceptions (
    id               INTEGER PRIMARY KEY,
    scope            TEXT    NOT NULL CHECK (scope IN ('finding', 'fix', 'cve')),
    -- NULL: every integration (a fix or CVE scope only; a finding belongs to one integration).
    integration_id   INTEGER REFERENCES integrations (id) ON DELETE CASCADE,
    -- Exactly the column of the scope is set.
    finding_id       INTEGER,
    cve_id           TEXT,
    fix_key          TEXT,
    reason           TEXT    NOT NULL,
    owner            TEXT    NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    -- When it stops being in force: its expiry, or the time it was revoked if earlier.
    ends_at          INTEGER NOT NULL,
    revoked_at       INTEGER,
    revoked_by       TEXT,
    -- Set once the end at expiry has been written to the audit log.
    expiry_audited   INTEGER NOT NULL DEFAULT 0,
    CHECK ((scope = 'finding') = (finding_id IS NOT NULL)),
    CHECK ((scope = 'cve') = (cve_id IS NOT NULL)),
    CHECK ((scope = 'fix') = (fix_key IS NOT NULL)),
    CHECK (scope <> 'finding' OR integration_id IS NOT NULL)
);

-- The exceptions list, newest first, and the expiry audit's look-up of ended ones.
CREATE INDEX exceptions_by_end ON exceptions (ends_at);

-- The open findings of a fix, by software (an upgrade) and recommended update (a security update
-- is looked for under each software): how counts find the findings a fix exception covers
-- without reading every finding (crates/store/src/exceptions.rs, covered_sql).
CREATE INDEX findings_open_by_software ON findings (software_id, recommended_update) WHERE status = 'open';
