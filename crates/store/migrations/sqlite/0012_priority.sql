-- Prioritisation stored per finding (issue 14; docs/prioritisation.md, "How it is stored"):
-- the SSVC decision, the due date and the time its SLA clock started, the explanation of the
-- priority (the existing `priority` column holds the 0–100 number), and when any of them last
-- changed. Same conventions as 0001 (timestamps are INTEGER microseconds).
--
-- An open finding that has been assessed has all of them; a fixed one keeps its last priority and
-- explanation, but no decision or due date (nothing is pending). Exceptions (accepted risk) will
-- be stored beside them and only change the SLA status, which is computed when read.

ALTER TABLE findings ADD COLUMN decision TEXT
    CHECK (decision IN ('immediate', 'out-of-cycle', 'scheduled', 'defer'));
ALTER TABLE findings ADD COLUMN due_at INTEGER;
ALTER TABLE findings ADD COLUMN clock_start INTEGER;
-- The row of priority_explanations that says why this priority (shared by many findings).
ALTER TABLE findings ADD COLUMN explanation_id INTEGER;
-- When the stored decision, priority, due date or explanation last changed: `changed_since`
-- listings return the finding after that time.
ALTER TABLE findings ADD COLUMN assessed_at INTEGER;

-- "Why this priority": the factors, their values and points as compact JSON. Findings with the
-- same factors (the same CVE on assets alike) share one row; the id is a digest of the JSON, so a
-- row never changes once written.
CREATE TABLE priority_explanations (
    id             INTEGER PRIMARY KEY,
    contributions  TEXT NOT NULL
);

-- Findings by priority, most urgent first: the default order of finding lists, walked from the top
-- with the other filters checked row by row. The expression keeps not-yet-assessed findings (NULL)
-- at the end of the order on both engines. Not partial: listings of open and fixed findings use it
-- too, and a status change then never touches it (the priority is written only when it changes).
CREATE INDEX findings_by_priority ON findings ((COALESCE(priority, -1)), id);
-- The dashboard's count of overdue open findings reads this range only.
CREATE INDEX findings_open_by_due ON findings (due_at) WHERE status = 'open';
