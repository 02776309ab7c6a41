//! The audited writes an operator makes, shared by the API and the page: each checks its input, changes the
//! database and records an audit row in one transaction (a manual run's record is committed with its claim).

use chrono::{DateTime, Utc};
use domain::campaign::{AudienceError, CampaignDraft, Variants};
use domain::redrive::{FailedRun, PushRedrive, PushesRedriven, RunRedrive};
use engine::RunArgs;
use engine::runner::ManualError;
use uuid::Uuid;

use crate::Admin;
use crate::api::campaigns::{AudienceQuery, AudienceSize};
use crate::api::jobs::{RunQuery, RunStarted};
use crate::audit::{self, Entry};
use crate::auth::Actor;
use crate::data::Campaign;
use crate::error::ApiError;

/// Who asks: the operator and the request's id, as the audit log records them.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The operator (the token's or the session's name).
    pub actor: &'a Actor,
    /// The request's `X-Request-Id`.
    pub request_id: Option<&'a str>,
}

/// Starts (or, dry, performs) a manual run and records it; shared by the API and the page.
pub async fn start_run(admin: &Admin, by: By<'_>, name: &str, query: RunQuery) -> Result<RunStarted, ApiError> {
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
    let (actor_name, job, request_id) = (by.actor.0.clone(), name.to_owned(), by.request_id.map(str::to_owned));
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

/// Sends the failed pushes `filter` selects again and records it; shared by the API and the page.
pub async fn redrive_pushes(admin: &Admin, by: By<'_>, filter: &PushRedrive) -> Result<PushesRedriven, ApiError> {
    let problems = filter.problems();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let now = admin.engine.clock().now();
    Ok(audited_push_redrive(admin.pool(), &by.actor.0, by.request_id, filter, now).await?)
}

/// Sends the failed pushes `filter` selects again and records it as `actor`, in one transaction (the API, the page
/// and `hattrick redrive pushes`). `filter` is valid (`PushRedrive::problems` is empty).
pub async fn audited_push_redrive(
    pool: &db::Pool,
    actor: &str,
    request_id: Option<&str>,
    filter: &PushRedrive,
    now: DateTime<Utc>,
) -> Result<PushesRedriven, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = domain::redrive::redrive_pushes(&mut tx, filter, now).await?;
    let entry = Entry {
        actor,
        action: "push.redrive",
        target: filter.campaign_id.map(|c| format!("campaign {c}")).unwrap_or_else(|| "outbox".to_owned()),
        details: serde_json::json!({ "filter": filter, "result": done }),
        request_id,
    };
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    Ok(done)
}

/// What a run redrive did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunsRedriven {
    /// The latest failed run of each job the filter selected.
    pub failed: Vec<FailedRun>,
    /// The runs started, one per job.
    pub started: Vec<RunStarted>,
    /// Jobs not started, with why (already running, or not a job of this binary).
    pub skipped: Vec<SkippedJob>,
}

/// A job a redrive did not start.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SkippedJob {
    /// The job.
    pub job: String,
    /// Why.
    pub reason: String,
}

/// Runs again, once each, the jobs whose failed runs `filter` selects, and records it; shared by the API and the
/// page. Each run started is recorded as `job.run` with its claim, the whole as `run.redrive`.
pub async fn redrive_runs(admin: &Admin, by: By<'_>, filter: &RunRedrive) -> Result<RunsRedriven, ApiError> {
    let problems = filter.problems();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let failed = domain::redrive::failed_runs(admin.pool(), filter).await?;
    let (mut started, mut skipped) = (Vec::new(), Vec::new());
    for run in &failed {
        if !admin.engine.registry().contains(&run.job) {
            skipped.push(SkippedJob { job: run.job.clone(), reason: "not a job of this binary".to_owned() });
            continue;
        }
        match start_run(admin, by, &run.job, RunQuery::default()).await {
            Ok(run) => started.push(run),
            Err(error) if error.status == axum::http::StatusCode::CONFLICT => {
                skipped.push(SkippedJob { job: run.job.clone(), reason: "already running".to_owned() });
            }
            Err(error) => return Err(error),
        }
    }
    let now = admin.engine.clock().now();
    let entry = Entry {
        actor: &by.actor.0,
        action: "run.redrive",
        target: failed.iter().map(|r| r.job.as_str()).collect::<Vec<_>>().join(","),
        details: serde_json::json!({
            "filter": filter,
            "failed_runs": failed.iter().map(|r| r.run_id).collect::<Vec<_>>(),
            "started": started.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        }),
        request_id: by.request_id,
    };
    let mut tx = admin.pool().begin().await?;
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    Ok(RunsRedriven { failed, started, skipped })
}

/// Pauses or resumes a job for every instance and records it; shared by the API and the page. Returns whether
/// the state changed.
pub async fn set_paused(admin: &Admin, by: By<'_>, name: &str, paused: bool) -> Result<bool, ApiError> {
    if !admin.engine.registry().contains(name) {
        return Err(ApiError::not_found(format!("no job {name}")));
    }
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let changed =
        engine::store::set_paused(db::unnamed(&mut tx), name, paused, now, &format!("admin:{}", by.actor.0)).await?;
    if changed {
        let entry = Entry {
            actor: &by.actor.0,
            action: if paused { "job.pause" } else { "job.resume" },
            target: name.to_owned(),
            details: serde_json::json!({}),
            request_id: by.request_id,
        };
        audit::record(&mut tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Validates and stores a campaign (shared by the API and the page): 422 with every problem and its path.
pub async fn create(admin: &Admin, by: By<'_>, draft: CampaignDraft) -> Result<Campaign, ApiError> {
    let now = admin.engine.clock().now();
    let problems =
        draft.problems(&admin.settings.zones, &admin.settings.content, now, admin.settings.campaign_stale_after);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let mut tx = admin.pool().begin().await?;
    let campaign = insert_campaign(&mut tx, &draft, now).await?;
    let entry = Entry {
        actor: &by.actor.0,
        action: "campaign.create",
        target: campaign.id.to_string(),
        details: serde_json::json!({
            "title_tr": draft.title_tr, "target_audience": draft.target_audience,
            "segment_filter": draft.segment_filter, "scheduled_at": draft.scheduled_at,
            "local_time": draft.local_time, "variants": draft.variants.0.len(), "holdout_percent": draft.holdout_percent,
        }),
        request_id: by.request_id,
    };
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    Ok(campaign)
}

/// Cancels a campaign (shared by the API and the page).
pub async fn cancel(admin: &Admin, by: By<'_>, id: Uuid) -> Result<u64, ApiError> {
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let pushes = match cancel_campaign(&mut tx, id).await? {
        Cancelled::Done { pushes } => pushes,
        Cancelled::Final(status) => {
            return Err(ApiError::conflict(format!("campaign {id} is {status} already")));
        }
        Cancelled::Unknown => return Err(ApiError::not_found(format!("no campaign {id}"))),
    };
    let entry = Entry {
        actor: &by.actor.0,
        action: "campaign.cancel",
        target: id.to_string(),
        details: serde_json::json!({"pushes_cancelled": pushes}),
        request_id: by.request_id,
    };
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    Ok(pushes)
}

/// Counts an audience (shared by the API and the page).
pub async fn audience(admin: &Admin, query: &AudienceQuery) -> Result<AudienceSize, ApiError> {
    let now = admin.engine.clock().now();
    // A transaction, not a bare connection: behind a pooler, a statement outside one may meet another server.
    let mut tx = admin.pool().begin().await?;
    let filter = query.segment_filter.as_ref().filter(|f| !f.is_null());
    let users = domain::campaign::audience_size(&mut tx, &query.target_audience, filter, &admin.settings.zones, now)
        .await
        .map_err(|error| match error {
            AudienceError::Invalid(problems) => ApiError::validation(problems),
            AudienceError::Database(error) => ApiError::from(error),
        })?;
    tx.commit().await?;
    Ok(AudienceSize { users })
}

/// Stores a validated campaign as `pending`; returns it.
async fn insert_campaign(
    tx: &mut sqlx::PgConnection,
    draft: &CampaignDraft,
    now: DateTime<Utc>,
) -> Result<Campaign, sqlx::Error> {
    sqlx::query_as!(
        Campaign,
        r#"INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en, deep_link_url, image_url,
             target_audience, segment_filter, scheduled_at, status, created_at, local_time, if_passed, variants,
             holdout_percent, conversion_event, conversion_window_hours)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14, $15, $16)
         RETURNING id, title_tr, title_en, body_tr, body_en, deep_link_url, image_url, target_audience, segment_filter,
                   scheduled_at, sent_at, status, recipient_count, success_count, failure_count, error, created_at,
                   local_time, if_passed, missed_count, coalesce(variants, '[]') AS "variants!: Variants",
                   holdout_percent, conversion_event, conversion_window_hours"#,
        &draft.title_tr,
        draft.title_en.as_deref(),
        &draft.body_tr,
        draft.body_en.as_deref(),
        draft.deep_link_url.as_deref(),
        draft.image_url.as_deref(),
        &draft.target_audience,
        draft.segment_filter.as_ref(),
        draft.scheduled_at.unwrap_or(now),
        now,
        draft.local_time,
        draft.if_passed.as_deref(),
        draft.variants.to_column(),
        draft.holdout_percent,
        draft.conversion_event.as_deref(),
        draft.conversion_window_hours,
    )
    .fetch_one(db::unnamed(tx))
    .await
}

/// What cancelling a campaign did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cancelled {
    /// It was pending or sending; its pending pushes are cancelled.
    Done {
        /// Outbox rows cancelled.
        pushes: u64,
    },
    /// It had finished already (its status).
    Final(String),
    /// No such campaign.
    Unknown,
}

/// Cancels a campaign that has not finished, and its pushes not yet sent. Waits for an expansion in progress
/// (it holds the campaign's row), so a cancelled campaign is never expanded afterwards.
async fn cancel_campaign(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<Cancelled, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar!("SELECT status FROM scheduled_notifications WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(db::unnamed(tx))
            .await?;
    match status.as_deref() {
        None => return Ok(Cancelled::Unknown),
        Some("pending" | "sending") => {}
        Some(other) => return Ok(Cancelled::Final(other.to_owned())),
    }
    sqlx::query!("UPDATE scheduled_notifications SET status = 'cancelled' WHERE id = $1", id)
        .execute(db::unnamed(tx))
        .await?;
    let pushes = sqlx::query!(
        "UPDATE push_outbox SET status = 'cancelled', last_error = 'campaign_cancelled'
         WHERE campaign_id = $1 AND status = 'pending'",
        id
    )
    .execute(db::unnamed(tx))
    .await?
    .rows_affected();
    Ok(Cancelled::Done { pushes })
}

/// Writes a deployment's push texts (each checked by `NewText::checked` first), in one transaction with their
/// audit entry: a whole locale file lands or nothing does. Returns how many replaced a text.
pub async fn audited_message_put(
    pool: &db::Pool,
    actor: &str,
    request_id: Option<&str>,
    texts: &[domain::messages::NewText],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut replaced = 0;
    for text in texts {
        replaced += usize::from(domain::messages::put(&mut tx, text, now).await?);
    }
    let mut targets: Vec<String> = texts.iter().map(|t| format!("{}/{}", t.kind, t.locale)).collect();
    targets.truncate(20);
    let entry = Entry {
        actor,
        action: "message.put",
        target: targets.join(","),
        details: serde_json::json!({ "texts": texts, "replaced": replaced }),
        request_id,
    };
    audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    Ok(replaced)
}

/// Removes a deployment's texts in `locale` (of one kind, or all), with their audit entry; the built-in text of
/// the locale, if any, applies again. Returns how many were removed (nothing is audited when none was).
pub async fn audited_message_remove(
    pool: &db::Pool,
    actor: &str,
    request_id: Option<&str>,
    kind: Option<&str>,
    locale: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let removed = domain::messages::remove(&mut tx, kind, locale).await?;
    if removed > 0 {
        let entry = Entry {
            actor,
            action: "message.remove",
            target: format!("{}/{locale}", kind.unwrap_or("*")),
            details: serde_json::json!({ "removed": removed }),
            request_id,
        };
        audit::record(&mut tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(removed)
}
