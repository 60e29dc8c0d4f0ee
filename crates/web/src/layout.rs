//! What every page's frame needs: title, the signed-in account, the form token, the active tab.
//!
//! A leaf: the error page needs the frame too, and the error type sits below the sign-in
//! extractors (which return it), so the frame built from a signed-in context
//! (`portal::layout`) must not be what `error` imports.

use rampart_store::{Role, User};

#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub user: Option<User>,
    pub csrf: String,
    pub active: &'static str,
    /// The header's workspace switcher: (id, name) of each workspace offered (empty: no
    /// switcher, the account has one workspace), and the one chosen (`None`: all).
    pub workspaces: Vec<(i64, String)>,
    pub workspace: Option<i64>,
    /// The account may change some integrations (a global admin, or an admin of a workspace).
    pub can_change_integrations: bool,
}

impl Layout {
    /// A page for someone not signed in (login, setup, errors).
    pub fn bare(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            user: None,
            csrf: String::new(),
            active: "",
            workspaces: Vec::new(),
            workspace: None,
            can_change_integrations: false,
        }
    }

    pub fn anonymous(title: &str, csrf: String) -> Self {
        Self {
            csrf,
            ..Self::bare(title)
        }
    }

    /// Whether `id` is the workspace the session looks at (for the switcher's `selected`).
    pub fn is_current(&self, id: &i64) -> bool {
        self.workspace == Some(*id)
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}
