//! hattrick's operator surface (SECURITY.md), served by `hattrick serve` in the `api` role:
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

pub mod actions;
pub mod api;
pub mod audit;
pub mod auth;
pub mod data;
pub mod error;
pub mod guard;
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

/// The longest request id a client may send; a longer one (or one with other characters than letters, digits and
/// `-_.:`) is replaced by the server's own.
pub const MAX_REQUEST_ID: usize = 128;

/// Drops a client's request id that is too long or holds characters a log line should not carry, so the server
/// sets its own.
async fn bound_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let acceptable = request.headers().get(REQUEST_ID).is_none_or(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    if !acceptable {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

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
    pub zones: domain::DayZones,
    /// A campaign scheduled further in the past than this is refused (it would never be sent).
    pub campaign_stale_after: Duration,
    /// The binary's version and git commit, exported as `hattrick_build_info`.
    pub build: BuildInfo,
    /// Host names (without port) the server answers to besides loopback ones, when tokens are set. Empty: any
    /// host, once authenticated. A server without tokens answers loopback names only, whatever this says.
    pub allowed_hosts: Vec<String>,
    /// Mark the page's cookie `Secure` and send `Strict-Transport-Security`: set when a TLS proxy is in front.
    pub secure_cookies: bool,
    /// A client must send a request's headers within this; a connection idle this long is closed.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the listen queue.
    pub max_connections: usize,
    /// A bearer token `/metrics` requires, if set.
    pub metrics_token: Option<String>,
    /// How long the database gauges of `/metrics` are reused before they are read again.
    pub metrics_cache: Duration,
    /// Every API and page query is cancelled by the server after this.
    pub statement_timeout: Duration,
    /// Failed sign-ins from one address allowed per minute; more are answered 429.
    pub sign_in_attempts: u32,
    /// What campaign and test-push content may carry (deep-link schemes).
    pub content: push::ContentRules,
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
    /// Settings with the given tokens and defaults otherwise (64 KiB bodies, 30 s requests, 12 h sessions, 10 s
    /// to send headers, 256 connections, 10 s statements, 10 failed sign-ins a minute per address).
    pub fn new(tokens: Vec<AdminToken>, zones: domain::DayZones) -> Self {
        Self {
            tokens,
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            zones,
            campaign_stale_after: domain::campaign::STALE_AFTER,
            build: BuildInfo::default(),
            allowed_hosts: Vec::new(),
            secure_cookies: false,
            header_timeout: Duration::from_secs(10),
            max_connections: 256,
            metrics_token: None,
            metrics_cache: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            sign_in_attempts: 10,
            content: push::ContentRules::default(),
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
    /// The engine's connections, with the API's statement timeout.
    pool: db::Pool,
    /// The database gauges of `/metrics` and when they were read.
    metrics_cache: metrics::Cached<String>,
    /// The last readiness answer and when it was found.
    readiness_cache: metrics::Cached<(StatusCode, &'static str)>,
    /// Failed sign-ins by client address.
    pub sign_ins: guard::SignInLimiter,
}

impl Admin {
    /// The admin server of an instance.
    pub fn new(
        engine: Arc<engine::Engine>,
        dispatcher: Option<Arc<push::Dispatcher>>,
        test_sender: Arc<push::Dispatcher>,
        settings: AdminSettings,
    ) -> Self {
        let pool = engine.pool().with_statement_timeout(settings.statement_timeout);
        Self {
            pool,
            metrics_cache: metrics::Cached::new(),
            readiness_cache: metrics::Cached::new(),
            sign_ins: guard::SignInLimiter::default(),
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

    /// The database pool of API and page queries: the engine's connections, each statement cancelled after
    /// `statement_timeout`.
    pub fn pool(&self) -> &db::Pool {
        &self.pool
    }
}

/// An admin server that would be reachable from other machines without a token.
#[derive(Debug, thiserror::Error)]
#[error(
    "admin.listen: {0} is reachable from other machines and no admin token is set (HATTRICK_ADMIN_TOKEN or \
     admin.tokens); listen on 127.0.0.1 or set a token"
)]
pub struct Exposed(pub SocketAddr);

/// Refuses to expose `/admin` beyond this machine without a token (SECURITY.md).
pub fn check_exposure(addr: SocketAddr, tokens: &[AdminToken]) -> Result<(), Exposed> {
    if tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(Exposed(addr));
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
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&admin), guard::reject_unstorable))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&admin), guard::guard))
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
        .layer(axum::middleware::map_request(bound_request_id))
}

/// Serves `admin` on `listener` until `shutdown`, then, within `grace`, lets requests in flight and the runs
/// started from the API finish (those are asked to stop at once).
///
/// HTTP/1.1 only (a TLS proxy in front speaks HTTP/2 to clients). Each connection must send its request headers
/// within `header_timeout`, from the first byte on (a connection that sends nothing, or stays idle between
/// requests, is closed after it too), and at most `max_connections` are served at once: a slow or greedy client
/// holds a slot for a bounded time and cannot starve the others.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let app = router(Arc::clone(&admin));
    let slots = Arc::new(tokio::sync::Semaphore::new(admin.settings.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(admin.settings.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted: wait a little.
                    tracing::warn!(error = %error, "admin server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(guard::ClientAddr(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "admin server: connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // One deadline for everything: runs started from the API are asked to stop now, requests in flight finish.
    admin.shutdown.cancel();
    admin.runs.close();
    let drained = async {
        graceful.shutdown().await;
        admin.runs.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("admin requests or runs started from the API still running at shutdown");
    }
    Ok(())
}
