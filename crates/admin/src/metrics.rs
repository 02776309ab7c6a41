//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format 0.0.4).
//!
//! Counters of this instance (runs, pushes, FCM latency, HTTP requests) come from memory; Prometheus sums them
//! across instances. Facts of the shared database (job cursors and last successes, outbox depth and age) are read
//! at scrape time and are the same from every instance: aggregate them with `max`, not `sum`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use push::histogram::{BUCKETS, Histogram, HistogramSnapshot};

use crate::Admin;

/// Requests served, by route template and status, and their durations by route.
#[derive(Debug, Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl HttpStats {
    fn record(&self, route: &str, status: u16, elapsed: std::time::Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_owned(), status)).or_default() += 1;
        let histogram =
            Arc::clone(self.durations.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_owned()).or_default());
        histogram.observe(elapsed);
    }
}

/// Middleware counting every request under its route template (`/admin/jobs/{name}`), never the raw path, so
/// the series stay few.
pub async fn track(State(admin): State<Arc<Admin>>, request: axum::extract::Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    admin.http.record(&route, response.status().as_u16(), started.elapsed());
    response
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> Router<Arc<Admin>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// How long a readiness answer is reused: a flood of probes costs one query a second.
const READINESS_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// A value read from the database at most once per time-to-live. The lock is held while it is read, so a burst
/// of requests waits for one reading instead of taking the pool.
pub(crate) struct Cached<T>(tokio::sync::Mutex<Option<(Instant, T)>>);

impl<T: Clone> Cached<T> {
    /// Nothing read yet.
    pub(crate) fn new() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }

    /// The value, read by `read` unless the last reading is younger than `ttl`. A failed reading is not kept.
    async fn get<E, F>(&self, ttl: std::time::Duration, read: impl FnOnce() -> F) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        let mut cache = self.0.lock().await;
        if let Some((read_at, value)) = cache.as_ref()
            && read_at.elapsed() < ttl
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        *cache = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// Ready when the database answers and holds this binary's schema (asked at most once per [`READINESS_CACHE`]).
async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let answer = admin
        .readiness_cache
        .get(READINESS_CACHE, || async { Ok::<_, std::convert::Infallible>(readiness(&admin).await) });
    let Ok((status, text)) = answer.await;
    (status, text).into_response()
}

async fn readiness(admin: &Admin) -> (StatusCode, &'static str) {
    let stored: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar!("SELECT value FROM hattrick_schema_state WHERE key = 'schema_checksum'")
            .fetch_optional(admin.pool())
            .await;
    match stored {
        Ok(Some(checksum)) if checksum == db::migrate::schema_checksum() => (StatusCode::OK, "ready\n"),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "the database schema is not this version's\n"),
        Err(error) => {
            tracing::warn!(error = %error, "readiness: database not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "the database is not reachable\n")
        }
    }
}

async fn metrics(State(admin): State<Arc<Admin>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &admin.settings.metrics_token
        && !crate::auth::bearer(&headers).is_some_and(|presented| crate::auth::same_secret(token, presented))
    {
        return crate::error::ApiError::unauthorized("/metrics needs the metrics token (admin.metrics_token)")
            .into_response();
    }
    match render(&admin).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(error) => crate::error::ApiError::from(error).into_response(),
    }
}

/// Writes metric families in the text format.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = val.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{key}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        for (bound, count) in BUCKETS.iter().zip(&snapshot.cumulative) {
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, *count as f64);
        }
        let mut with_inf = labels.to_vec();
        with_inf.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_inf, snapshot.count as f64);
        self.sample(&format!("{name}_sum"), labels, snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), labels, snapshot.count as f64);
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// The whole exposition.
pub async fn render(admin: &Admin) -> Result<String, sqlx::Error> {
    let mut out = Text::default();
    let build = &admin.settings.build;
    out.family("hattrick_build_info", "gauge", "Always 1; the labels say which release and commit this instance runs.");
    out.sample("hattrick_build_info", &[("version", &build.version), ("commit", &build.commit)], 1.0);

    // Runs of this instance.
    let runs = admin.engine.stats().snapshot();
    out.family("hattrick_job_runs_total", "counter", "Runs (and recorded ticks) by job, trigger and outcome.");
    for ((job, trigger, outcome), totals) in &runs {
        out.sample(
            "hattrick_job_runs_total",
            &[("job", job), ("trigger", trigger), ("outcome", outcome.as_str())],
            totals.count as f64,
        );
    }
    out.family("hattrick_job_run_seconds_total", "counter", "Time spent running, by job, trigger and outcome.");
    for ((job, trigger, outcome), totals) in &runs {
        out.sample(
            "hattrick_job_run_seconds_total",
            &[("job", job), ("trigger", trigger), ("outcome", outcome.as_str())],
            totals.duration.as_secs_f64(),
        );
    }
    out.family("hattrick_job_items_total", "counter", "Items handled by runs, by job, trigger and outcome.");
    for ((job, trigger, outcome), totals) in &runs {
        out.sample(
            "hattrick_job_items_total",
            &[("job", job), ("trigger", trigger), ("outcome", outcome.as_str())],
            totals.items as f64,
        );
    }

    // Facts of the shared database, read at most once per `metrics_cache` whatever the number of scrapers.
    out.0.push_str(&database_gauges(admin).await?);

    // Pushes sent by this instance: its dispatcher's, or an API-only instance's test sends.
    {
        let dispatcher = admin.dispatcher.as_ref().unwrap_or(&admin.test_sender);
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &dispatcher.stats;
        out.family("hattrick_push_messages_total", "counter", "Messages (one per device) by outcome.");
        for (outcome, counter) in
            [("delivered", &stats.delivered), ("failed", &stats.failed), ("retried", &stats.retried)]
        {
            out.sample("hattrick_push_messages_total", &[("outcome", outcome)], counter.load(Relaxed) as f64);
        }
        out.family("hattrick_push_rows_total", "counter", "Outbox rows ended or held by this dispatcher.");
        for (status, counter) in [("sent", &stats.rows_sent), ("other", &stats.rows_other), ("held", &stats.rows_held)]
        {
            out.sample("hattrick_push_rows_total", &[("status", status)], counter.load(Relaxed) as f64);
        }
        out.family("hattrick_push_tokens_deactivated_total", "counter", "Device tokens deactivated (unregistered).");
        out.sample("hattrick_push_tokens_deactivated_total", &[], stats.deactivated.load(Relaxed) as f64);
        out.family(
            "hattrick_push_errors_total",
            "counter",
            "FCM errors by code (OAUTH and THIRD_PARTY_AUTH_ERROR open the circuit breaker).",
        );
        let errors = stats.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        for (code, count) in errors {
            // A code may carry detail after a colon; the label keeps the code only.
            let code = code.split(':').next().unwrap_or_default().trim().to_owned();
            *by_code.entry(code).or_default() += count;
        }
        for (code, count) in &by_code {
            out.sample("hattrick_push_errors_total", &[("code", code)], *count as f64);
        }
        out.family("hattrick_fcm_request_seconds", "histogram", "Time FCM took to answer a send.");
        out.histogram("hattrick_fcm_request_seconds", &[], &stats.latency.snapshot());
    }

    // This server's own requests.
    let requests = admin.http.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
    out.family("hattrick_http_requests_total", "counter", "Admin server requests by route and status.");
    for ((route, status), count) in &requests {
        out.sample("hattrick_http_requests_total", &[("route", route), ("status", &status.to_string())], *count as f64);
    }
    let durations: Vec<(String, Arc<Histogram>)> = admin
        .http
        .durations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(route, h)| (route.clone(), Arc::clone(h)))
        .collect();
    out.family("hattrick_http_request_seconds", "histogram", "Admin server request durations by route.");
    for (route, histogram) in durations {
        out.histogram("hattrick_http_request_seconds", &[("route", &route)], &histogram.snapshot());
    }
    Ok(out.0)
}

/// The gauges read from the shared database (jobs and the outbox), from the cache while it is fresh.
async fn database_gauges(admin: &Admin) -> Result<String, sqlx::Error> {
    admin.metrics_cache.get(admin.settings.metrics_cache, || read_database_gauges(admin)).await
}

async fn read_database_gauges(admin: &Admin) -> Result<String, sqlx::Error> {
    let mut out = Text::default();
    let now = admin.engine.clock().now();
    // Jobs, as stored in the shared database.
    let jobs = crate::data::jobs(&admin.engine, admin.pool(), now).await?;
    out.family("hattrick_job_paused", "gauge", "1 when the job is paused (0 active; disabled jobs are absent).");
    for job in jobs.iter().filter(|j| j.state != "disabled") {
        out.sample("hattrick_job_paused", &[("job", &job.name)], f64::from(u8::from(job.state == "paused")));
    }
    out.family("hattrick_job_running", "gauge", "1 while a run of the job is in progress on any instance.");
    for job in &jobs {
        out.sample("hattrick_job_running", &[("job", &job.name)], f64::from(u8::from(job.running)));
    }
    out.family("hattrick_job_last_success_timestamp_seconds", "gauge", "When the job last succeeded.");
    for job in &jobs {
        if let Some(at) = job.last_success_at {
            out.sample("hattrick_job_last_success_timestamp_seconds", &[("job", &job.name)], seconds(at));
        }
    }
    let active: Vec<_> = jobs.iter().filter(|j| j.state == "active").collect();
    out.family(
        "hattrick_job_cursor_timestamp_seconds",
        "gauge",
        "Every tick of the job up to this time is accounted for (run, skipped or missed).",
    );
    for job in &active {
        if let Some(cursor) = job.cursor {
            out.sample("hattrick_job_cursor_timestamp_seconds", &[("job", &job.name)], seconds(cursor));
        }
    }
    out.family(
        "hattrick_job_expected_tick_timestamp_seconds",
        "gauge",
        "The job's latest scheduled tick at or before now; above the cursor for long means a tick was not run.",
    );
    for job in &active {
        if let Some(expected) = job.latest_tick {
            out.sample("hattrick_job_expected_tick_timestamp_seconds", &[("job", &job.name)], seconds(expected));
        }
    }

    // The outbox, as stored.
    let outbox = crate::data::outbox(admin.pool(), now, 0).await?;
    out.family("hattrick_outbox_pending", "gauge", "Outbox rows waiting to be sent (due now or later).");
    out.sample("hattrick_outbox_pending", &[], outbox.pending as f64);
    out.family("hattrick_outbox_due", "gauge", "Outbox rows due now and not sent yet.");
    out.sample("hattrick_outbox_due", &[], outbox.due as f64);
    out.family(
        "hattrick_outbox_sending",
        "gauge",
        "Outbox rows an earlier release left claimed (sending); rounds today hold their rows pending and locked.",
    );
    out.sample("hattrick_outbox_sending", &[], outbox.sending as f64);
    out.family("hattrick_outbox_oldest_due_seconds", "gauge", "Age of the oldest due outbox row.");
    out.sample("hattrick_outbox_oldest_due_seconds", &[], outbox.oldest_due_seconds);

    Ok(out.0)
}
