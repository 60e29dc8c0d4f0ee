-- Workspaces (issue 15; docs/workspaces.md): one per customer or team. Every integration belongs to
-- exactly one, users are members of workspaces (admin or viewer) or global admins, and API tokens
-- are scoped to one workspace or global. Same conventions as 0001 (timestamps are INTEGER
-- microseconds).
--
-- A single team sees no change: the workspace "Default" (id 1) holds every existing integration,
-- existing admins stay admins of everything (users.role = 'admin' now means a global admin), and
-- existing viewers become viewers of Default.

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
-- Names are typed on command lines, as integration names are.
CREATE UNIQUE INDEX workspaces_name ON workspaces (lower(name));

INSERT INTO workspaces (id, name, created_at)
VALUES (1, 'Default', CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));

-- SQLite cannot add a column with a REFERENCES clause and a non-NULL default: the store keeps the
-- reference (a workspace is removed only while no integration belongs to it, in one transaction).
ALTER TABLE integrations ADD COLUMN workspace_id INTEGER NOT NULL DEFAULT 1;
CREATE INDEX integrations_workspace ON integrations (workspace_id);

CREATE TABLE memberships (
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    PRIMARY KEY (user_id, workspace_id)
);

INSERT INTO memberships (user_id, workspace_id, role)
SELECT id, 1, 'viewer' FROM users WHERE role = 'viewer';

-- NULL: a global token (only a global admin may create one).
ALTER TABLE api_tokens ADD COLUMN workspace_id INTEGER REFERENCES workspaces (id) ON DELETE CASCADE;
