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
        }
    }
}
