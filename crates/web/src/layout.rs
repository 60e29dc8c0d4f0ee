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

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}
