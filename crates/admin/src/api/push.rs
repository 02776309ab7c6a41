//! `/admin/outbox`, `/admin/push/test` and `/admin/push/redrive`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::actions::{self, By};
use crate::audit::{self, Entry};
use crate::auth::Actor;
use crate::data::{self, OutboxHealth};
use crate::error::{ApiError, Body, ErrorBody};
use crate::{Admin, request_id};

/// Outbox depth, age of the oldest due push, recent failures.
#[utoipa::path(get, path = "/admin/outbox", tag = "push",
    responses((status = 200, body = OutboxHealth, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
pub(super) async fn get_outbox(State(admin): State<Arc<Admin>>) -> Result<Json<OutboxHealth>, ApiError> {
    Ok(Json(data::outbox(admin.pool(), admin.engine.clock().now(), 20).await?))
}

/// Sends failed pushes again: every `failed` outbox row matching all the criteria given goes back to `pending`,
/// due now, and is sent to each of the user's live devices that has not had it. Rows whose every device died, and
/// rows past their lifetime, stay failed and are counted.
#[utoipa::path(post, path = "/admin/push/redrive", tag = "push", request_body = domain::redrive::PushRedrive,
    responses((status = 200, body = domain::redrive::PushesRedriven, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn redrive_pushes(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(filter): Body<domain::redrive::PushRedrive>,
) -> Result<Json<domain::redrive::PushesRedriven>, ApiError> {
    Ok(Json(actions::redrive_pushes(&admin, By { actor: &actor, request_id: request_id(&headers) }, &filter).await?))
}

/// A test push to operators' own devices.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestPushRequest {
    /// Recipients (1 to 20 user ids).
    pub users: Vec<Uuid>,
    /// Title (unless `campaign_id` gives the texts).
    pub title: Option<String>,
    /// Body (unless `campaign_id` gives the texts).
    pub body: Option<String>,
    /// Send this campaign's texts, in each user's language.
    pub campaign_id: Option<Uuid>,
    /// Send this catalogue message (a push kind such as `streak_warning`) with example values, in each user's
    /// language or in `locale`.
    pub message: Option<String>,
    /// With `message`: render it in this locale (through the same fallbacks as a real push).
    pub locale: Option<String>,
}

/// What happened to each recipient.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestPushResult {
    /// The recipient.
    pub user: Uuid,
    /// The push's final status (`sent`, `no_tokens`, `failed`; `pending` when it will be retried).
    pub status: String,
    /// Devices reached.
    pub tokens_sent: i32,
    /// Devices that failed.
    pub tokens_failed: i32,
    /// The last FCM error.
    pub last_error: Option<String>,
}

/// Sends a test push now (quiet hours, the daily cap and opt-out do not apply).
#[utoipa::path(post, path = "/admin/push/test", tag = "push", request_body = TestPushRequest,
    responses((status = 200, body = Vec<TestPushResult>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn test_push(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(request): Body<TestPushRequest>,
) -> Result<Json<Vec<TestPushResult>>, ApiError> {
    let mut problems = Vec::new();
    let message = match (&request.message, &request.locale) {
        (Some(kind), locale) => {
            domain::messages::test_message(kind, locale.as_deref()).map_err(|p| problems.extend(p)).ok()
        }
        (None, Some(_)) => {
            problems.push("locale: only with message".to_owned());
            None
        }
        (None, None) => None,
    };
    let push = ::push::test_send::TestPush {
        users: request.users,
        title: request.title,
        body: request.body,
        campaign: request.campaign_id,
        message,
    };
    if problems.is_empty() {
        problems = push.problems();
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let now = admin.engine.clock().now();
    let not_found = |e| match e {
        ::push::test_send::TestPushError::NotFound(message) => ApiError::not_found(message),
        ::push::test_send::TestPushError::Sql(e) => ApiError::from(e),
    };
    // The audit row is written with the pushes, in one transaction: no record of a send that never was.
    let mut tx = admin.pool().begin().await?;
    let ids = ::push::test_send::enqueue(&mut tx, &push, now).await.map_err(not_found)?;
    let entry = Entry {
        actor: &actor.0,
        action: "push.test",
        target: push.users.iter().map(Uuid::to_string).collect::<Vec<_>>().join(","),
        details: serde_json::json!({"title": push.title, "campaign_id": push.campaign, "message": request.message,
                                    "locale": request.locale, "pushes": ids.len()}),
        request_id: request_id(&headers),
    };
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    let results = ::push::test_send::deliver(admin.pool(), &admin.test_sender, &ids, now).await.map_err(not_found)?;
    Ok(Json(
        results
            .into_iter()
            .map(|r| TestPushResult {
                user: r.user,
                status: r.status,
                tokens_sent: r.tokens_sent,
                tokens_failed: r.tokens_failed,
                last_error: r.last_error,
            })
            .collect(),
    ))
}
