//! The `/admin` JSON API, one module per resource. Each handler carries its OpenAPI description; [`routes`]
//! registers the handlers and their descriptions together, so `/admin/openapi.json` lists exactly the routes
//! served. The writes the page shares live in [`crate::actions`]; the reads in [`crate::data`].

pub mod audit_log;
pub mod campaigns;
pub mod jobs;
pub mod messages;
pub mod partners;
pub mod push;
pub mod users;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Admin;
use crate::error::{ApiError, ErrorBody};
use domain::operator::{self};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hattrick admin API",
        description = "See and steer hattrick's jobs, campaigns, pushes and rewards. Every route needs \
                       `Authorization: Bearer <admin token>`; every write is recorded in the audit log under the \
                       token's name."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Jobs, their runs, run now, pause and resume, retry failed runs"),
        (name = "campaigns", description = "Push campaigns"),
        (name = "partners", description = "Partner analytics"),
        (name = "push", description = "The outbox, test pushes, retrying failed pushes, and the push texts"),
        (name = "users", description = "Operator actions on a user, through the ledger"),
        (name = "audit", description = "Who changed what"),
        (name = "meta", description = "This API's own description"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes with their OpenAPI descriptions (authentication is layered on by [`crate::router`]).
pub fn routes() -> OpenApiRouter<Arc<Admin>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::job_runs))
        .routes(routes!(jobs::run_job))
        .routes(routes!(jobs::pause_job))
        .routes(routes!(jobs::resume_job))
        .routes(routes!(jobs::get_run))
        .routes(routes!(jobs::redrive_runs))
        .routes(routes!(campaigns::list_campaigns, campaigns::create_campaign))
        .routes(routes!(campaigns::get_campaign))
        .routes(routes!(campaigns::campaign_results))
        .routes(routes!(campaigns::cancel_campaign))
        .routes(routes!(campaigns::preview_audience))
        .routes(routes!(partners::partner_analytics))
        .routes(routes!(push::get_outbox))
        .routes(routes!(push::test_push))
        .routes(routes!(push::redrive_pushes))
        .routes(routes!(messages::list_messages))
        .routes(routes!(messages::put_message, messages::remove_message))
        .routes(routes!(messages::render_message))
        .routes(routes!(users::grant_badge))
        .routes(routes!(users::revoke_badge))
        .routes(routes!(users::adjust_credits))
        .routes(routes!(users::adjust_xp))
        .routes(routes!(audit_log::audit_log))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of the API.
pub fn openapi() -> serde_json::Value {
    let mut document = serde_json::to_value(routes().into_openapi()).unwrap_or_default();
    exact(&mut document);
    document
}

/// A documented error answer.
fn error_response(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// States in the document what the server enforces beyond the handlers' types, so that the document is the
/// contract (checked by schemathesis in CI): the answers every route may give (the guard's 403, the database's
/// 503, a body's 400, 413 and 415) and the bounds the handlers check (limits, amounts, recipients, texts).
fn exact(document: &mut serde_json::Value) {
    use serde_json::json;
    let everywhere = [
        ("403", "Another Host, or a write from another site (SECURITY.md)"),
        ("503", "The database is unreachable, or did not answer within admin.statement_timeout"),
    ];
    let with_body = [
        ("400", "The body is not JSON"),
        ("413", "The body is over admin.body_limit"),
        ("415", "The body is not application/json"),
    ];
    if let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for operation in paths.values_mut().filter_map(|item| item.as_object_mut()).flat_map(|item| item.values_mut()) {
            let has_body = operation.get("requestBody").is_some();
            if let Some(parameters) = operation.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                for parameter in parameters.iter_mut().filter(|p| p["name"] == "limit") {
                    parameter["schema"]["minimum"] = json!(1);
                    parameter["schema"]["maximum"] = json!(500);
                }
                // The push kinds (an unknown one is 404).
                for parameter in parameters.iter_mut().filter(|p| p["name"] == "kind" && p["in"] == "path") {
                    let kinds: Vec<&str> = domain::messages::KINDS.iter().map(|m| m.kind).collect();
                    parameter["schema"]["enum"] = json!(kinds);
                }
            }
            if let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) {
                let extra = if has_body { &with_body[..] } else { &[][..] };
                for (status, description) in everywhere.iter().chain(extra) {
                    responses.entry(*status).or_insert_with(|| error_response(description));
                }
            }
        }
    }
    let schemas = &mut document["components"]["schemas"];
    let amount = &mut schemas["AdjustRequest"]["properties"]["amount"];
    amount["minimum"] = json!(-operator::MAX_ADJUSTMENT);
    amount["maximum"] = json!(operator::MAX_ADJUSTMENT);
    amount["not"] = json!({"const": 0});
    // Texts that must say something: at least one character that is not white space.
    let something = json!("\\S");
    schemas["AdjustRequest"]["properties"]["reason"]["pattern"] = something.clone();
    for field in ["title_tr", "body_tr"] {
        schemas["NewCampaign"]["properties"][field]["pattern"] = something.clone();
    }
    for field in ["title_tr", "title_en"] {
        schemas["NewCampaign"]["properties"][field]["maxLength"] = json!(255);
    }
    for field in ["title", "body"] {
        schemas["MessageText"]["properties"][field]["pattern"] = something.clone();
    }
    let users = &mut schemas["TestPushRequest"]["properties"]["users"];
    users["minItems"] = json!(1);
    users["maxItems"] = json!(::push::test_send::MAX_RECIPIENTS);
}

/// A path parameter, with axum's rejection answered as our 404.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// A query string, with axum's rejection answered as our 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many (1 to 500, default 50).
    pub limit: Option<i64>,
}

pub(crate) fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::validation([format!("limit: must be 1 to 500 (got {n})")])),
    }
}

/// This document.
#[utoipa::path(get, path = "/admin/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}
