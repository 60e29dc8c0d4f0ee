//! Workspaces (docs/workspaces.md): who may see which integrations, and the [`Visibility`] every
//! read of integration data takes, applied in the SQL of the read itself so that no handler can
//! forget it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::WorkspaceId;

use crate::common::{RowExt, clean, corrupt, workspace_not_found};
use crate::db::{Arg, Dialect, Pool, Sql, q};
use crate::error::{Result, StoreError};
use crate::types::Role;

/// A workspace: one customer or team, holding integrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A user's role in one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub user_id: i64,
    pub workspace_id: WorkspaceId,
    pub workspace: String,
    pub role: Role,
}

/// What a caller may see: everything (global admins, global tokens, the CLI on the machine) or the
/// integrations of some workspaces and what was read through them.
///
/// Every read of integration data takes one. A by-id read of something outside it is `NotFound`,
/// the same answer as for an id that does not exist, so that ids of other workspaces cannot be
/// confirmed by guessing. Writes to an integration use the visibility of the workspaces where the
/// caller is an admin ([`Visibility::admin_of`]).
///
/// No `Default`: seeing everything is always spelled out as `Visibility::All`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Everything.
    All,
    /// Only the integrations of these workspaces (none: nothing at all).
    Workspaces(Vec<WorkspaceId>),
}

impl Visibility {
    /// The workspaces where the member is an admin, for writes.
    pub fn admin_of(memberships: &[Membership]) -> Visibility {
        Visibility::Workspaces(
            memberships
                .iter()
                .filter(|m| m.role == Role::Admin)
                .map(|m| m.workspace_id)
                .collect(),
        )
    }

    /// Every workspace the member belongs to, for reads.
    pub fn member_of(memberships: &[Membership]) -> Visibility {
        Visibility::Workspaces(memberships.iter().map(|m| m.workspace_id).collect())
    }

    /// Narrowed to one workspace (the portal's current workspace): what both allow.
    pub fn within(&self, workspace: WorkspaceId) -> Visibility {
        if self.allows(workspace) {
            Visibility::Workspaces(vec![workspace])
        } else {
            Visibility::Workspaces(Vec::new())
        }
    }

    pub fn allows(&self, workspace: WorkspaceId) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Workspaces(ids) => ids.contains(&workspace),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Visibility::All)
    }

    /// The SQL condition "`column` is the id of a visible integration", binding the workspace
    /// ids into `sql`; `None` when everything is visible.
    pub(crate) fn condition(&self, d: Dialect, sql: &mut Sql, column: &str) -> Option<String> {
        match self {
            Visibility::All => None,
            Visibility::Workspaces(ids) => {
                let ph = sql.arg(Arg::Ints(ids.iter().map(|w| w.0).collect()));
                Some(format!(
                    "{column} IN (SELECT id FROM integrations WHERE {})",
                    d.in_list("workspace_id", &ph)
                ))
            }
        }
    }

    /// Appends " AND " and the condition of [`Visibility::condition`] to a statement whose text
    /// already has its WHERE.
    pub(crate) fn push_and(&self, d: Dialect, sql: &mut Sql, column: &str) {
        if let Some(c) = self.condition(d, sql, column) {
            sql.text.push_str(" AND ");
            sql.text.push_str(&c);
        }
    }

    /// " AND " and the condition, or nothing, for statements whose text is formatted around it.
    pub(crate) fn and_text(&self, d: Dialect, sql: &mut Sql, column: &str) -> String {
        self.condition(d, sql, column)
            .map(|c| format!(" AND {c}"))
            .unwrap_or_default()
    }

    /// " WHERE " and the condition, or nothing.
    pub(crate) fn where_text(&self, d: Dialect, sql: &mut Sql, column: &str) -> String {
        self.condition(d, sql, column)
            .map(|c| format!(" WHERE {c}"))
            .unwrap_or_default()
    }

    /// Adds the condition of [`Visibility::condition`] to the statement's WHERE.
    pub(crate) fn restrict(&self, d: Dialect, sql: &mut Sql, column: &str) {
        if let Some(c) = self.condition(d, sql, column) {
            sql.and(&c);
        }
    }
}

// ---- the store's workspace methods (called by `SqlStore`'s `Store` implementation) ---------------

const WORKSPACE_COLUMNS: &str = "id, name, created_at";

fn decode_workspace(r: &impl RowExt) -> Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId(r.int("id")?),
        name: r.text("name")?,
        created_at: r.ts("created_at")?,
    })
}

fn decode_membership(r: &impl RowExt) -> Result<Membership> {
    let role = r.text("role")?;
    Ok(Membership {
        user_id: r.int("user_id")?,
        workspace_id: WorkspaceId(r.int("workspace_id")?),
        workspace: r.text("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("membership role", &role))?,
    })
}

fn name_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no workspace named '{}'; list workspaces with `rampart workspace list`",
        name.chars().take(60).collect::<String>()
    ))
}

pub(crate) async fn create(db: &Pool, name: &str) -> Result<Workspace> {
    let name = clean(name.trim()).into_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(StoreError::InvalidInput(
            "a workspace name must have 1 to 100 characters".to_owned(),
        ));
    }
    let sql = q(&format!(
        "INSERT INTO workspaces (name, created_at) VALUES ($1, $2) RETURNING {WORKSPACE_COLUMNS}"
    ))
    .bind(name.as_str())
    .bind(Utc::now());
    match db.write().fetch_one(&sql, "creating a workspace").await {
        Ok(row) => decode_workspace(&row),
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(format!(
            "a workspace named '{name}' already exists (names are compared without case)"
        ))),
        Err(e) => Err(e),
    }
}

pub(crate) async fn list(db: &Pool) -> Result<Vec<Workspace>> {
    let sql = q(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY lower(name), id"
    ));
    db.read()
        .all(&sql, "listing workspaces", decode_workspace)
        .await
}

pub(crate) async fn by_name(db: &Pool, name: &str) -> Result<Workspace> {
    let sql = q(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE lower(name) = lower($1)"
    ))
    .bind(name.trim());
    db.read()
        .maybe(&sql, "reading a workspace", decode_workspace)
        .await?
        .ok_or_else(|| name_not_found(name))
}

pub(crate) async fn delete(db: &Pool, id: WorkspaceId) -> Result<()> {
    let op = "removing a workspace";
    if id == WorkspaceId::DEFAULT {
        return Err(StoreError::Conflict(
            "the Default workspace cannot be removed: integrations created without a workspace go there".to_owned(),
        ));
    }
    // One write transaction: an integration added meanwhile cannot be left without a workspace
    // (SQLite's single writer; on PostgreSQL the foreign key refuses the removal as well).
    let mut tx = db.begin().await?;
    let ws = tx
        .on()
        .maybe(
            &q(&format!(
                "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"
            ))
            .bind(id.0),
            op,
            decode_workspace,
        )
        .await?
        .ok_or_else(|| workspace_not_found(id))?;
    let held =
        q("SELECT name FROM integrations WHERE workspace_id = $1 ORDER BY lower(name)").bind(id.0);
    let names: Vec<String> = tx.on().all(&held, op, |r| r.text("name")).await?;
    if !names.is_empty() {
        return Err(StoreError::Conflict(format!(
            "workspace '{}' still holds {} integration(s): {}. Move each to another workspace with `rampart integration move NAME --workspace OTHER`, or remove it with `rampart integration remove NAME`, then remove the workspace",
            ws.name,
            names.len(),
            names.join(", ")
        )));
    }
    for sql in [
        "DELETE FROM memberships WHERE workspace_id = $1",
        "DELETE FROM api_tokens WHERE workspace_id = $1",
        "DELETE FROM workspaces WHERE id = $1",
    ] {
        tx.on().execute(&q(sql).bind(id.0), op).await?;
    }
    tx.commit(op).await
}

pub(crate) async fn move_integration(
    db: &Pool,
    integration: rampart_model::IntegrationId,
    to: WorkspaceId,
) -> Result<()> {
    let op = "moving an integration to another workspace";
    let sql = q(
        "UPDATE integrations SET workspace_id = w.id, updated_at = $3 FROM workspaces w \
         WHERE integrations.id = $1 AND w.id = $2",
    )
    .bind(integration)
    .bind(to.0)
    .bind(Utc::now());
    if db.write().execute(&sql, op).await? == 1 {
        return Ok(());
    }
    let exists = q("SELECT 1 FROM workspaces WHERE id = $1").bind(to.0);
    if db.read().fetch_optional(&exists, op).await?.is_none() {
        return Err(workspace_not_found(to));
    }
    Err(crate::common::integration_not_found(integration))
}

pub(crate) async fn grant(
    db: &Pool,
    user_id: i64,
    workspace: WorkspaceId,
    role: Role,
) -> Result<()> {
    let sql = q(
        "INSERT INTO memberships (user_id, workspace_id, role) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role",
    )
    .bind(user_id)
    .bind(workspace.0)
    .bind(role.as_str());
    match db.write().execute(&sql, "granting a workspace role").await {
        Ok(_) => Ok(()),
        Err(e) if e.is_foreign_key_violation() => Err(StoreError::NotFound(format!(
            "there is no account with id {user_id} or no workspace with id {workspace}"
        ))),
        Err(e) => Err(e),
    }
}

pub(crate) async fn revoke(db: &Pool, user_id: i64, workspace: WorkspaceId) -> Result<()> {
    let sql = q("DELETE FROM memberships WHERE user_id = $1 AND workspace_id = $2")
        .bind(user_id)
        .bind(workspace.0);
    if db
        .write()
        .execute(&sql, "revoking a workspace role")
        .await?
        == 0
    {
        return Err(StoreError::NotFound(format!(
            "account {user_id} has no role in workspace {workspace}"
        )));
    }
    Ok(())
}

pub(crate) async fn memberships(db: &Pool, user_id: i64) -> Result<Vec<Membership>> {
    let sql = q("SELECT m.user_id, m.workspace_id, w.name, m.role FROM memberships m \
         JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 ORDER BY lower(w.name), w.id")
    .bind(user_id);
    db.read()
        .all(&sql, "reading workspace roles", decode_membership)
        .await
}
