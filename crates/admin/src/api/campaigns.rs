//! `/admin/campaigns`: list, create, show, cancel, and the composer's audience preview.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiPath, ApiQuery, Page, limit};
use crate::actions::{self, By};
use crate::auth::Actor;
use crate::data::{self, Campaign, CampaignDelivery, CampaignResults};
use crate::error::{ApiError, Body, ErrorBody};
use crate::{Admin, request_id};
use domain::campaign::CampaignDraft;

/// The latest campaigns, newest first.
#[utoipa::path(get, path = "/admin/campaigns", tag = "campaigns", params(Page),
    responses((status = 200, body = Vec<Campaign>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn list_campaigns(
    State(admin): State<Arc<Admin>>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Vec<Campaign>>, ApiError> {
    Ok(Json(data::campaigns(admin.pool(), limit(page.limit)?).await?))
}

/// Creates a campaign (status `pending`; the `scheduled-notifications` job sends it when due).
#[utoipa::path(post, path = "/admin/campaigns", tag = "campaigns", request_body = CampaignDraft,
    responses((status = 201, body = Campaign, description = "Created"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn create_campaign(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(new): Body<CampaignDraft>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let draft = new.normalized(admin.engine.clock().now());
    let campaign = actions::create(&admin, By { actor: &actor, request_id: request_id(&headers) }, draft).await?;
    Ok((StatusCode::CREATED, Json(campaign)))
}

/// A campaign with its delivery: outbox rows by status, devices reached.
#[utoipa::path(get, path = "/admin/campaigns/{id}", tag = "campaigns",
    params(("id" = Uuid, Path, description = "The campaign's id")),
    responses((status = 200, body = CampaignDelivery, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn get_campaign(
    State(admin): State<Arc<Admin>>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CampaignDelivery>, ApiError> {
    data::campaign(admin.pool(), id, admin.settings.zones.business)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))
}

/// An experiment's read-out: per group (the holdout and each variant) users, deliveries, conversions within
/// the window with a 95 % interval, and each variant's lift over the holdout with its 95 % interval. A campaign
/// that is not an experiment has no groups.
#[utoipa::path(get, path = "/admin/campaigns/{id}/results", tag = "campaigns",
    params(("id" = Uuid, Path, description = "The campaign's id")),
    responses((status = 200, body = CampaignResults, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn campaign_results(
    State(admin): State<Arc<Admin>>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CampaignResults>, ApiError> {
    data::campaign_results(admin.pool(), id, admin.engine.clock().now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))
}

/// Cancels a campaign that has not finished, with its pushes not sent yet.
#[utoipa::path(post, path = "/admin/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = Uuid, Path, description = "The campaign's id")),
    responses((status = 200, body = CampaignDelivery, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"),
              (status = 409, body = ErrorBody, description = "The campaign has finished")))]
pub(super) async fn cancel_campaign(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CampaignDelivery>, ApiError> {
    actions::cancel(&admin, By { actor: &actor, request_id: request_id(&headers) }, id).await?;
    data::campaign(admin.pool(), id, admin.settings.zones.business)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))
}

/// An audience to count.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceQuery {
    /// `all` (default), `vip`, `free` or `segment`.
    #[serde(default = "domain::campaign::default_audience")]
    pub target_audience: String,
    /// The segment filter when the audience is `segment`.
    #[schema(value_type = Option<Object>)]
    pub segment_filter: Option<serde_json::Value>,
}

/// How many users an audience reaches now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudienceSize {
    /// Users a campaign to this audience would be sent to now (live, not opted out).
    pub users: i64,
}

/// The audience-size preview of the campaign composer.
#[utoipa::path(post, path = "/admin/campaigns/preview", tag = "campaigns", request_body = AudienceQuery,
    responses((status = 200, body = AudienceSize, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn preview_audience(
    State(admin): State<Arc<Admin>>,
    Body(query): Body<AudienceQuery>,
) -> Result<Json<AudienceSize>, ApiError> {
    Ok(Json(actions::audience(&admin, &query).await?))
}
