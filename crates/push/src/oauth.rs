//! FCM's OAuth access tokens (docs/push.md "Transports"), from the credentials Google deployments provide
//! ([`Credentials`]): a service-account key (an RS256 JWT bearer grant to the key's `token_uri`), or the metadata
//! server of a Google VM or a Kubernetes workload with Workload Identity. Tokens are cached and refreshed before
//! they expire.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The scope FCM sending needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// How long before its expiry a cached token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A problem with the key file or the token endpoint. Never carries the key or a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key file cannot be read or parsed.
    #[error("service account file {path}: {reason}")]
    KeyFile {
        /// Which file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token endpoint refused the grant or could not be reached.
    #[error("token endpoint {uri}: {reason}")]
    Token {
        /// The endpoint.
        uri: String,
        /// Its answer, without secrets.
        reason: String,
    },
}

/// The fields hattrick reads from a Google service-account key file.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase project.
    pub project_id: String,
    /// The account (the JWT's issuer).
    pub client_email: String,
    /// Where to exchange the JWT for an access token.
    pub token_uri: String,
    /// PKCS#8 RSA private key, PEM.
    private_key: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// What is wrong with a service account key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl ServiceAccount {
    /// Reads and checks a key file (the key must parse).
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let fail = |reason: String| AuthError::KeyFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::from_json(&text).map_err(|e| fail(e.0))
    }

    /// Parses a key file's JSON.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let account: ServiceAccount =
            serde_json::from_str(text).map_err(|e| KeyError(format!("not a service account key file: {e}")))?;
        account.key_pair()?;
        Ok(account)
    }

    /// A key file's JSON for `project` with the PKCS#8 PEM `private_key` (used by the fake FCM).
    pub fn to_json(project: &str, client_email: &str, token_uri: &str, private_key_pem: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": "hattrick-fake",
            "private_key": private_key_pem,
            "client_email": client_email,
            "token_uri": token_uri,
        })
        .to_string()
    }

    fn key_pair(&self) -> Result<RsaKeyPair, KeyError> {
        let der = pem_to_der(&self.private_key).ok_or_else(|| KeyError("private_key is not a PEM block".into()))?;
        RsaKeyPair::from_pkcs8(&der).map_err(|e| KeyError(format!("private_key is not a PKCS#8 RSA key: {e}")))
    }

    /// A signed JWT bearer assertion for `scope`, issued at `now` (Unix seconds), valid one hour.
    pub fn assertion(&self, scope: &str, now: u64) -> Result<String, KeyError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email, "scope": scope, "aud": self.token_uri, "iat": now, "exp": now + 3600,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let key = self.key_pair()?;
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| KeyError("signing failed".to_owned()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The DER bytes of the first PEM block in `pem`.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

/// Now as Unix seconds, from the system clock on purpose: JWT issue and expiry times and access-token lifetimes are
/// checked by Google (or the fake) against real time, whatever business clock (fixed, scaled) the jobs run on.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// A cached access token and when it stops being used.
#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    refresh_at: u64,
}

/// The metadata server of a Google Compute Engine VM, Cloud Run or a GKE workload with Workload Identity: it hands
/// out access tokens of the workload's own service account, no key file involved.
#[derive(Debug, Clone)]
pub struct MetadataServer {
    /// `http://metadata.google.internal`, or `http://$GCE_METADATA_HOST`.
    base: String,
    /// The Firebase project (configured, or the metadata server's own project).
    project_id: String,
}

/// The host Google's client libraries ask when `GCE_METADATA_HOST` names no other.
pub const METADATA_HOST: &str = "metadata.google.internal";

impl MetadataServer {
    /// The metadata server at `host` (`metadata.google.internal`, or `GCE_METADATA_HOST`). The project is
    /// `project_id` when given, else the server's own (`project/project-id`), read now.
    pub async fn discover(host: &str, project_id: Option<String>) -> Result<Self, AuthError> {
        let base = format!("http://{}", host.trim_end_matches('/'));
        let project_id = match project_id {
            Some(project) => project,
            None => {
                let uri = format!("{base}/computeMetadata/v1/project/project-id");
                let fail = |reason: String| AuthError::Token { uri: uri.clone(), reason };
                crate::transport::install_crypto_provider();
                let http = reqwest::Client::builder().build().map_err(|e| fail(e.to_string()))?;
                let response = http
                    .get(&uri)
                    .header("Metadata-Flavor", "Google")
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| fail(e.without_url().to_string()))?;
                let status = response.status();
                let body = response.text().await.map_err(|e| fail(e.without_url().to_string()))?;
                if !status.is_success() || body.trim().is_empty() {
                    return Err(fail(format!("HTTP {status}: {}", truncate(&body, 200))));
                }
                body.trim().to_owned()
            }
        };
        Ok(Self { base, project_id })
    }

    fn token_uri(&self) -> String {
        format!("{}/computeMetadata/v1/instance/service-accounts/default/token?scopes={FCM_SCOPE}", self.base)
    }
}

/// Where access tokens come from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A service-account key file (`FIREBASE_SERVICE_ACCOUNT_PATH`, `GOOGLE_APPLICATION_CREDENTIALS`) or its JSON
    /// in the environment.
    ServiceAccount(ServiceAccount),
    /// The workload's own service account, through the metadata server.
    Metadata(MetadataServer),
}

impl Credentials {
    /// The Firebase project messages are sent in.
    pub fn project_id(&self) -> &str {
        match self {
            Credentials::ServiceAccount(account) => &account.project_id,
            Credentials::Metadata(server) => &server.project_id,
        }
    }
}

/// Access tokens for one set of credentials: fetched on first use, reused until [`REFRESH_MARGIN`] before expiry.
#[derive(Clone)]
pub struct TokenSource {
    credentials: Arc<Credentials>,
    http: reqwest::Client,
    cached: Arc<Mutex<Option<Cached>>>,
    fetched: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `credentials`, using `http` for the token endpoint.
    pub fn new(credentials: Credentials, http: reqwest::Client) -> Self {
        Self {
            credentials: Arc::new(credentials),
            http,
            cached: Arc::new(Mutex::new(None)),
            fetched: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The project messages are sent in.
    pub fn project_id(&self) -> &str {
        self.credentials.project_id()
    }

    /// How many tokens were fetched from the endpoint so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid access token (cached, or fetched now; concurrent callers share one fetch).
    pub async fn token(&self) -> Result<Arc<str>, AuthError> {
        let mut cached = self.cached.lock().await;
        let now = unix_now();
        if let Some(current) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(Arc::clone(&current.token));
        }
        let fresh = self.fetch(now).await?;
        let token = Arc::clone(&fresh.token);
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token (after FCM refused it), so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self, now: u64) -> Result<Cached, AuthError> {
        let (uri, request) = match &*self.credentials {
            Credentials::ServiceAccount(account) => {
                let uri = account.token_uri.clone();
                let assertion = account
                    .assertion(FCM_SCOPE, now)
                    .map_err(|reason| AuthError::Token { uri: uri.clone(), reason: reason.0 })?;
                let request = self
                    .http
                    .post(&uri)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    // A JWT is base64url and dots: nothing in it needs escaping.
                    .body(format!(
                        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                    ));
                (uri, request)
            }
            Credentials::Metadata(server) => {
                let uri = server.token_uri();
                let request = self.http.get(&uri).header("Metadata-Flavor", "Google");
                (uri, request)
            }
        };
        let fail = |reason: String| AuthError::Token { uri: uri.clone(), reason };
        let response =
            request.timeout(Duration::from_secs(30)).send().await.map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| fail(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", truncate(&body, 200))));
        }
        let parsed: TokenResponse =
            serde_json::from_str(&body).map_err(|e| fail(format!("unreadable token response: {e}")))?;
        self.fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lifetime = parsed.expires_in.saturating_sub(REFRESH_MARGIN.as_secs()).max(parsed.expires_in / 2);
        Ok(Cached { token: parsed.access_token.into(), refresh_at: now + lifetime })
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
