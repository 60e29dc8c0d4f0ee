//! The portal: server-rendered pages.

mod admin;
mod dashboard;
mod data;
mod exceptions;
mod fix_first;
mod integrations;
pub mod layout;
mod login;
mod posture;
mod render;
mod sla;
mod webhooks;
mod workspaces;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/setup", get(login::setup_form).post(login::setup_submit))
        .route(
            "/account/password",
            get(login::password_form).post(login::password_submit),
        )
        .route(
            "/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route("/integrations/new", get(integrations::new_form))
        .route(
            "/integrations/{id}",
            get(integrations::show).post(integrations::update),
        )
        .route("/integrations/{id}/test", post(integrations::test))
        .route("/integrations/{id}/sync", post(integrations::sync_now))
        .route("/integrations/{id}/delete", post(integrations::delete))
        .route(
            "/integrations/{id}/sla",
            get(sla::integration_form).post(sla::integration_save),
        )
        .route("/assets", get(data::assets))
        .route("/assets.csv", get(data::assets_csv))
        .route("/assets/{id}", get(data::asset))
        .route("/vulnerabilities", get(data::vulnerabilities))
        .route("/vulnerabilities.csv", get(data::vulnerabilities_csv))
        .route("/vulnerabilities/{cve}", get(data::vulnerability))
        .route("/findings", get(data::findings))
        .route("/findings.csv", get(data::findings_csv))
        .route("/posture", get(posture::page))
        .route("/fix-first", get(fix_first::page))
        .route(
            "/exceptions",
            get(exceptions::list).post(exceptions::create),
        )
        .route("/exceptions/new", get(exceptions::new_form))
        .route("/exceptions/{id}/revoke", post(exceptions::revoke))
        .route("/sla", get(sla::page))
        .route("/settings/prioritisation", get(sla::settings))
        .route("/settings/prioritisation/sla", post(sla::save_sla))
        .route("/settings/prioritisation/rules", post(sla::save_rules))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}/delete", post(admin::delete_token))
        .route("/accounts", get(admin::accounts))
        .route("/accounts/{id}/delete", post(admin::delete_account))
        .route("/audit", get(admin::audit_log))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::show))
        .route("/webhooks/{id}/enabled", post(webhooks::set_enabled))
        .route("/webhooks/{id}/test", post(webhooks::test))
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/workspace", post(workspaces::switch))
        .route("/workspaces", get(workspaces::page).post(workspaces::add))
        .route("/workspaces/grant", post(workspaces::grant))
        .route("/workspaces/revoke", post(workspaces::revoke))
        .route("/workspaces/{id}/delete", post(workspaces::delete))
}
