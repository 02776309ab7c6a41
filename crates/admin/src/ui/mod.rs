//! The `/admin/ui` pages: server-rendered HTML (askama templates, checked at compile time), no JavaScript
//! framework and nothing loaded from the network, one module per resource. Forms work without JavaScript; one
//! small script (`composer.js`, served as a file: the CSP allows no inline script) refreshes the campaign
//! composer's audience count as the operator types.
//!
//! Signing in with an admin token sets a signed, `HttpOnly`, `SameSite=Strict` cookie ([`crate::auth`]); every
//! form carries a CSRF token tied to that cookie. Writes go through [`crate::actions`], as the JSON API's do, so
//! the audit log records them the same way.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::Admin;
use crate::auth::{self, Actor, AdminToken, SESSION_COOKIE};
use crate::error::ApiError;

mod audit_log;
mod campaigns;
mod jobs;
mod messages;
mod outbox;
mod partners;

/// The pages.
pub fn router() -> Router<Arc<Admin>> {
    let sign_in = Router::new()
        .route("/admin/ui/login", get(login_page).post(login))
        .route("/admin/ui/logout", post(logout))
        .route("/admin/ui/composer.js", get(composer_js));
    [jobs::routes, campaigns::routes, partners::routes, outbox::routes, messages::routes, audit_log::routes]
        .into_iter()
        .fold(sign_in, |router, add| add(router))
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
        let live: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM hattrick_admin_sessions
                              WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()) AS "live!""#,
            id
        )
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

/// A form's time field: a `datetime-local` input (UTC) or RFC 3339; None when empty.
fn form_time(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| Some(naive.and_utc()))
        .ok_or_else(|| format!("{field}: {text:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"))
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
        sqlx::query!("DELETE FROM hattrick_admin_sessions WHERE expires_at < now() - interval '1 day'")
            .execute(db::unnamed(&mut tx))
            .await?;
        sqlx::query!(
            "INSERT INTO hattrick_admin_sessions (id, actor, created_at, expires_at)
             VALUES ($1, $2, now(), to_timestamp($3))",
            id,
            token.name,
            expires as f64
        )
        .execute(db::unnamed(&mut tx))
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
pub(super) struct CsrfForm {
    csrf: String,
}

/// Signs out: the session is revoked for every instance, so a copy of the cookie stops working too.
async fn logout(State(admin): State<Arc<Admin>>, session: Session, Form(form): Form<CsrfForm>) -> Page<Response> {
    session.check(&form.csrf)?;
    if let Some((_, id)) = auth::verify_session(&admin.ui_tokens(), &session.value, auth::unix_now()) {
        sqlx::query!("UPDATE hattrick_admin_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id)
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
        include_str!("../../templates/composer.js"),
    )
        .into_response()
}
