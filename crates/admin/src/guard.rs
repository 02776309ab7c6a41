//! What stands between the network and the handlers: which `Host` the server answers to, refusal of cross-site
//! writes, the security headers of every answer, and the limit on failed sign-ins. SECURITY.md says what each
//! one guards against.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Admin;
use crate::error::ApiError;

/// The address a request came from (set by [`crate::serve`] for each connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The page's Content-Security-Policy: nothing from elsewhere, scripts only from this server's files, no
/// framing, forms only to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The host name of an authority (`Host` header or URI), lower case, without its port.
fn host_name(authority: &str) -> String {
    let name = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { authority })
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` always means this machine: `localhost` (and its subdomains, RFC 6761) or a loopback address.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request naming `host` is for this server. Without tokens only loopback names are: a page on another
/// site cannot reach the token-less server through a name it controls (DNS rebinding). With tokens, the names in
/// `allowed` (or any name when `allowed` is empty) besides loopback ones.
pub fn host_allowed(host: &str, tokens: bool, allowed: &[String]) -> bool {
    let name = host_name(host);
    if name.is_empty() {
        return false;
    }
    is_loopback_name(&name) || (tokens && (allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))))
}

/// Why a state-changing request from a browser is refused, if it is: it came from another site. A browser that
/// sends `Sec-Fetch-Site` is judged by it alone (`same-origin` or `none` pass); an older one by its `Origin`, which
/// must be the server's own host (or a configured name). Tools send neither and pass.
pub fn cross_site(headers: &HeaderMap, host: &str, allowed: &[String]) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("unknown");
        return (!matches!(site, "same-origin" | "none"))
            .then(|| format!("a {site} request may not change anything here"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("null");
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    let same = !authority.is_empty()
        && (authority.eq_ignore_ascii_case(host)
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(&host_name(authority))));
    (!same).then(|| format!("a request from origin {origin:?} may not change anything here"))
}

/// Middleware on every route: refuses other hosts and cross-site writes, then sets the security headers.
pub async fn guard(State(admin): State<Arc<Admin>>, request: axum::extract::Request, next: Next) -> Response {
    let settings = &admin.settings;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_owned();
    // Probes and scrapers name the instance by its address; with tokens set they are exempt (they change nothing,
    // and /metrics has its own token).
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") && !settings.tokens.is_empty();
    if !probe && !host_allowed(&host, !settings.tokens.is_empty(), &settings.allowed_hosts) {
        tracing::warn!(host, "request for a host this server does not answer to");
        return secure(
            ApiError::forbidden(format!("this server does not answer to host {host:?} (admin.allowed_hosts)"))
                .into_response(),
            settings.secure_cookies,
        );
    }
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && let Some(reason) = cross_site(request.headers(), &host, &settings.allowed_hosts) {
        tracing::warn!(host, reason, "cross-site write refused");
        return secure(ApiError::forbidden(reason).into_response(), settings.secure_cookies);
    }
    let response = next.run(request).await;
    secure(response, settings.secure_cookies)
}

/// Adds the security headers to `response`: no sniffing, no framing, no referrer to other sites, the CSP, and
/// `no-store`
/// unless the handler chose a cache policy (every answer here may hold what an operator sees).
fn secure(mut response: Response, tls: bool) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it a browser sends `Origin: null` on the page's own form posts.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// Failed sign-ins per client address in the current minute: past the limit, sign-ins from that address are
/// answered 429 until the minute is over. Behind a proxy every client shares the proxy's address, so the limit
/// becomes one for everyone: still a brake on guessing.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The unit a client is counted by: its IPv4 address, or its IPv6 /64 (one host usually holds a whole /64).
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// The most client addresses tracked at once.
const MAX_TRACKED: usize = 10_000;

/// The window failed sign-ins are counted in.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);

impl SignInLimiter {
    /// How long `client` must wait before trying again, if it has used up its `limit`.
    pub fn retry_after(&self, client: IpAddr, limit: u32) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, count) = failures.get(&client_key(client))?;
        let elapsed = since.elapsed();
        (elapsed < SIGN_IN_WINDOW && *count >= limit).then(|| SIGN_IN_WINDOW - elapsed)
    }

    /// Counts a failed sign-in from `client`.
    pub fn failed(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (since, _)| since.elapsed() < SIGN_IN_WINDOW);
            if failures.len() >= MAX_TRACKED {
                // Still full of fresh entries (a distributed guess): forget them rather than grow without bound.
                failures.clear();
            }
        }
        let entry = failures.entry(client_key(client)).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= SIGN_IN_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Where `value` holds a NUL character (in a string or a key), as a path into the body (`segment_filter.all[1]`).
fn nul_in_json(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = |path: &str| if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| here(path)),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| nul_in_json(item, &format!("{path}[{i}]")))
        }
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            if key.contains('\0') { Some(here(path)) } else { nul_in_json(item, &inner) }
        }),
        _ => None,
    }
}

/// Where a query string or form body holds a NUL character: the name of the field.
fn nul_in_form(bytes: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(bytes)
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        .map(|(key, _)| key.replace('\0', "\\0"))
}

/// Middleware: a request carrying a NUL character (which PostgreSQL cannot store in text) anywhere (the path,
/// the query, a JSON or form body) is answered 422 naming where, before any handler sees it.
pub async fn reject_unstorable(
    State(admin): State<Arc<Admin>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let page = request.uri().path().starts_with("/admin/ui");
    let refuse = |path: String| {
        let error = ApiError::validation([format!("{path}: must not contain a NUL character (\\u0000)")]);
        if page { crate::ui::UiError::from(error).into_response() } else { error.into_response() }
    };
    // A NUL can reach the path only percent-encoded.
    if request.uri().path().to_ascii_lowercase().contains("%00") {
        return refuse("path".to_owned());
    }
    if let Some(field) = request.uri().query().and_then(|query| nul_in_form(query.as_bytes())) {
        return refuse(field);
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // What axum's Json accepts: application/json and application/*+json.
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    if !json && !form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, admin.settings.body_limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::too_large(format!("the body is over {} bytes", admin.settings.body_limit))
                .into_response();
        }
    };
    let found = if json {
        // Only a body that mentions a NUL is parsed here; the handler's extractor reports every other problem.
        let mentions = bytes.contains(&0) || bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"));
        if mentions {
            serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| nul_in_json(&v, ""))
        } else {
            None
        }
    } else {
        nul_in_form(&bytes)
    };
    if let Some(path) = found {
        return refuse(path);
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_tokens_answers_loopback_names_only() {
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "app.localhost", "127.0.0.2"] {
            assert!(host_allowed(host, false, &[]), "{host}");
        }
        for host in ["rebind.evil.example", "rebind.evil.example:8080", "10.0.0.5:8080", "", "127.0.0.1.evil.example"] {
            assert!(!host_allowed(host, false, &[]), "{host}");
            assert!(!host_allowed(host, false, &["rebind.evil.example".to_owned()]), "{host}: tokens are required");
        }
        assert!(host_allowed("admin.example.com", true, &[]));
        let allowed = ["admin.example.com".to_owned()];
        assert!(host_allowed("Admin.Example.com:443", true, &allowed));
        assert!(!host_allowed("other.example.com", true, &allowed));
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        let host = "127.0.0.1:8080";
        assert_eq!(cross_site(&headers(&[]), host, &[]), None, "curl sends neither");
        assert_eq!(cross_site(&headers(&[("origin", "http://127.0.0.1:8080")]), host, &[]), None);
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "same-origin")]), host, &[]), None);
        // A browser's own form post may carry `Origin: null` (a referrer policy); Sec-Fetch-Site decides.
        let own_form = headers(&[("sec-fetch-site", "same-origin"), ("origin", "null")]);
        assert_eq!(cross_site(&own_form, host, &[]), None);
        assert!(cross_site(&headers(&[("origin", "https://evil.example")]), host, &[]).is_some());
        assert!(cross_site(&headers(&[("origin", "null")]), host, &[]).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")]), host, &[]).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")]), host, &[]).is_some());
        let allowed = ["admin.example.com".to_owned()];
        assert_eq!(cross_site(&headers(&[("origin", "https://admin.example.com")]), host, &allowed), None);
    }

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let body: serde_json::Value =
            serde_json::from_str(r#"{"title_tr": "ok", "segment_filter": {"all": [{"x": 1}, {"field": "a\u0000b"}]}}"#)
                .unwrap();
        assert_eq!(nul_in_json(&body, "").as_deref(), Some("segment_filter.all[1].field"));
        assert_eq!(nul_in_json(&serde_json::json!({"ok": ["fine"]}), ""), None);
        assert_eq!(nul_in_form(b"reason=a%00b&x=1").as_deref(), Some("reason"));
        assert_eq!(nul_in_form(b"reason=ab"), None);
    }

    #[test]
    fn sign_ins_are_limited_per_address() {
        let limiter = SignInLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.retry_after(a, 3), None);
            limiter.failed(a);
        }
        assert!(limiter.retry_after(a, 3).is_some_and(|wait| wait <= SIGN_IN_WINDOW));
        assert_eq!(limiter.retry_after(b, 3), None);
    }
}
