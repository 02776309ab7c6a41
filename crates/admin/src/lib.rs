//! hattrick's operator surface (SPEC 5), served by `hattrick serve` in the `api` role:
//!
//! - `/healthz` (the process answers) and `/readyz` (the database answers and its schema is this binary's);
//! - `/metrics`: Prometheus text: runs, durations, items and failures per job and trigger, job cursors and
//!   last successes, outbox depth and age, pushes by outcome, FCM latency, HTTP requests ([`metrics`]);
//! - `/admin/...`: the JSON API, bearer-token authenticated, documented by `/admin/openapi.json` generated from
//!   the handlers ([`api`]);
//! - `/admin/ui/...`: server-rendered pages for the same, signed in with a cookie, forms protected by a CSRF
//!   token ([`ui`]).
//!
//! Every write is done on behalf of a named admin token and recorded in `hattrick_audit_log` in the same
//! transaction as the change where the change is a database write ([`audit`]).

pub mod api;
pub mod audit;
pub mod auth;
pub mod data;
pub mod error;
pub mod metrics;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::AdminToken;

/// The header carrying each request's id (set when the client sends none, echoed in the response, logged).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id (set by the server when the client sent none), for logs and the audit log.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// How the admin server behaves.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The admin tokens, by name: each write is recorded with the name of the token that made it.
    pub tokens: Vec<AdminToken>,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// A request taking longer is answered 408.
    pub request_timeout: Duration,
    /// How long a sign-in cookie of the admin page stays valid.
    pub session_ttl: Duration,
    /// Users' zones (campaign audience previews count `days_since_*` in them).
    pub zones: rewards::DayZones,
    /// A campaign scheduled further in the past than this is refused (it would never be sent).
    pub campaign_stale_after: Duration,
    /// The binary's version and git commit, exported as `hattrick_build_info`.
    pub build: BuildInfo,
}

/// What `hattrick_build_info` says about the running binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The release (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The git commit it was built from, or `unknown`.
    pub commit: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        Self { version: env!("CARGO_PKG_VERSION").to_owned(), commit: "unknown".to_owned() }
    }
}

impl AdminSettings {
    /// Settings with the given tokens and defaults otherwise (64 KiB bodies, 30 s requests, 12 h sessions).
    pub fn new(tokens: Vec<AdminToken>, zones: rewards::DayZones) -> Self {
        Self {
            tokens,
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            zones,
            campaign_stale_after: rewards::campaigns::STALE_AFTER,
            build: BuildInfo::default(),
        }
    }
}

/// What the admin server works with: the instance's engine, its dispatcher (for metrics and test sends) and
/// the counters of its own requests.
pub struct Admin {
    /// The instance's engine (registry, clock, pool, run statistics).
    pub engine: Arc<engine::Engine>,
    /// The dispatcher running in this instance, if any: its counters are exported.
    pub dispatcher: Option<Arc<push::Dispatcher>>,
    /// Sends test pushes (the running dispatcher, or one that only sends on request).
    pub test_sender: Arc<push::Dispatcher>,
    /// Settings.
    pub settings: AdminSettings,
    /// Requests by route and status, and their durations.
    pub http: metrics::HttpStats,
    /// Cancels runs started from the API when the server stops.
    pub shutdown: CancellationToken,
    /// The runs started from the API, awaited at shutdown.
    pub runs: tokio_util::task::TaskTracker,
    /// The page's identity when no token is configured.
    anonymous: AdminToken,
}

impl Admin {
    /// The admin server of an instance.
    pub fn new(
        engine: Arc<engine::Engine>,
        dispatcher: Option<Arc<push::Dispatcher>>,
        test_sender: Arc<push::Dispatcher>,
        settings: AdminSettings,
    ) -> Self {
        Self {
            engine,
            dispatcher,
            test_sender,
            settings,
            http: metrics::HttpStats::default(),
            shutdown: CancellationToken::new(),
            runs: tokio_util::task::TaskTracker::new(),
            anonymous: AdminToken {
                name: "anonymous".to_owned(),
                secret: format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()),
            },
        }
    }

    /// The tokens the page accepts: the configured ones, or (on a loopback-only server without tokens) an
    /// `anonymous` one whose secret is this process's own, so its forms still carry CSRF tokens.
    pub fn ui_tokens(&self) -> Vec<AdminToken> {
        if self.settings.tokens.is_empty() { vec![self.anonymous.clone()] } else { self.settings.tokens.clone() }
    }

    /// The database pool.
    pub fn pool(&self) -> &db::Pool {
        self.engine.pool()
    }
}

/// Refuses to expose `/admin` beyond this machine without a token (SPEC 5).
pub fn check_exposure(addr: SocketAddr, tokens: &[AdminToken]) -> Result<(), String> {
    if tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "admin.listen: {addr} is reachable from other machines and no admin token is set \
             (HATTRICK_ADMIN_TOKEN or admin.tokens); listen on 127.0.0.1 or set a token"
        ));
    }
    Ok(())
}

/// The whole server: health, metrics, the JSON API and the pages, with request ids, tracing, body limits and
/// timeouts.
pub fn router(admin: Arc<Admin>) -> Router {
    let (api, _) = api::routes().split_for_parts();
    let api = api.route_layer(axum::middleware::from_fn_with_state(Arc::clone(&admin), auth::require_bearer));
    let settings = &admin.settings;
    Router::new()
        .merge(api)
        .merge(ui::router())
        .merge(metrics::router())
        .with_state(Arc::clone(&admin))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&admin), metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(settings.body_limit))
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Serves `admin` on `listener` until `shutdown`, then waits (up to `grace`) for runs started from the API.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&admin));
    let stop = shutdown.clone();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    admin.shutdown.cancel();
    admin.runs.close();
    if tokio::time::timeout(grace, admin.runs.wait()).await.is_err() {
        tracing::warn!("runs started from the admin API still running at shutdown");
    }
    Ok(())
}
