//! The fake FCM (docs/push.md "Fake FCM"): the OAuth token endpoint and `messages:send` of FCM HTTP v1 on a local
//! socket, over HTTP/1.1 and h2c, with fault injection and counts of what it accepted. Tests, benchmarks and the
//! demo send to it through the real transport; users point a staging instance at it.
//!
//! It signs nothing: it verifies. The service-account file it writes holds its built-in test key (a key made for
//! this fake and published with hattrick, worthless anywhere else); the token endpoint accepts only JWTs signed by
//! that key, with the file's `client_email` as issuer and the endpoint as audience.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::oauth::{FCM_SCOPE, ServiceAccount, pem_to_der, unix_now};

/// The fake's built-in key (PKCS#8 PEM): a test key, published on purpose.
pub const FAKE_KEY_PEM: &str = include_str!("../keys/fake-fcm.pem");

/// Another key, which the fake does not trust (for tests of a wrong key).
pub const WRONG_KEY_PEM: &str = include_str!("../keys/wrong.pem");

/// The project the fake serves.
pub const FAKE_PROJECT: &str = "hattrick-fake";

/// The service account the fake trusts.
pub const FAKE_CLIENT_EMAIL: &str = "hattrick@hattrick-fake.iam.gserviceaccount.com";

/// Faults and behaviour of a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Tokens starting with this are `UNREGISTERED` (404).
    pub unregistered_prefix: Option<String>,
    /// Tokens starting with this are `INVALID_ARGUMENT` about the token (400).
    pub invalid_prefix: Option<String>,
    /// Tokens starting with this get `THIRD_PARTY_AUTH_ERROR` (401).
    pub auth_error_prefix: Option<String>,
    /// Share of sends answered 429 `QUOTA_EXCEEDED` with `Retry-After` (0..1).
    pub rate_429: f64,
    /// Share of sends answered 503 `UNAVAILABLE` (0..1).
    pub rate_503: f64,
    /// The `Retry-After` seconds sent with 429 and 503.
    pub retry_after_secs: u64,
    /// Added to every send.
    pub latency: Duration,
    /// Lifetime of the access tokens it issues.
    pub token_lifetime: Duration,
    /// Seed of the fault sequence (faults are a deterministic function of the request number).
    pub seed: u64,
    /// A bearer token accepted without a grant (for load generators such as h2load).
    pub static_token: Option<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            unregistered_prefix: None,
            invalid_prefix: None,
            auth_error_prefix: None,
            rate_429: 0.0,
            rate_503: 0.0,
            retry_after_secs: 1,
            latency: Duration::ZERO,
            token_lifetime: Duration::from_secs(3600),
            seed: 1,
            static_token: None,
        }
    }
}

/// What a fake received, as `GET /_fake/stats` reports it.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct FakeStats {
    /// Messages accepted (200).
    pub accepted: u64,
    /// Accepted messages per token.
    pub per_token: HashMap<String, u64>,
    /// Notifications a device would show: accepted messages, with the repeats of one (token, collapse key)
    /// folded into one, as Android's tag, `apns-collapse-id` and web push's `Topic` fold them.
    pub visible: u64,
    /// Accepted messages per `fcm_options.analytics_label` (`-` for none), as the Firebase console reports them.
    pub per_label: BTreeMap<String, u64>,
    /// Refused sends per error code.
    pub errors: BTreeMap<String, u64>,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Token grants refused (bad signature, issuer, audience, scope or expiry).
    pub grants_refused: u64,
}

struct Shared {
    config: FakeConfig,
    public_key: Vec<u8>,
    token_uri: String,
    issued: Mutex<HashMap<String, Instant>>,
    stats: Mutex<FakeStats>,
    /// (token, collapse key) pairs seen in accepted messages.
    shown: Mutex<HashSet<(String, String)>>,
    requests: AtomicU64,
}

/// A running fake.
#[derive(Debug)]
pub struct FakeFcm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).field("token_uri", &self.token_uri).finish()
    }
}

impl FakeFcm {
    /// Serves on `listener` until dropped.
    pub fn start(listener: TcpListener, config: FakeConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let der = pem_to_der(FAKE_KEY_PEM).ok_or_else(|| std::io::Error::other("built-in key is not PEM"))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            config,
            public_key: key.public_key().as_ref().to_vec(),
            token_uri: format!("http://{addr}/token"),
            issued: Mutex::new(HashMap::new()),
            stats: Mutex::new(FakeStats::default()),
            shown: Mutex::new(HashSet::new()),
            requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/token", post(grant))
            .route("/computeMetadata/v1/instance/service-accounts/default/token", get(metadata_token))
            .route("/computeMetadata/v1/project/project-id", get(metadata_project))
            .route("/v1/projects/{project}/messages:send", post(send))
            .route("/_fake/stats", get(stats))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake FCM stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Binds `addr` (port 0 picks one) and serves.
    pub async fn bind(addr: &str, config: FakeConfig) -> std::io::Result<Self> {
        Self::start(TcpListener::bind(addr).await?, config)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The FCM endpoint to configure (`http://ADDR`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fake also plays a Google metadata server: the `GCE_METADATA_HOST` to configure (`ADDR`).
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// A service-account key file's JSON that the fake accepts (its `token_uri` points here).
    pub fn service_account_json(&self) -> String {
        ServiceAccount::to_json(FAKE_PROJECT, FAKE_CLIENT_EMAIL, &self.shared.token_uri, FAKE_KEY_PEM)
    }

    /// The same file signed with a key the fake does not trust.
    pub fn wrong_service_account_json(&self) -> String {
        ServiceAccount::to_json(FAKE_PROJECT, FAKE_CLIENT_EMAIL, &self.shared.token_uri, WRONG_KEY_PEM)
    }

    /// A snapshot of what it received.
    pub fn stats(&self) -> FakeStats {
        lock(&self.shared.stats).clone()
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn google_error(status: StatusCode, canonical: &str, fcm_code: Option<&str>, message: &str) -> Response {
    let mut details = vec![];
    if let Some(code) = fcm_code {
        details.push(json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code }));
    }
    if fcm_code == Some("INVALID_ARGUMENT") && message.contains("registration token") {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": "message.token", "description": message }],
        }));
    }
    let body =
        json!({ "error": { "code": status.as_u16(), "message": message, "status": canonical, "details": details } });
    (status, axum::Json(body)).into_response()
}

/// A fresh access token the fake's FCM accepts, as a token endpoint answers.
fn issue(shared: &Shared) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let token = format!("fake-access-{n}-{}", unix_now());
    lock(&shared.issued).insert(token.clone(), Instant::now() + shared.config.token_lifetime);
    lock(&shared.stats).tokens_issued += 1;
    axum::Json(json!({
        "access_token": token,
        "expires_in": shared.config.token_lifetime.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

/// Whether a metadata request carries the header Google's metadata server requires.
fn metadata_flavored(headers: &axum::http::HeaderMap) -> bool {
    headers.get("metadata-flavor").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"))
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/token`: the workload's token, as a Google VM's or a
/// GKE workload's metadata server hands it out (403 without `Metadata-Flavor: Google`, as the real one).
async fn metadata_token(State(shared): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    if !metadata_flavored(&headers) {
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
    }
    issue(&shared)
}

/// `GET /computeMetadata/v1/project/project-id`.
async fn metadata_project(headers: axum::http::HeaderMap) -> Response {
    if !metadata_flavored(&headers) {
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
    }
    FAKE_PROJECT.into_response()
}

/// `POST /token`: the JWT bearer grant.
async fn grant(State(shared): State<Arc<Shared>>, body: String) -> Response {
    match check_grant(&shared, &body) {
        Ok(()) => issue(&shared),
        Err(reason) => {
            lock(&shared.stats).grants_refused += 1;
            (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant", "error_description": reason })))
                .into_response()
        }
    }
}

fn form_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn check_grant(shared: &Shared, body: &str) -> Result<(), String> {
    let grant_type = form_value(body, "grant_type").unwrap_or_default().replace("%3A", ":").replace("%3a", ":");
    if grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return Err(format!("unsupported grant_type {grant_type:?}"));
    }
    // Some clients pad their base64url (`=` arrives as %3D): accept it.
    let assertion = form_value(body, "assertion").ok_or("no assertion")?.replace("%3D", "").replace("%3d", "");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else { return Err("the assertion is not a JWT".into()) };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|e| e.to_string());
    let signature = decode(signature)?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &shared.public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "bad signature: the assertion was not signed by this fake's key".to_owned())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    if claims["iss"] != FAKE_CLIENT_EMAIL {
        return Err(format!("unknown issuer {}", claims["iss"]));
    }
    if claims["aud"] != shared.token_uri.as_str() {
        return Err(format!("wrong audience {}", claims["aud"]));
    }
    if !claims["scope"].as_str().unwrap_or_default().split(' ').any(|s| s == FCM_SCOPE) {
        return Err("the scope does not include firebase.messaging".into());
    }
    if claims["exp"].as_u64().unwrap_or(0) <= unix_now() {
        return Err("the assertion has expired".into());
    }
    Ok(())
}

/// A deterministic number in [0, 1) for request `n` (splitmix64).
fn unit(seed: u64, n: u64) -> f64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `POST /v1/projects/{project}/messages:send`.
async fn send(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let config = &shared.config;
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let refuse = |status: StatusCode, canonical: &str, code: Option<&str>, message: &str| {
        *lock(&shared.stats).errors.entry(code.unwrap_or(canonical).to_owned()).or_default() += 1;
        google_error(status, canonical, code, message)
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let valid = config.static_token.as_deref() == Some(bearer)
        || lock(&shared.issued).get(bearer).is_some_and(|expires| Instant::now() < *expires);
    if !valid {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials.",
        );
    }
    if project != FAKE_PROJECT {
        return refuse(StatusCode::FORBIDDEN, "PERMISSION_DENIED", None, "Permission denied on this project.");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), "Invalid JSON payload.");
    };
    let message = &request["message"];
    let Some(token) = message["token"].as_str().filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The message has no target.",
        );
    };
    if let Some(data) = message.get("data").and_then(Value::as_object)
        && data.values().any(|v| !v.is_string())
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "data values must be strings.",
        );
    }
    if let Err(problem) = check_options(message) {
        return refuse(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), &problem);
    }
    let starts = |prefix: &Option<String>| prefix.as_deref().is_some_and(|p| token.starts_with(p));
    if starts(&config.unregistered_prefix) {
        return refuse(StatusCode::NOT_FOUND, "NOT_FOUND", Some("UNREGISTERED"), "Requested entity was not found.");
    }
    if starts(&config.invalid_prefix) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        );
    }
    if starts(&config.auth_error_prefix) {
        return refuse(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), "APNs auth error.");
    }
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let draw = unit(config.seed, n);
    let retry_after = [(header::RETRY_AFTER, config.retry_after_secs.to_string())];
    if draw < config.rate_429 {
        let response =
            refuse(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "Quota exceeded.");
        return (retry_after, response).into_response();
    }
    if draw < config.rate_429 + config.rate_503 {
        let response =
            refuse(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", Some("UNAVAILABLE"), "Service unavailable.");
        return (retry_after, response).into_response();
    }
    {
        let collapse = collapse_id(message);
        let first = collapse.is_none_or(|key| lock(&shared.shown).insert((token.to_owned(), key.to_owned())));
        let label = message["fcm_options"]["analytics_label"].as_str().unwrap_or("-");
        let mut stats = lock(&shared.stats);
        stats.accepted += 1;
        stats.visible += u64::from(first);
        *stats.per_token.entry(token.to_owned()).or_default() += 1;
        *stats.per_label.entry(label.to_owned()).or_default() += 1;
    }
    axum::Json(json!({ "name": format!("projects/{project}/messages/{n}") })).into_response()
}

/// The identifier a device folds this message's repeats by: Android's notification tag, else `apns-collapse-id`,
/// else web push's `Topic`.
fn collapse_id(message: &Value) -> Option<&str> {
    message["android"]["notification"]["tag"]
        .as_str()
        .or_else(|| message["apns"]["headers"]["apns-collapse-id"].as_str())
        .or_else(|| message["webpush"]["headers"]["Topic"].as_str())
}

/// FCM's rules for the platform options hattrick sets: `apns-collapse-id` at most 64 bytes, web push `Topic` at
/// most 32 characters of the URL-safe base64 alphabet, `analytics_label` 1 to 50 of `[A-Za-z0-9-_.~%]`.
fn check_options(message: &Value) -> Result<(), String> {
    if let Some(id) = message["apns"]["headers"]["apns-collapse-id"].as_str()
        && id.len() > 64
    {
        return Err("apns-collapse-id must not exceed 64 bytes.".into());
    }
    if let Some(topic) = message["webpush"]["headers"]["Topic"].as_str()
        && (topic.len() > 32 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err("Topic must be at most 32 characters from the URL and filename-safe Base64 alphabet.".into());
    }
    if let Some(label) = message.get("fcm_options").map(|o| &o["analytics_label"]) {
        let valid = label.as_str().is_some_and(|l| {
            (1..=crate::message::ANALYTICS_LABEL_CHARS).contains(&l.chars().count())
                && l.chars().all(crate::message::valid_label_char)
        });
        if !valid {
            return Err(format!("Invalid analytics_label: {label}"));
        }
    }
    Ok(())
}

/// `GET /_fake/stats`.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(lock(&shared.stats).clone()).into_response()
}
