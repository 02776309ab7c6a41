//! Who is asking: bearer tokens for the JSON API, a signed cookie for the page, CSRF tokens for its forms.
//!
//! Tokens are compared in constant time (their SHA-256 digests, so length leaks nothing either). The page's
//! cookie is `name.expiry.session.signature`, the signature an HMAC-SHA256 keyed by the token itself, so changing
//! a token signs everyone using it out; the session is a row of `hattrick_admin_sessions`, which signing out
//! revokes on every instance (a copied cookie dies with it). A form's CSRF token is an HMAC of the cookie, so it
//! only works with the session it was issued to.

use std::fmt;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::Admin;
use crate::error::ApiError;

/// An admin token and the name its writes are recorded under.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Who: recorded in the audit log.
    pub name: String,
    /// The secret.
    pub secret: String,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken").field("name", &self.name).field("secret", &"<redacted>").finish()
    }
}

/// The name of the token a request was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Constant-time equality of two secrets of any length.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token whose secret is `presented`. Every token is compared, so the time taken does not tell which matched.
pub fn find_token<'a>(tokens: &'a [AdminToken], presented: &str) -> Option<&'a AdminToken> {
    tokens.iter().fold(None, |found, token| if same_secret(&token.secret, presented) { Some(token) } else { found })
}

/// The bearer token of a request's `Authorization` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware of the JSON API: a valid bearer token, or 401. A server without tokens (loopback only) lets every
/// request through as `anonymous`.
pub async fn require_bearer(
    State(admin): State<Arc<Admin>>,
    mut request: axum::extract::Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &admin.settings.tokens;
    let actor = if tokens.is_empty() {
        Actor("anonymous".to_owned())
    } else {
        let presented =
            bearer(request.headers()).ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
        let token = find_token(tokens, presented).ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
        Actor(token.name.clone())
    };
    request.extensions_mut().insert(actor);
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Actor>().cloned().ok_or_else(|| ApiError::unauthorized("not signed in"))
    }
}

/// The page's sign-in cookie.
pub const SESSION_COOKIE: &str = "hattrick_session";

fn sign(secret: &str, message: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, message.as_bytes()).as_ref())
}

/// Now in Unix seconds, by the real clock: a sign-in lasts `session_ttl` of real time, whatever business clock
/// the instance runs on (a demo's runs thousands of times faster), as OAuth tokens do (docs/engine.md).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A session cookie value for `token` and session `id`, valid until `expires` (Unix seconds).
pub fn session_value(token: &AdminToken, expires: i64, id: uuid::Uuid) -> String {
    let name = URL_SAFE_NO_PAD.encode(token.name.as_bytes());
    let message = format!("{name}.{expires}.{}", id.simple());
    format!("{message}.{}", sign(&token.secret, &message))
}

/// The token a session cookie value was signed with and its session id, if it is genuine and not expired at
/// `now` (Unix seconds). Whether the session was revoked is for the caller to ask the database.
pub fn verify_session<'a>(tokens: &'a [AdminToken], value: &str, now: i64) -> Option<(&'a AdminToken, uuid::Uuid)> {
    let (message, signature) = value.rsplit_once('.')?;
    let mut parts = message.split('.');
    let (name, expires, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let name = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
    if expires.parse::<i64>().ok()? <= now {
        return None;
    }
    let token = tokens.iter().find(|t| t.name == name)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret.as_bytes());
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    hmac::verify(&key, message.as_bytes(), &signature).ok()?;
    Some((token, uuid::Uuid::try_parse(id).ok()?))
}

/// The CSRF token of forms shown to the holder of `session` (signed by its token).
pub fn csrf_token(token: &AdminToken, session: &str) -> String {
    sign(&token.secret, &format!("csrf:{session}"))
}

/// Whether `presented` is the CSRF token of `session`.
pub fn verify_csrf(token: &AdminToken, session: &str, presented: &str) -> bool {
    same_secret(&csrf_token(token, session), presented)
}

/// The value of cookie `name` in the request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<AdminToken> {
        vec![
            AdminToken { name: "ops".into(), secret: "s3cret-ops".into() },
            AdminToken { name: "ci".into(), secret: "s3cret-ci".into() },
        ]
    }

    #[test]
    fn tokens_are_found_by_secret_only() {
        let tokens = tokens();
        assert_eq!(find_token(&tokens, "s3cret-ci").map(|t| t.name.as_str()), Some("ci"));
        assert!(find_token(&tokens, "s3cret").is_none());
        assert!(find_token(&tokens, "").is_none());
        assert!(find_token(&tokens, "ops").is_none(), "a name is not a secret");
    }

    #[test]
    fn sessions_expire_and_cannot_be_forged() {
        let tokens = tokens();
        let id = uuid::Uuid::new_v4();
        let value = session_value(&tokens[0], 2_000, id);
        assert_eq!(verify_session(&tokens, &value, 1_000).map(|(t, i)| (t.name.as_str(), i)), Some(("ops", id)));
        assert!(verify_session(&tokens, &value, 2_000).is_none(), "expired");
        let later = value.replacen("2000", "9999", 1);
        assert!(verify_session(&tokens, &later, 1_000).is_none(), "expiry is signed");
        let other = value.replacen(&id.simple().to_string(), &uuid::Uuid::new_v4().simple().to_string(), 1);
        assert!(verify_session(&tokens, &other, 1_000).is_none(), "the session id is signed");
        let (_, signature) = value.rsplit_once('.').unwrap();
        let as_ci = format!("{}.2000.{}.{signature}", URL_SAFE_NO_PAD.encode("ci"), id.simple());
        assert!(verify_session(&tokens, &as_ci, 1_000).is_none(), "name is signed");
        let rotated = vec![AdminToken { name: "ops".into(), secret: "new".into() }];
        assert!(verify_session(&rotated, &value, 1_000).is_none(), "a new secret signs sessions out");
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let tokens = tokens();
        let id = uuid::Uuid::new_v4();
        let (a, b) = (session_value(&tokens[0], 2_000, id), session_value(&tokens[0], 3_000, id));
        let csrf = csrf_token(&tokens[0], &a);
        assert!(verify_csrf(&tokens[0], &a, &csrf));
        assert!(!verify_csrf(&tokens[0], &b, &csrf));
        assert!(!verify_csrf(&tokens[0], &a, ""));
    }
}
