//! The `/admin` JSON API (SPEC 5). Each handler carries its OpenAPI description; [`routes`] registers the
//! handlers and their descriptions together, so `/admin/openapi.json` lists exactly the routes served.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::{self, AuditRecord, Entry};
use crate::auth::Actor;
use crate::data::{self, Campaign, CampaignDelivery, JobSummary, OutboxHealth, PartnerDay, RunDetail, RunSummary};
use crate::error::{ApiError, Body, ErrorBody};
use crate::{Admin, request_id};
use domain::campaign::CampaignDraft;
use domain::operator::{self, ActionError, Ledger};
use engine::RunArgs;
use engine::runner::ManualError;

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
        (name = "jobs", description = "Jobs, their runs, run now, pause and resume"),
        (name = "campaigns", description = "Push campaigns"),
        (name = "partners", description = "Partner analytics"),
        (name = "push", description = "The outbox and test pushes"),
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
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(job_runs))
        .routes(routes!(run_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(get_run))
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign))
        .routes(routes!(cancel_campaign))
        .routes(routes!(preview_audience))
        .routes(routes!(partner_analytics))
        .routes(routes!(get_outbox))
        .routes(routes!(test_push))
        .routes(routes!(grant_badge))
        .routes(routes!(revoke_badge))
        .routes(routes!(adjust_credits))
        .routes(routes!(adjust_xp))
        .routes(routes!(audit_log))
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
    let users = &mut schemas["TestPushRequest"]["properties"]["users"];
    users["minItems"] = json!(1);
    users["maxItems"] = json!(push::test_send::MAX_RECIPIENTS);
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many (1 to 500, default 50).
    pub limit: Option<i64>,
}

fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::validation([format!("limit: must be 1 to 500 (got {n})")])),
    }
}

/// Every job with schedule, state, next runs and last run.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobSummary>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
async fn list_jobs(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<JobSummary>>, ApiError> {
    Ok(Json(data::jobs(&admin.engine, admin.pool(), admin.engine.clock().now()).await?))
}

async fn find_job(admin: &Admin, name: &str) -> Result<JobSummary, ApiError> {
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
async fn get_job(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<Json<JobSummary>, ApiError> {
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
async fn job_runs(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    let Query(query) = query?;
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
async fn get_run(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RunDetail>, ApiError> {
    let Path(id) = id?;
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
async fn run_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(query) = query?;
    let started = start_run(&admin, &actor, request_id(&headers), &name, query).await?;
    let status = if started.dry_run { StatusCode::OK } else { StatusCode::ACCEPTED };
    let location = format!("/admin/runs/{}", started.run_id);
    Ok((status, [(header::LOCATION, location)], Json(started)).into_response())
}

/// Starts (or, dry, performs) a manual run and records it; shared by the API and the page.
pub async fn start_run(
    admin: &Admin,
    actor: &Actor,
    request_id: Option<&str>,
    name: &str,
    query: RunQuery,
) -> Result<RunStarted, ApiError> {
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        return Err(ApiError::validation([format!("to: {to} is before from ({from})")]));
    }
    let args = RunArgs { dry_run: query.dry_run, silent: false, from: query.from, to: query.to };
    let manual_error = |error: ManualError| match error {
        ManualError::Unknown(job) => ApiError::not_found(format!("no job {job}")),
        ManualError::AlreadyRunning(job) => ApiError::conflict(format!("{job} is already running")),
        ManualError::Sql(e) => ApiError::from(e),
    };
    if query.dry_run {
        let result = admin.engine.run_manual(name, args).await.map_err(manual_error)?;
        return Ok(RunStarted {
            job: result.job,
            run_id: result.run_id,
            dry_run: true,
            outcome: Some(result.outcome.as_str().to_owned()),
            report: result.report.map(|r| serde_json::json!({"items": r.items, "details": r.details})),
            error: result.error,
        });
    }
    // The audit row is committed with the run's claim: a run started from here always has its record.
    let now = admin.engine.clock().now();
    let (actor_name, job, request_id) = (actor.0.clone(), name.to_owned(), request_id.map(str::to_owned));
    let (from, to) = (args.from, args.to);
    let record: engine::store::ClaimHook<'_> = Box::new(move |conn, run_id| {
        Box::pin(async move {
            let entry = Entry {
                actor: &actor_name,
                action: "job.run",
                target: job,
                details: serde_json::json!({"run_id": run_id, "from": from, "to": to}),
                request_id: request_id.as_deref(),
            };
            audit::record(conn, &entry, now).await
        })
    });
    let (run_id, handle) = admin
        .engine
        .start_manual(name, args, admin.shutdown.child_token(), Some(record))
        .await
        .map_err(manual_error)?;
    admin.runs.spawn(async move {
        let _ = handle.await;
    });
    Ok(RunStarted { job: name.to_owned(), run_id, dry_run: false, outcome: None, report: None, error: None })
}

/// Pauses or resumes a job for every instance and records it; shared by the API and the page. Returns whether
/// the state changed.
pub async fn set_paused(
    admin: &Admin,
    actor: &Actor,
    request_id: Option<&str>,
    name: &str,
    paused: bool,
) -> Result<bool, ApiError> {
    if !admin.engine.registry().contains(name) {
        return Err(ApiError::not_found(format!("no job {name}")));
    }
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let changed = engine::store::set_paused(&mut *tx, name, paused, now, &format!("admin:{}", actor.0)).await?;
    if changed {
        let entry = Entry {
            actor: &actor.0,
            action: if paused { "job.pause" } else { "job.resume" },
            target: name.to_owned(),
            details: serde_json::json!({}),
            request_id,
        };
        audit::record(&mut *tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Pauses a job: its ticks are recorded `paused` until it is resumed (then its misfire policy applies).
#[utoipa::path(post, path = "/admin/jobs/{name}/pause", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobSummary, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
async fn pause_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<JobSummary>, ApiError> {
    set_paused(&admin, &actor, request_id(&headers), &name, true).await?;
    Ok(Json(find_job(&admin, &name).await?))
}

/// Resumes a paused job.
#[utoipa::path(post, path = "/admin/jobs/{name}/resume", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobSummary, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
async fn resume_job(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<JobSummary>, ApiError> {
    set_paused(&admin, &actor, request_id(&headers), &name, false).await?;
    Ok(Json(find_job(&admin, &name).await?))
}

/// The latest campaigns, newest first.
#[utoipa::path(get, path = "/admin/campaigns", tag = "campaigns", params(Page),
    responses((status = 200, body = Vec<Campaign>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn list_campaigns(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Campaign>>, ApiError> {
    let Query(page) = query?;
    Ok(Json(data::campaigns(admin.pool(), limit(page.limit)?).await?))
}

/// Validates and stores a campaign (shared by the API and the page): 422 with every problem and its path.
pub async fn create(
    admin: &Admin,
    actor: &Actor,
    request_id: Option<&str>,
    draft: CampaignDraft,
) -> Result<Campaign, ApiError> {
    let now = admin.engine.clock().now();
    let problems =
        draft.problems(&admin.settings.zones, &admin.settings.content, now, admin.settings.campaign_stale_after);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let mut tx = admin.pool().begin().await?;
    let campaign = data::create_campaign(&mut tx, &draft, now).await?;
    let entry = Entry {
        actor: &actor.0,
        action: "campaign.create",
        target: campaign.id.to_string(),
        details: serde_json::json!({
            "title_tr": draft.title_tr, "target_audience": draft.target_audience,
            "segment_filter": draft.segment_filter, "scheduled_at": draft.scheduled_at,
        }),
        request_id,
    };
    audit::record(&mut *tx, &entry, now).await?;
    tx.commit().await?;
    Ok(campaign)
}

/// Creates a campaign (status `pending`; the `scheduled-notifications` job sends it when due).
#[utoipa::path(post, path = "/admin/campaigns", tag = "campaigns", request_body = CampaignDraft,
    responses((status = 201, body = Campaign, description = "Created"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn create_campaign(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(new): Body<CampaignDraft>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let draft = new.normalized(admin.engine.clock().now());
    let campaign = create(&admin, &actor, request_id(&headers), draft).await?;
    Ok((StatusCode::CREATED, Json(campaign)))
}

/// A campaign with its delivery: outbox rows by status, devices reached.
#[utoipa::path(get, path = "/admin/campaigns/{id}", tag = "campaigns",
    params(("id" = Uuid, Path, description = "The campaign's id")),
    responses((status = 200, body = CampaignDelivery, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
async fn get_campaign(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<CampaignDelivery>, ApiError> {
    let Path(id) = id?;
    data::campaign(admin.pool(), id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))
}

/// Cancels a campaign (shared by the API and the page).
pub async fn cancel(admin: &Admin, actor: &Actor, request_id: Option<&str>, id: Uuid) -> Result<u64, ApiError> {
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let pushes = match data::cancel_campaign(&mut tx, id).await? {
        data::Cancelled::Done { pushes } => pushes,
        data::Cancelled::Final(status) => {
            return Err(ApiError::conflict(format!("campaign {id} is {status} already")));
        }
        data::Cancelled::Unknown => return Err(ApiError::not_found(format!("no campaign {id}"))),
    };
    let entry = Entry {
        actor: &actor.0,
        action: "campaign.cancel",
        target: id.to_string(),
        details: serde_json::json!({"pushes_cancelled": pushes}),
        request_id,
    };
    audit::record(&mut *tx, &entry, now).await?;
    tx.commit().await?;
    Ok(pushes)
}

/// Cancels a campaign that has not finished, with its pushes not sent yet.
#[utoipa::path(post, path = "/admin/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = Uuid, Path, description = "The campaign's id")),
    responses((status = 200, body = CampaignDelivery, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"),
              (status = 409, body = ErrorBody, description = "The campaign has finished")))]
async fn cancel_campaign(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<CampaignDelivery>, ApiError> {
    let Path(id) = id?;
    cancel(&admin, &actor, request_id(&headers), id).await?;
    data::campaign(admin.pool(), id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))
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

/// Counts an audience (shared by the API and the page).
pub async fn audience(admin: &Admin, query: &AudienceQuery) -> Result<AudienceSize, ApiError> {
    let now = admin.engine.clock().now();
    // A transaction, not a bare connection: behind a pooler, a statement outside one may meet another server.
    let mut tx = admin.pool().begin().await?;
    let filter = query.segment_filter.as_ref().filter(|f| !f.is_null());
    let size =
        domain::campaign::audience_size(&mut tx, &query.target_audience, filter, &admin.settings.zones, now).await?;
    tx.commit().await?;
    match size {
        Ok(users) => Ok(AudienceSize { users }),
        Err(problems) => Err(ApiError::validation(problems)),
    }
}

/// The audience-size preview of the campaign composer.
#[utoipa::path(post, path = "/admin/campaigns/preview", tag = "campaigns", request_body = AudienceQuery,
    responses((status = 200, body = AudienceSize, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn preview_audience(
    State(admin): State<Arc<Admin>>,
    Body(query): Body<AudienceQuery>,
) -> Result<Json<AudienceSize>, ApiError> {
    Ok(Json(audience(&admin, &query).await?))
}

/// A date range of partner analytics.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day (business zone).
    pub from: NaiveDate,
    /// Last day, inclusive (at most 366 days after `from`).
    pub to: NaiveDate,
    /// One partner only.
    pub partner_id: Option<Uuid>,
}

/// The days a range may name: those an RFC 3339 date can write (years 0000 to 9999), which the database and the
/// calendar arithmetic both hold.
pub const DAYS: std::ops::RangeInclusive<NaiveDate> =
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date")..=NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");

/// Checks that `day` (the field `path`) is one a range may name.
pub fn check_day(path: &str, day: NaiveDate) -> Result<(), ApiError> {
    if DAYS.contains(&day) {
        Ok(())
    } else {
        Err(ApiError::validation([format!("{path}: {day} is not between {} and {}", DAYS.start(), DAYS.end())]))
    }
}

/// Checks a date range.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), ApiError> {
    check_day("from", from)?;
    check_day("to", to)?;
    if to < from {
        return Err(ApiError::validation([format!("to: {to} is before from ({from})")]));
    }
    if (to - from).num_days() >= data::MAX_RANGE_DAYS {
        return Err(ApiError::validation([format!("to: the range is longer than {} days", data::MAX_RANGE_DAYS)]));
    }
    Ok(())
}

/// Revenue, commission, signups and subscribers per partner and day.
#[utoipa::path(get, path = "/admin/partners/analytics", tag = "partners", params(RangeQuery),
    responses((status = 200, body = Vec<PartnerDay>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn partner_analytics(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<PartnerDay>>, ApiError> {
    let Query(range) = query?;
    check_range(range.from, range.to)?;
    Ok(Json(data::partner_days(admin.pool(), range.from, range.to, range.partner_id).await?))
}

/// Outbox depth, age of the oldest due push, recent failures.
#[utoipa::path(get, path = "/admin/outbox", tag = "push",
    responses((status = 200, body = OutboxHealth, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
async fn get_outbox(State(admin): State<Arc<Admin>>) -> Result<Json<OutboxHealth>, ApiError> {
    Ok(Json(data::outbox(admin.pool(), admin.engine.clock().now(), 20).await?))
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
async fn test_push(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    Body(request): Body<TestPushRequest>,
) -> Result<Json<Vec<TestPushResult>>, ApiError> {
    let push = push::test_send::TestPush {
        users: request.users,
        title: request.title,
        body: request.body,
        campaign: request.campaign_id,
    };
    let problems = push.problems();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let now = admin.engine.clock().now();
    let not_found = |e| match e {
        push::test_send::TestPushError::NotFound(message) => ApiError::not_found(message),
        push::test_send::TestPushError::Sql(e) => ApiError::from(e),
    };
    // The audit row is written with the pushes, in one transaction: no record of a send that never was.
    let mut tx = admin.pool().begin().await?;
    let ids = push::test_send::enqueue(&mut tx, &push, now).await.map_err(not_found)?;
    let entry = Entry {
        actor: &actor.0,
        action: "push.test",
        target: push.users.iter().map(Uuid::to_string).collect::<Vec<_>>().join(","),
        details: serde_json::json!({"title": push.title, "campaign_id": push.campaign, "pushes": ids.len()}),
        request_id: request_id(&headers),
    };
    audit::record(&mut *tx, &entry, now).await?;
    tx.commit().await?;
    let results = push::test_send::deliver(admin.pool(), &admin.test_sender, &ids, now).await.map_err(not_found)?;
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

fn action_error(error: ActionError) -> ApiError {
    match error {
        ActionError::NotFound(message) => ApiError::not_found(message),
        ActionError::Invalid(path, message) => ApiError::validation([format!("{path}: {message}")]),
        ActionError::Conflict(message) => ApiError::conflict(message),
        ActionError::Sql(e) => ApiError::from(e),
    }
}

/// What a badge grant did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeGrant {
    /// The badge's slug.
    pub badge: String,
    /// False when the user had the badge already (nothing changed).
    pub granted: bool,
    /// XP paid.
    pub xp: i64,
    /// Credits paid (level-up bonuses included).
    pub credits: i64,
    /// Pushes enqueued.
    pub pushes: i64,
}

impl From<operator::BadgeGrant> for BadgeGrant {
    fn from(g: operator::BadgeGrant) -> Self {
        Self { badge: g.badge, granted: g.granted, xp: g.xp, credits: g.credits, pushes: g.pushes }
    }
}

/// What an adjustment did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Adjustment {
    /// False when the idempotency key was used before (nothing changed).
    pub applied: bool,
    /// The balance after (credits, or XP points).
    pub balance: i64,
    /// Levels crossed upwards (XP grants only; each paid its bonus).
    pub level_ups: i64,
}

impl From<operator::Adjustment> for Adjustment {
    fn from(a: operator::Adjustment) -> Self {
        Self { applied: a.applied, balance: a.balance, level_ups: a.level_ups }
    }
}

/// A badge to grant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BadgeRequest {
    /// The badge's slug or id (manual badges included).
    pub badge: String,
}

/// Grants a badge and pays its rewards like an automatic unlock (once per user ever).
#[utoipa::path(post, path = "/admin/users/{id}/badges", tag = "users", request_body = BadgeRequest,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = BadgeGrant, description = "`granted` false when the user had it"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn grant_badge(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    Body(request): Body<BadgeRequest>,
) -> Result<Json<BadgeGrant>, ApiError> {
    let Path(user) = id?;
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let grant: BadgeGrant =
        operator::grant_badge(&mut tx, user, &request.badge, now).await.map_err(action_error)?.into();
    if grant.granted {
        let entry = Entry {
            actor: &actor.0,
            action: "badge.grant",
            target: user.to_string(),
            details: serde_json::json!({"badge": grant.badge, "xp": grant.xp, "credits": grant.credits}),
            request_id: request_id(&headers),
        };
        audit::record(&mut *tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(Json(grant))
}

/// A badge revocation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeRevoked {
    /// False when the user did not have the badge.
    pub revoked: bool,
}

/// Takes a badge away (rewards already paid stay paid).
#[utoipa::path(delete, path = "/admin/users/{id}/badges/{badge}", tag = "users",
    params(("id" = Uuid, Path, description = "The user's id"), ("badge" = String, Path, description = "The badge's slug or id")),
    responses((status = 200, body = BadgeRevoked, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
async fn revoke_badge(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    path: Result<Path<(Uuid, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<BadgeRevoked>, ApiError> {
    let Path((user, badge)) = path?;
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let revoked = operator::revoke_badge(&mut tx, user, &badge, now).await.map_err(action_error)?;
    if revoked {
        let entry = Entry {
            actor: &actor.0,
            action: "badge.revoke",
            target: user.to_string(),
            details: serde_json::json!({"badge": badge}),
            request_id: request_id(&headers),
        };
        audit::record(&mut *tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(Json(BadgeRevoked { revoked }))
}

/// A grant (positive) or deduction (negative).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Non-zero, at most 1,000,000 either way; a deduction never takes the balance below zero.
    pub amount: i64,
    /// Why (kept in the ledger row's description and the audit log).
    pub reason: String,
}

async fn adjust(
    admin: &Admin,
    actor: &Actor,
    headers: &HeaderMap,
    ledger: Ledger,
    user: Uuid,
    request: AdjustRequest,
) -> Result<Adjustment, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 200 => key.to_owned(),
            _ => return Err(ApiError::validation(["Idempotency-Key: 1 to 200 visible ASCII characters"])),
        },
        None => Uuid::new_v4().to_string(),
    };
    let now = admin.engine.clock().now();
    let action = if ledger == Ledger::Credits { "credits.adjust" } else { "xp.adjust" };
    let mut tx = admin.pool().begin().await?;
    // One key is one request, whoever it is for: the same key for another user or amount is a conflict. The lock
    // makes the look-up and the write one step for concurrent requests with this key.
    db::query("SELECT pg_advisory_xact_lock(hashtextextended('hattrick:admin-key:' || $1, 0))")
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    let earlier: Option<(String, Option<String>, Option<i64>)> = db::query_as(
        "SELECT action::text, target, (details ->> 'amount')::bigint FROM hattrick_audit_log
         WHERE action IN ('credits.adjust', 'xp.adjust') AND details ->> 'key' = $1 ORDER BY id LIMIT 1",
    )
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((earlier_action, target, amount)) = earlier
        && (earlier_action != action
            || target.as_deref() != Some(user.to_string().as_str())
            || amount != Some(request.amount))
    {
        return Err(ApiError::conflict(format!(
            "Idempotency-Key was used for another request ({earlier_action} for user {}, amount {}); a new \
             adjustment needs a new key",
            target.unwrap_or_default(),
            amount.map_or_else(|| "?".to_owned(), |a| a.to_string())
        )));
    }
    let adjustment: Adjustment = operator::adjust(&mut tx, ledger, user, request.amount, &request.reason, &key, now)
        .await
        .map_err(action_error)?
        .into();
    if adjustment.applied {
        let entry = Entry {
            actor: &actor.0,
            action,
            target: user.to_string(),
            details: serde_json::json!({"amount": request.amount, "reason": request.reason, "key": key,
                                        "balance": adjustment.balance}),
            request_id: request_id(headers),
        };
        audit::record(&mut *tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(adjustment)
}

/// Grants or deducts credits with a reason. An `Idempotency-Key` header makes a retried request harmless.
#[utoipa::path(post, path = "/admin/users/{id}/credits", tag = "users", request_body = AdjustRequest,
    params(("id" = Uuid, Path, description = "The user's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key applies the change once")),
    responses((status = 200, body = Adjustment, description = "`applied` false when the key was used before for the same request"),
              (status = 409, body = ErrorBody, description = "The Idempotency-Key was used for another user or amount"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn adjust_credits(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    Body(request): Body<AdjustRequest>,
) -> Result<Json<Adjustment>, ApiError> {
    let Path(user) = id?;
    Ok(Json(adjust(&admin, &actor, &headers, Ledger::Credits, user, request).await?))
}

/// Grants or deducts XP with a reason (levels follow; a level crossed upwards pays its bonus once).
#[utoipa::path(post, path = "/admin/users/{id}/xp", tag = "users", request_body = AdjustRequest,
    params(("id" = Uuid, Path, description = "The user's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key applies the change once")),
    responses((status = 200, body = Adjustment, description = "`applied` false when the key was used before for the same request"),
              (status = 409, body = ErrorBody, description = "The Idempotency-Key was used for another user or amount"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn adjust_xp(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    Body(request): Body<AdjustRequest>,
) -> Result<Json<Adjustment>, ApiError> {
    let Path(user) = id?;
    Ok(Json(adjust(&admin, &actor, &headers, Ledger::Xp, user, request).await?))
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Only records older than this id (the previous page's last id).
    pub before: Option<i64>,
}

/// Every write made through the API or the page, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
async fn audit_log(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let Query(query) = query?;
    Ok(Json(audit::recent(admin.pool(), limit(query.limit)?, query.before).await?))
}

/// This document.
#[utoipa::path(get, path = "/admin/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}
