//! Transports (docs/push.md "Transports"): `fcm` sends FCM HTTP v1 requests over HTTP/2 with service-account OAuth;
//! `log` writes each message as a JSON line (the default without credentials).

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::message::PushMessage;
use crate::oauth::{Credentials, TokenSource};
use crate::outcome::{Outcome, classify};

/// A boxed future of an [`Outcome`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Something that delivers one message to one token.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `message` and says what happened; never panics, never returns a secret.
    fn send<'a>(&'a self, message: &'a PushMessage) -> SendFuture<'a>;
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Installs ring as rustls' crypto provider (once per process; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for FCM: HTTP/2 (prior knowledge on `http://` endpoints, that is h2c to a fake), pooled.
pub fn http_client(endpoint: &str, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_adaptive_window(true);
    if endpoint.starts_with("http://") {
        builder = builder.http2_prior_knowledge();
    }
    builder.build()
}

/// HTTP/2 connections a transport spreads its requests over: one connection multiplexes many streams, but its
/// streams are served in order by one task at each end, so a few connections send more than one.
pub const FCM_CONNECTIONS: usize = 4;

/// Why an [`FcmTransport`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint does not make a URL of FCM's send method.
    #[error("FCM endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: url::ParseError,
    },
    /// The HTTP client cannot be built (its TLS configuration).
    #[error("FCM HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// FCM HTTP v1.
#[derive(Debug, Clone)]
pub struct FcmTransport {
    clients: Vec<reqwest::Client>,
    next: Arc<AtomicUsize>,
    /// The send method's URL, parsed once: a request clones it rather than parsing its text again.
    url: reqwest::Url,
    tokens: TokenSource,
}

impl FcmTransport {
    /// A transport for `credentials`, sending to `endpoint` (`https://fcm.googleapis.com` in production).
    pub fn new(credentials: Credentials, endpoint: &str, timeout: Duration) -> Result<Self, TransportError> {
        let url = format!("{}/v1/projects/{}/messages:send", endpoint.trim_end_matches('/'), credentials.project_id());
        let url = reqwest::Url::parse(&url)
            .map_err(|reason| TransportError::Endpoint { endpoint: endpoint.to_owned(), reason })?;
        let clients = (0..FCM_CONNECTIONS).map(|_| http_client(endpoint, timeout)).collect::<Result<Vec<_>, _>>()?;
        // The token endpoint is a separate host (HTTP/1.1 or 2, as it offers).
        install_crypto_provider();
        let token_http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self {
            clients,
            next: Arc::new(AtomicUsize::new(0)),
            url,
            tokens: TokenSource::new(credentials, token_http),
        })
    }

    /// The OAuth token source (for its fetch count).
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    async fn send_one(&self, message: &PushMessage) -> Outcome {
        let token = match self.tokens.token().await {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "FCM OAuth failed");
                return Outcome::AuthFailure { code: "OAUTH".into() };
            }
        };
        let http = &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()];
        let response = http.post(self.url.clone()).bearer_auth(&*token).json(&message.wire(true)).send().await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "FCM request failed");
                return Outcome::Retry { code: "NETWORK".into(), after: None };
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let outcome = classify(status, &body, retry_after.as_deref());
        if status == 401 {
            // The access token may have been revoked or expired early: fetch a new one next time.
            self.tokens.invalidate().await;
        }
        outcome
    }
}

impl Transport for FcmTransport {
    fn send<'a>(&'a self, message: &'a PushMessage) -> SendFuture<'a> {
        Box::pin(self.send_one(message))
    }

    fn name(&self) -> &'static str {
        "fcm"
    }
}

/// Writes each message as one JSON line to standard output and reports it delivered. The device token is
/// masked ([`mask_token`]): a log is read by more people than the device's owner should be.
#[derive(Debug, Default)]
pub struct LogTransport {
    lock: Mutex<()>,
}

impl Transport for LogTransport {
    fn send<'a>(&'a self, message: &'a PushMessage) -> SendFuture<'a> {
        let mut json = message.to_fcm_json();
        json["message"]["token"] = serde_json::Value::String(mask_token(&message.token));
        let line = json.to_string();
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = std::io::stdout().lock();
        let written = writeln!(out, "{line}");
        Box::pin(async move {
            match written {
                Ok(()) => Outcome::Delivered,
                Err(_) => Outcome::Retry { code: "LOG_WRITE".into(), after: None },
            }
        })
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

/// A device token as logs show it: its first 6 and last 4 characters, enough to tell tokens apart, never enough to
/// send to the device.
pub fn mask_token(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod mask_tests {
    use super::mask_token;

    #[test]
    fn a_token_is_never_printed_in_full() {
        let token = "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";
        let masked = mask_token(token);
        assert_eq!(masked, "dQw4w9…RYqx");
        assert!(!masked.contains("APA91b"));
        assert_eq!(mask_token("short"), "*****");
    }
}
