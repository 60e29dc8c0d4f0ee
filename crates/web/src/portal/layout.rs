//! The frame of a page for a signed-in person.

pub use crate::layout::Layout;

use crate::auth::extract::Ctx;

impl Layout {
    pub fn new(ctx: &Ctx, title: &str, active: &'static str) -> Self {
        Self {
            title: title.to_owned(),
            user: Some(ctx.user.clone()),
            csrf: ctx.csrf.clone(),
            active,
            // "All workspaces" means something to a global admin and to an account with
            // several; an account with one has nothing to switch.
            workspaces: if ctx.is_admin() || ctx.switchable.len() > 1 {
                ctx.switchable
                    .iter()
                    .map(|(id, name)| (id.0, name.clone()))
                    .collect()
            } else {
                Vec::new()
            },
            workspace: ctx.workspace.map(|w| w.0),
            can_change_integrations: ctx.can_admin_integrations(),
        }
    }
}
