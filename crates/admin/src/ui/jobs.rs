//! The jobs table, a job with its runs, a run; run now, pause and resume.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::{CsrfForm, Notice, Page, Session, back_to, millis, when, when_opt};
use crate::actions::{self, By};
use crate::api::jobs::RunQuery;
use crate::data::{self, JobSummary, RunSummary};
use crate::error::ApiError;
use crate::{Admin, request_id};
use domain::redrive::RunRedrive;

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router
        .route("/admin/ui", get(jobs_page))
        .route("/admin/ui/jobs/{name}", get(job_page))
        .route("/admin/ui/jobs/{name}/run", post(run_now))
        .route("/admin/ui/jobs/{name}/{action}", post(pause_or_resume))
        .route("/admin/ui/runs/{id}", get(run_page))
        .route("/admin/ui/runs/{id}/redrive", post(redrive_run))
}

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
    let started =
        actions::start_run(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, &name, query)
            .await?;
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
    let changed =
        actions::set_paused(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, &name, paused)
            .await?;
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

async fn run_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Page<RunPage> {
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
        notice: notice.msg,
    })
}

/// `POST /admin/ui/runs/{id}/redrive`: runs a failed run's job again.
async fn redrive_run(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no run {id}")))?;
    let filter = RunRedrive { ids: vec![id], ..RunRedrive::default() };
    let done = actions::redrive_runs(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, &filter)
        .await?;
    let message = match (done.started.first(), done.skipped.first()) {
        (Some(run), _) => format!("Started {} again (run {})", run.job, run.run_id),
        (None, Some(skipped)) => format!("{} was not started: {}", skipped.job, skipped.reason),
        (None, None) => "That run has not failed: nothing to run again".to_owned(),
    };
    Ok(back_to(&format!("/admin/ui/runs/{id}"), &message).into_response())
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
}
