//! The REST API (`/api/v1`): bearer tokens, problem+json errors, OpenAPI at `/api/openapi.json`,
//! Swagger UI (vendored) at `/api/docs/`.

mod data;
pub mod dto;
mod exceptions;
mod integrations;
mod posture;
mod remediations;
pub mod sla;
mod users;
pub(crate) mod webhooks;
mod workspaces;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart API",
        description = "Microsoft Defender for Endpoint devices and vulnerability findings, and Defender for Cloud secure scores and recommendations, as Rampart stores them. Authenticate with an API token: `Authorization: Bearer <token>` (admins create tokens under Management > API tokens). Errors are RFC 9457 problem details. Listings are keyset-paginated: pass `next_cursor` as `after` (with the same filters and sort). For incremental pulls, `changed_since` (RFC 3339) keeps the rows a sync observed or changed after that time; syncs stamp rows with their start time, so pass the start of your previous pull minus the longest sync to miss nothing.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "integrations"), (name = "data"), (name = "exceptions"), (name = "posture"), (name = "settings"), (name = "users"), (name = "webhooks"), (name = "workspaces")),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(integrations::list, integrations::create))
        .routes(routes!(
            integrations::get_one,
            integrations::update,
            integrations::delete
        ))
        .routes(routes!(integrations::test))
        .routes(routes!(integrations::sync))
        .routes(routes!(integrations::runs))
        .routes(routes!(data::assets))
        .routes(routes!(data::findings))
        .routes(routes!(data::vulnerabilities))
        .routes(routes!(remediations::list_remediations))
        .routes(routes!(
            exceptions::list_exceptions,
            exceptions::create_exception
        ))
        .routes(routes!(exceptions::revoke_exception))
        .routes(routes!(sla::get_sla, sla::put_sla))
        .routes(routes!(sla::get_rules, sla::put_rules))
        .routes(routes!(sla::get_integration_sla, sla::put_integration_sla))
        .routes(routes!(sla::report))
        .routes(routes!(sla::burndown))
        .routes(routes!(posture::scores))
        .routes(routes!(posture::history))
        .routes(routes!(posture::controls))
        .routes(routes!(posture::recommendations))
        .routes(routes!(users::list_users))
        .routes(routes!(users::delete_user))
        .routes(routes!(workspaces::list_workspaces))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::delete_webhook))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
}

pub fn router() -> Router<AppState> {
    let (router, api) = api_router().split_for_parts();
    let doc = api.clone();
    router
        // An unknown API path answers like the API, not with the portal's page.
        .route("/api/v1/{*rest}", any(|| async { StatusCode::NOT_FOUND }))
        .route("/api/openapi.json", get(move || async move { Json(doc) }))
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", api))
}
