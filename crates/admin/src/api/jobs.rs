//! `/admin/jobs` and `/admin/runs`: jobs, their runs, run now, pause and resume, and running failed runs again.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiPath, ApiQuery, limit};
use crate::actions::{self, By, RunsRedriven};
use crate::auth::Actor;
use crate::data::{self, JobSummary, RunDetail, RunSummary};
use crate::error::Body;
use crate::error::{ApiError, ErrorBody};
use crate::{Admin, request_id};

/// Every job with schedule, state, next runs and last run.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobSummary>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
pub(super) async fn list_jobs(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<JobSummary>>, ApiError> {
    Ok(Json(data::jobs(&admin.engine, admin.pool(), admin.engine.clock().now()).await?))
}

pub(super) async fn find_job(admin: &Admin, name: &str) -> Result<JobSummary, ApiError> {
    data::jobs(&admin.engine, admin.pool(), admin.engine.clock().now())
        .await?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no job {name}")))
}

/// One job.
#[utoipa::path(get, path = "/admin/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobSummary, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn get_job(
    State(admin): State<Arc<Admin>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<JobSummary>, ApiError> {
    Ok(Json(find_job(&admin, &name).await?))
}

/// Paging of run history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Only runs started before this instant (the previous page's last `started_at`).
    pub before: Option<DateTime<Utc>>,
}

/// The job's runs, newest first.
#[utoipa::path(get, path = "/admin/jobs/{name}/runs", tag = "jobs",
    params(("name" = String, Path, description = "The job's name"), RunsQuery),
    responses((status = 200, body = Vec<RunSummary>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn job_runs(
    State(admin): State<Arc<Admin>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    let limit = limit(query.limit)?;
    if !admin.engine.registry().contains(&name) {
        return Err(ApiError::not_found(format!("no job {name}")));
    }
    Ok(Json(data::runs(admin.pool(), &name, limit, query.before).await?))
}

/// One run with its report.
#[utoipa::path(get, path = "/admin/runs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, body = RunDetail, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn get_run(
    State(admin): State<Arc<Admin>>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RunDetail>, ApiError> {
    data::run(admin.pool(), id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

/// Options of a run started by hand.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Compute and report what the run would do, write nothing (answered when done, 200).
    #[serde(default)]
    pub dry_run: bool,
    /// First day of a back-fill range (partner analytics).
    pub from: Option<NaiveDate>,
    /// Last day of a back-fill range, inclusive.
    pub to: Option<NaiveDate>,
}

/// A run started by hand.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    /// The job.
    pub job: String,
    /// The run's id (`/admin/runs/{id}`); a dry run's id is not stored.
    pub run_id: Uuid,
    /// True for a dry run, which is answered with its report.
    pub dry_run: bool,
    /// A dry run's outcome (`success`, `error`, `timeout`).
    pub outcome: Option<String>,
    /// A dry run's report: what it would do.
    pub report: Option<serde_json::Value>,
    /// A dry run's error.
    pub error: Option<String>,
}

/// Starts a run now (trigger `manual`): 202 with its id, the run goes on in the background. With `dry_run`
/// the answer waits for the report and nothing is written.
#[utoipa::path(post, path = "/admin/jobs/{name}/run", tag = "jobs",
    params(("name" = String, Path, description = "The job's name"), RunQuery),
    responses((status = 202, body = RunStarted, description = "Started"), (status = 200, body = RunStarted, description = "Dry run done"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"),
              (status = 409, body = ErrorBody, description = "The job is running"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn run_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> Result<axum::response::Response, ApiError> {
    let started =
        actions::start_run(&admin, By { actor: &actor, request_id: request_id(&headers) }, &name, query).await?;
    let status = if started.dry_run { StatusCode::OK } else { StatusCode::ACCEPTED };
    let location = format!("/admin/runs/{}", started.run_id);
    Ok((status, [(header::LOCATION, location)], Json(started)).into_response())
}

/// Runs again, once each, the jobs whose failed runs the filter selects (the latest failed run per job): each
/// gets a manual run, started now and going on in the background (`started` has their ids); a job already
/// running is skipped.
#[utoipa::path(post, path = "/admin/runs/redrive", tag = "jobs", request_body = domain::redrive::RunRedrive,
    responses((status = 200, body = RunsRedriven, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn redrive_runs(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(filter): Body<domain::redrive::RunRedrive>,
) -> Result<Json<RunsRedriven>, ApiError> {
    Ok(Json(actions::redrive_runs(&admin, By { actor: &actor, request_id: request_id(&headers) }, &filter).await?))
}

/// Pauses a job: its ticks are recorded `paused` until it is resumed (then its misfire policy applies).
#[utoipa::path(post, path = "/admin/jobs/{name}/pause", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobSummary, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn pause_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<JobSummary>, ApiError> {
    actions::set_paused(&admin, By { actor: &actor, request_id: request_id(&headers) }, &name, true).await?;
    Ok(Json(find_job(&admin, &name).await?))
}

/// Resumes a paused job.
#[utoipa::path(post, path = "/admin/jobs/{name}/resume", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobSummary, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn resume_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<JobSummary>, ApiError> {
    actions::set_paused(&admin, By { actor: &actor, request_id: request_id(&headers) }, &name, false).await?;
    Ok(Json(find_job(&admin, &name).await?))
}
