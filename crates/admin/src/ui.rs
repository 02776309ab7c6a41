//! The `/admin/ui` pages: server-rendered HTML (askama templates, checked at compile time), no JavaScript
//! framework and nothing loaded from the network. Forms work without JavaScript; one small inline script
//! refreshes the campaign composer's audience count as the operator types.
//!
//! Signing in with an admin token sets a signed, `HttpOnly`, `SameSite=Strict` cookie ([`crate::auth`]); every
//! form carries a CSRF token tied to that cookie. Actions go through the same functions as the JSON API, so the
//! audit log records them the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration as TimeDelta, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{self, AudienceQuery, RunQuery};
use crate::audit::{self, AuditRecord};
use crate::auth::{self, Actor, AdminToken, SESSION_COOKIE};
use crate::data::{self, Campaign, CampaignDelivery, JobSummary, OutboxHealth, RunSummary};
use crate::error::ApiError;
use crate::{Admin, request_id};

/// The pages.
pub fn router() -> Router<Arc<Admin>> {
    Router::new()
        .route("/admin/ui", get(jobs_page))
        .route("/admin/ui/login", get(login_page).post(login))
        .route("/admin/ui/logout", post(logout))
        .route("/admin/ui/composer.js", get(composer_js))
        .route("/admin/ui/jobs/{name}", get(job_page))
        .route("/admin/ui/jobs/{name}/run", post(run_now))
        .route("/admin/ui/jobs/{name}/{action}", post(pause_or_resume))
        .route("/admin/ui/runs/{id}", get(run_page))
        .route("/admin/ui/campaigns", get(campaigns_page).post(compose))
        .route("/admin/ui/campaigns/preview", post(preview))
        .route("/admin/ui/campaigns/{id}", get(campaign_page))
        .route("/admin/ui/campaigns/{id}/cancel", post(cancel))
        .route("/admin/ui/partners", get(partners_page))
        .route("/admin/ui/outbox", get(outbox_page))
        .route("/admin/ui/audit", get(audit_page))
}

/// A signed-in operator.
pub struct Session {
    token: AdminToken,
    value: String,
    /// The CSRF token the page's forms carry.
    pub csrf: String,
}

impl Session {
    fn actor(&self) -> Actor {
        Actor(self.token.name.clone())
    }

    fn check(&self, csrf: &str) -> Result<(), UiError> {
        if auth::verify_csrf(&self.token, &self.value, csrf) {
            Ok(())
        } else {
            Err(UiError(ApiError::forbidden("the form is stale or was not issued to this session; reload the page")))
        }
    }
}

impl FromRequestParts<Arc<Admin>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &Arc<Admin>) -> Result<Self, Self::Rejection> {
        let tokens = admin.ui_tokens();
        if admin.settings.tokens.is_empty() {
            // A loopback-only server without tokens: everyone here is the operator.
            let token = tokens[0].clone();
            let value = "anonymous".to_owned();
            return Ok(Session { csrf: auth::csrf_token(&token, &value), token, value });
        }
        let now = auth::unix_now();
        let Some((token, id, value)) = auth::cookie(&parts.headers, SESSION_COOKIE).and_then(|value| {
            auth::verify_session(&tokens, value, now).map(|(token, id)| (token.clone(), id, value.to_owned()))
        }) else {
            return Err(Redirect::to("/admin/ui/login").into_response());
        };
        // Signed and unexpired; the database says whether it was signed out.
        let live: bool = db::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM hattrick_admin_sessions
                            WHERE id = $1 AND revoked_at IS NULL AND expires_at > now())",
        )
        .bind(id)
        .fetch_one(admin.pool())
        .await
        .map_err(|e| UiError::from(e).into_response())?;
        if !live {
            return Err(Redirect::to("/admin/ui/login").into_response());
        }
        Ok(Session { csrf: auth::csrf_token(&token, &value), token, value })
    }
}

/// An error shown as a page.
pub struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> Self {
        UiError(error)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(error: sqlx::Error) -> Self {
        UiError(ApiError::from(error))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
    problems: Vec<String>,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.0.status.as_u16(),
            message: self.0.body.message.clone(),
            problems: self.0.body.problems(),
        };
        match page.render() {
            Ok(html) => (self.0.status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(_) => self.0.into_response(),
        }
    }
}

type Page<T> = Result<T, UiError>;

/// A notice shown once at the top of a page (`?msg=`).
#[derive(Debug, Default, Deserialize)]
struct Notice {
    msg: Option<String>,
}

fn back_to(path: &str, message: &str) -> Redirect {
    let message: String = message
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect();
    Redirect::to(&format!("{path}?msg={message}"))
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn when_opt(at: Option<DateTime<Utc>>) -> String {
    at.map(when).unwrap_or_else(|| "—".to_owned())
}

fn millis(ms: Option<i32>) -> String {
    match ms {
        None => "—".to_owned(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", f64::from(ms) / 1000.0),
    }
}

// ---- sign in ----

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    /// The sign-in form's CSRF token, also set as the `hattrick_login` cookie.
    csrf: String,
}

/// The cookie that ties the sign-in form to the browser it was shown in.
const LOGIN_COOKIE: &str = "hattrick_login";

fn cookie_attributes(admin: &Admin, path: &str, max_age: i64) -> String {
    let secure = if admin.settings.secure_cookies { "; Secure" } else { "" };
    format!("Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The sign-in page, with a fresh form token in both the form and a cookie: a form posted from another site
/// cannot know it (sign-in CSRF, which would sign the operator in as the attacker).
fn login_form(admin: &Admin, status: StatusCode, error: Option<String>) -> Response {
    let csrf = format!("{}", Uuid::new_v4().simple());
    let cookie = format!("{LOGIN_COOKIE}={csrf}; {}", cookie_attributes(admin, "/admin/ui/login", 600));
    (status, [(header::SET_COOKIE, cookie)], LoginPage { error, csrf }).into_response()
}

async fn login_page(State(admin): State<Arc<Admin>>) -> Response {
    login_form(&admin, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(admin): State<Arc<Admin>>,
    client: Option<axum::Extension<crate::guard::ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = client.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
    if let Some(wait) = admin.sign_ins.retry_after(client, admin.settings.sign_in_attempts) {
        tracing::warn!(%client, "admin page: too many failed sign-ins");
        let page =
            LoginPage { error: Some("Too many failed sign-ins; wait a minute.".to_owned()), csrf: String::new() };
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())], page)
            .into_response();
    }
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::same_secret(expected, &form.csrf) {
        return login_form(&admin, StatusCode::FORBIDDEN, Some("The form expired; sign in again.".to_owned()));
    }
    let tokens = admin.ui_tokens();
    let Some(token) = auth::find_token(&tokens, form.token.trim()) else {
        admin.sign_ins.failed(client);
        tracing::warn!(%client, "admin page: sign-in with a wrong token");
        return login_form(&admin, StatusCode::UNAUTHORIZED, Some("That token is not valid.".to_owned()));
    };
    let ttl = i64::try_from(admin.settings.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let expires = auth::unix_now().saturating_add(ttl);
    let id = Uuid::new_v4();
    let stored = async {
        let mut tx = admin.pool().begin().await?;
        db::query("DELETE FROM hattrick_admin_sessions WHERE expires_at < now() - interval '1 day'")
            .execute(&mut *tx)
            .await?;
        db::query(
            "INSERT INTO hattrick_admin_sessions (id, actor, created_at, expires_at)
             VALUES ($1, $2, now(), to_timestamp($3))",
        )
        .bind(id)
        .bind(&token.name)
        .bind(expires as f64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    };
    if let Err(error) = stored.await {
        return UiError::from(error).into_response();
    }
    let value = auth::session_value(token, expires, id);
    let cookie = format!("{SESSION_COOKIE}={value}; {}", cookie_attributes(&admin, "/admin", ttl));
    let spent = format!("{LOGIN_COOKIE}=; {}", cookie_attributes(&admin, "/admin/ui/login", 0));
    tracing::info!(actor = %token.name, "admin page: signed in");
    let mut response = Redirect::to("/admin/ui").into_response();
    for cookie in [cookie, spent] {
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Signs out: the session is revoked for every instance, so a copy of the cookie stops working too.
async fn logout(State(admin): State<Arc<Admin>>, session: Session, Form(form): Form<CsrfForm>) -> Page<Response> {
    session.check(&form.csrf)?;
    if let Some((_, id)) = auth::verify_session(&admin.ui_tokens(), &session.value, auth::unix_now()) {
        db::query("UPDATE hattrick_admin_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(admin.pool())
            .await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; {}", cookie_attributes(&admin, "/admin", 0));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/admin/ui/login")).into_response())
}

/// The campaign composer's script (served as a file: the page's CSP allows no inline script).
async fn composer_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        include_str!("../templates/composer.js"),
    )
        .into_response()
}

// ---- jobs ----

/// A job row of the jobs table.
struct JobRow {
    job: JobSummary,
    next_run: String,
    last_status: String,
    last_started: String,
    last_duration: String,
    sparkline: Sparkline,
}

/// A duration sparkline: an SVG polyline's points and a caption.
struct Sparkline {
    points: String,
    caption: String,
}

const SPARK_WIDTH: f64 = 120.0;
const SPARK_HEIGHT: f64 = 24.0;

fn sparkline(durations: &[i64]) -> Sparkline {
    // One run draws as a flat line across, so it shows.
    let one;
    let durations = if let [only] = durations {
        one = [*only, *only];
        &one[..]
    } else {
        durations
    };
    let max = durations.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if durations.len() > 1 { SPARK_WIDTH / (durations.len() - 1) as f64 } else { 0.0 };
    let points = durations
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let x = i as f64 * step;
            let y = SPARK_HEIGHT - 1.0 - (*ms as f64 / max) * (SPARK_HEIGHT - 2.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let caption = match durations.last() {
        Some(last) => format!("latest {last} ms, longest {max} ms"),
        None => "no runs yet".to_owned(),
    };
    Sparkline { points, caption }
}

impl From<JobSummary> for JobRow {
    fn from(job: JobSummary) -> Self {
        let last = job.last_run.as_ref();
        JobRow {
            next_run: job.next_runs_local.first().cloned().unwrap_or_else(|| "—".to_owned()),
            last_status: last.map_or_else(|| "never ran".to_owned(), |r| r.status.clone()),
            last_started: when_opt(last.map(|r| r.started_at)),
            last_duration: millis(last.and_then(|r| r.duration_ms)),
            sparkline: sparkline(&job.recent_durations_ms),
            job,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
struct JobsPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    jobs: Vec<JobRow>,
    any_running: bool,
}

async fn jobs_page(State(admin): State<Arc<Admin>>, session: Session, Query(notice): Query<Notice>) -> Page<JobsPage> {
    let jobs = data::jobs(&admin.engine, admin.pool(), admin.engine.clock().now()).await?;
    Ok(JobsPage {
        any_running: jobs.iter().any(|j| j.running),
        jobs: jobs.into_iter().map(JobRow::from).collect(),
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

/// A run row of a run table.
struct RunRow {
    run: RunSummary,
    started: String,
    duration: String,
    items: String,
}

impl From<RunSummary> for RunRow {
    fn from(run: RunSummary) -> Self {
        RunRow {
            started: when(run.started_at),
            duration: millis(run.duration_ms),
            items: run.items_processed.map_or_else(|| "—".to_owned(), |n| n.to_string()),
            run,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "job.html")]
struct JobPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    job: JobRow,
    runs: Vec<RunRow>,
}

async fn job_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
) -> Page<JobPage> {
    let job = data::jobs(&admin.engine, admin.pool(), admin.engine.clock().now())
        .await?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no job {name}")))?;
    let runs = data::runs(admin.pool(), &name, 50, None).await?;
    Ok(JobPage {
        job: job.into(),
        runs: runs.into_iter().map(RunRow::from).collect(),
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

#[derive(Deserialize)]
struct RunForm {
    csrf: String,
    #[serde(default)]
    dry_run: Option<String>,
}

async fn run_now(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RunForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let query = RunQuery { dry_run: form.dry_run.is_some(), from: None, to: None };
    let started = api::start_run(&admin, &session.actor(), request_id(&headers), &name, query).await?;
    let message = if started.dry_run {
        format!(
            "Dry run of {name}: {} — {}",
            started.outcome.unwrap_or_default(),
            started.report.map(|r| r.to_string()).or(started.error).unwrap_or_default()
        )
    } else {
        format!("Started {name} (run {})", started.run_id)
    };
    Ok(back_to(&format!("/admin/ui/jobs/{name}"), &message).into_response())
}

/// `POST /admin/ui/jobs/{name}/pause` and `.../resume`.
async fn pause_or_resume(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(ApiError::not_found(format!("no action {action}")).into()),
    };
    let changed = api::set_paused(&admin, &session.actor(), request_id(&headers), &name, paused).await?;
    let verb = if paused { "Paused" } else { "Resumed" };
    let message =
        if changed { format!("{verb} {name}") } else { format!("{name} was {} already", verb.to_lowercase()) };
    Ok(back_to("/admin/ui", &message).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
struct RunPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    run: RunRow,
    completed: String,
    details: String,
}

async fn run_page(State(admin): State<Arc<Admin>>, session: Session, Path(id): Path<String>) -> Page<RunPage> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no run {id}")))?;
    let run = data::run(admin.pool(), id).await?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(RunPage {
        completed: when_opt(run.run.completed_at),
        details: run
            .details
            .as_ref()
            .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
            .unwrap_or_else(|| "—".to_owned()),
        run: run.run.into(),
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: None,
    })
}

// ---- campaigns ----

/// The composer's fields, as typed (kept on a validation error so nothing is lost).
#[derive(Debug, Clone, Default, Deserialize)]
struct ComposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    title_tr: String,
    #[serde(default)]
    title_en: String,
    #[serde(default)]
    body_tr: String,
    #[serde(default)]
    body_en: String,
    #[serde(default)]
    deep_link_url: String,
    #[serde(default)]
    image_url: String,
    #[serde(default)]
    target_audience: String,
    #[serde(default)]
    segment_filter: String,
    #[serde(default)]
    scheduled_at: String,
}

struct CampaignRow {
    campaign: Campaign,
    scheduled: String,
    delivery: String,
}

impl From<Campaign> for CampaignRow {
    fn from(campaign: Campaign) -> Self {
        let delivery = match campaign.recipient_count {
            Some(n) => format!(
                "{n} users: {} reached, {} not",
                campaign.success_count.unwrap_or(0),
                campaign.failure_count.unwrap_or(0)
            ),
            None => "not expanded yet".to_owned(),
        };
        CampaignRow { scheduled: when(campaign.scheduled_at), delivery, campaign }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "campaigns.html")]
struct CampaignsPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    form: ComposeForm,
    problems: Vec<String>,
    audience: Option<i64>,
    campaigns: Vec<CampaignRow>,
}

impl CampaignsPage {
    fn audience_is(&self, value: &str) -> bool {
        let current = if self.form.target_audience.is_empty() { "all" } else { self.form.target_audience.as_str() };
        current == value
    }
}

async fn campaigns_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(notice): Query<Notice>,
) -> Page<CampaignsPage> {
    render_campaigns(&admin, session, notice.msg, ComposeForm::default(), Vec::new(), None).await
}

async fn render_campaigns(
    admin: &Admin,
    session: Session,
    notice: Option<String>,
    form: ComposeForm,
    problems: Vec<String>,
    audience: Option<i64>,
) -> Page<CampaignsPage> {
    let campaigns = data::campaigns(admin.pool(), 50).await?;
    Ok(CampaignsPage {
        csrf: session.csrf,
        actor: session.token.name,
        notice,
        form,
        problems,
        audience,
        campaigns: campaigns.into_iter().map(CampaignRow::from).collect(),
    })
}

/// The composer's audience and filter, or the problems reading them.
fn audience_of(form: &ComposeForm) -> Result<AudienceQuery, Vec<String>> {
    let target_audience = if form.target_audience.is_empty() { "all".to_owned() } else { form.target_audience.clone() };
    let segment_filter = if form.segment_filter.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&form.segment_filter)
                .map_err(|e| vec![format!("segment_filter: not valid JSON ({e})")])?,
        )
    };
    Ok(AudienceQuery { target_audience, segment_filter })
}

/// `datetime-local` input (UTC) or RFC 3339.
fn scheduled_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(now);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
        .ok_or_else(|| format!("scheduled_at: {text:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"))
}

async fn compose(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ComposeForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let query = match audience_of(&form) {
        Ok(query) => query,
        Err(problems) => {
            return Ok(render_campaigns(&admin, session, None, form, problems, None).await?.into_response());
        }
    };
    if form.action == "preview" {
        return Ok(match api::audience(&admin, &query).await {
            Ok(size) => render_campaigns(&admin, session, None, form, Vec::new(), Some(size.users)).await?,
            Err(error) => {
                let problems = error.body.problems();
                render_campaigns(&admin, session, None, form, problems, None).await?
            }
        }
        .into_response());
    }
    let now = admin.engine.clock().now();
    let at = match scheduled_at(&form.scheduled_at, now) {
        Ok(at) => at,
        Err(problem) => {
            return Ok(render_campaigns(&admin, session, None, form, vec![problem], None).await?.into_response());
        }
    };
    let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let new = domain::CampaignDraft {
        title_tr: form.title_tr.clone(),
        title_en: optional(&form.title_en),
        body_tr: form.body_tr.clone(),
        body_en: optional(&form.body_en),
        deep_link_url: optional(&form.deep_link_url),
        image_url: optional(&form.image_url),
        target_audience: query.target_audience,
        segment_filter: query.segment_filter,
        scheduled_at: Some(at),
    };
    match api::create(&admin, &session.actor(), request_id(&headers), new.normalized(now)).await {
        Ok(campaign) => {
            Ok(back_to(&format!("/admin/ui/campaigns/{}", campaign.id), "Campaign created").into_response())
        }
        Err(error) if error.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let problems = error.body.problems();
            let page = render_campaigns(&admin, session, None, form, problems, None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// The composer's live count: JSON in, JSON out (CSRF token in the `x-csrf-token` header).
async fn preview(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ComposeForm>,
) -> Response {
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(UiError(error)) = session.check(csrf) {
        return error.into_response();
    }
    let query = match audience_of(&form) {
        Ok(query) => query,
        Err(problems) => return ApiError::validation(problems).into_response(),
    };
    match api::audience(&admin, &query).await {
        Ok(size) => Json(size).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "campaign.html")]
struct CampaignPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    row: CampaignRow,
    outbox: Vec<(String, i64)>,
    tokens_sent: i64,
    tokens_failed: i64,
    filter: String,
    cancellable: bool,
}

async fn campaign_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Page<CampaignPage> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no campaign {id}")))?;
    let CampaignDelivery { campaign, outbox, tokens_sent, tokens_failed } =
        data::campaign(admin.pool(), id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))?;
    Ok(CampaignPage {
        cancellable: matches!(campaign.status.as_str(), "pending" | "sending"),
        filter: campaign
            .segment_filter
            .as_ref()
            .map(|f| serde_json::to_string_pretty(f).unwrap_or_default())
            .unwrap_or_default(),
        row: campaign.into(),
        outbox: outbox.into_iter().collect(),
        tokens_sent,
        tokens_failed,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

async fn cancel(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let pushes = api::cancel(&admin, &session.actor(), request_id(&headers), id).await?;
    Ok(back_to(&format!("/admin/ui/campaigns/{id}"), &format!("Cancelled; {pushes} pushes not sent")).into_response())
}

// ---- partners ----

#[derive(Debug, Deserialize)]
struct RangeForm {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

/// A bar of the revenue chart.
struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    title: String,
}

/// One partner's totals over the range.
struct PartnerTotal {
    name: String,
    revenue: String,
    commission: String,
    signups: i64,
    subscriptions: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "partners.html")]
struct PartnersPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    from: NaiveDate,
    to: NaiveDate,
    bars: Vec<Bar>,
    commission_points: String,
    max_label: String,
    totals: Vec<PartnerTotal>,
    days: usize,
}

const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 200.0;

async fn partners_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(range): Query<RangeForm>,
) -> Page<PartnersPage> {
    let today = admin.engine.clock().now().date_naive();
    let to = range.to.unwrap_or(today - TimeDelta::days(1));
    api::check_day("to", to)?;
    let from = range.from.unwrap_or(to - TimeDelta::days(29));
    api::check_range(from, to)?;
    let rows = data::partner_days(admin.pool(), from, to, None).await?;
    let days = usize::try_from((to - from).num_days() + 1).unwrap_or(1);
    let mut revenue = vec![0.0f64; days];
    let mut commission = vec![0.0f64; days];
    let mut totals: BTreeMap<(String, Uuid), (f64, f64, i64, i64)> = BTreeMap::new();
    for row in &rows {
        let day = usize::try_from((row.date - from).num_days()).unwrap_or(0).min(days - 1);
        revenue[day] += row.revenue;
        commission[day] += row.commission;
        let total = totals.entry((row.business_name.clone(), row.partner_id)).or_default();
        total.0 += row.revenue;
        total.1 += row.commission;
        total.2 += i64::from(row.new_signups);
        total.3 += i64::from(row.new_subscriptions);
    }
    let max = revenue.iter().chain(&commission).copied().fold(0.0, f64::max).max(1.0);
    let slot = CHART_WIDTH / days as f64;
    let bars = revenue
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let height = value / max * CHART_HEIGHT;
            Bar {
                x: i as f64 * slot + slot * 0.1,
                y: CHART_HEIGHT - height,
                width: slot * 0.8,
                height,
                title: format!(
                    "{}: revenue {value:.2}, commission {:.2}",
                    from + TimeDelta::days(i as i64),
                    commission[i]
                ),
            }
        })
        .collect();
    let commission_points = commission
        .iter()
        .enumerate()
        .map(|(i, value)| {
            format!("{:.1},{:.1}", i as f64 * slot + slot / 2.0, CHART_HEIGHT - value / max * CHART_HEIGHT)
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(PartnersPage {
        csrf: session.csrf,
        actor: session.token.name,
        notice: None,
        from,
        to,
        bars,
        commission_points,
        max_label: format!("{max:.2}"),
        totals: totals
            .into_iter()
            .map(|((name, _), (revenue, commission, signups, subscriptions))| PartnerTotal {
                name,
                revenue: format!("{revenue:.2}"),
                commission: format!("{commission:.2}"),
                signups,
                subscriptions,
            })
            .collect(),
        days,
    })
}

// ---- outbox and audit ----

#[derive(Template, WebTemplate)]
#[template(path = "outbox.html")]
struct OutboxPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    outbox: OutboxHealth,
    oldest: String,
    failures: Vec<(String, String)>,
}

async fn outbox_page(State(admin): State<Arc<Admin>>, session: Session) -> Page<OutboxPage> {
    let outbox = data::outbox(admin.pool(), admin.engine.clock().now(), 20).await?;
    Ok(OutboxPage {
        oldest: format!("{:.0} s", outbox.oldest_due_seconds),
        failures: outbox.recent_failures.iter().map(|f| (when(f.created_at), f.customer_user_id.to_string())).collect(),
        outbox,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: None,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    records: Vec<(String, AuditRecord, String)>,
}

async fn audit_page(State(admin): State<Arc<Admin>>, session: Session) -> Page<AuditPage> {
    let records = audit::recent(admin.pool(), 200, None).await?;
    Ok(AuditPage {
        records: records
            .into_iter()
            .map(|r| (when(r.at), r.details.to_string(), r))
            .map(|(w, d, r)| (w, r, d))
            .collect(),
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_longest_run() {
        let line = sparkline(&[10, 20, 40]);
        assert_eq!(line.points, "0.0,17.5 60.0,12.0 120.0,1.0");
        assert_eq!(line.caption, "latest 40 ms, longest 40 ms");
        assert_eq!(sparkline(&[]).points, "");
        assert_eq!(sparkline(&[7]).points, "0.0,1.0 120.0,1.0", "one run is a line, not an invisible point");
    }

    #[test]
    fn the_composers_example_filter_compiles() {
        let page = include_str!("../templates/campaigns.html");
        let example = page
            .split("id=\"segment_filter\"")
            .nth(1)
            .and_then(|rest| rest.split("placeholder='").nth(1))
            .and_then(|rest| rest.split('\'').next())
            .expect("the segment filter's placeholder");
        let filter: serde_json::Value = serde_json::from_str(example).expect("the example is JSON");
        let zones = domain::DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None };
        let compiled = domain::campaign::audience_sql("segment", Some(&filter), &zones, 2);
        assert!(compiled.is_ok(), "the example the page shows must be a valid filter: {compiled:?}");
    }

    #[test]
    fn schedule_times_read_as_utc() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T09:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(scheduled_at("", now).unwrap(), now);
        assert_eq!(scheduled_at("2026-12-01T18:30", now).unwrap().to_rfc3339(), "2026-12-01T18:30:00+00:00");
        assert!(scheduled_at("tomorrow", now).unwrap_err().starts_with("scheduled_at:"));
    }
}
