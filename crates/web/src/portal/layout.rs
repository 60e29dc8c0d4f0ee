//! What every page's frame needs: title, the signed-in account, the form token, the active tab.

use rampart_store::{Role, User};

use crate::auth::extract::Ctx;

#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub user: Option<User>,
    pub csrf: String,
    pub active: &'static str,
}

impl Layout {
    /// A page for someone not signed in (login, setup, errors).
    pub fn bare(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            user: None,
            csrf: String::new(),
            active: "",
        }
    }

    pub fn anonymous(title: &str, csrf: String) -> Self {
        Self {
            csrf,
            ..Self::bare(title)
        }
    }

    pub fn new(ctx: &Ctx, title: &str, active: &'static str) -> Self {
        Self {
            title: title.to_owned(),
            user: Some(ctx.user.clone()),
            csrf: ctx.csrf.clone(),
            active,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}
