//! What one FCM response means for the message, the token and the sender (docs/push.md "Token lifecycle" and
//! "Retries", docs/push.md).

use std::time::Duration;

use serde_json::Value;

/// The least a `QUOTA_EXCEEDED` answer makes the sender wait (docs/push.md).
pub const QUOTA_BACKOFF: Duration = Duration::from_secs(60);

/// The action a response calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// FCM accepted the message.
    Delivered,
    /// The token is dead (`UNREGISTERED`, `INVALID_ARGUMENT` about the token, `SENDER_ID_MISMATCH`): deactivate
    /// every row holding it; this delivery failed for good.
    DeactivateToken {
        /// The FCM error code.
        code: String,
    },
    /// A transient failure (`QUOTA_EXCEEDED`, `UNAVAILABLE`, `INTERNAL`, other 5xx, a network error): try again
    /// after at least `after`.
    Retry {
        /// The FCM error code (or `NETWORK`).
        code: String,
        /// The least wait: the server's `Retry-After`, at least 60 s for quota.
        after: Option<Duration>,
    },
    /// Authentication failed (`THIRD_PARTY_AUTH_ERROR`, an OAuth token refused): the token is kept, the message
    /// stays pending and the circuit breaker for the platform opens.
    AuthFailure {
        /// The FCM error code.
        code: String,
    },
    /// A permanent failure of this message that says nothing about the token (for example an invalid payload).
    Failed {
        /// The FCM error code.
        code: String,
    },
}

impl Outcome {
    /// The error code, if any (for metrics and `last_error`).
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Delivered => None,
            Outcome::DeactivateToken { code }
            | Outcome::Retry { code, .. }
            | Outcome::AuthFailure { code }
            | Outcome::Failed { code } => Some(code),
        }
    }
}

/// Classifies an FCM HTTP v1 response: its status, its JSON body (if any) and its `Retry-After` header.
pub fn classify(status: u16, body: &str, retry_after: Option<&str>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered;
    }
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    // The FCM code lives in details[].errorCode (type FcmError); the canonical status is the fallback.
    let fcm_code = error["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|detail| detail["errorCode"].as_str())
        .map(str::to_owned);
    let canonical = error["status"].as_str().map(str::to_owned);
    let code = fcm_code.clone().or(canonical).unwrap_or_else(|| format!("HTTP_{status}"));
    let retry_after = retry_after.and_then(parse_retry_after);
    match code.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => Outcome::DeactivateToken { code },
        "INVALID_ARGUMENT" if about_the_token(error) => Outcome::DeactivateToken { code },
        "INVALID_ARGUMENT" => Outcome::Failed { code },
        "QUOTA_EXCEEDED" | "RESOURCE_EXHAUSTED" => {
            Outcome::Retry { code, after: Some(retry_after.unwrap_or(QUOTA_BACKOFF).max(QUOTA_BACKOFF)) }
        }
        "UNAVAILABLE" | "INTERNAL" => Outcome::Retry { code, after: retry_after },
        "THIRD_PARTY_AUTH_ERROR" | "UNAUTHENTICATED" | "PERMISSION_DENIED" => Outcome::AuthFailure { code },
        _ if status == 401 || status == 403 => Outcome::AuthFailure { code },
        _ if status == 429 => {
            Outcome::Retry { code, after: Some(retry_after.unwrap_or(QUOTA_BACKOFF).max(QUOTA_BACKOFF)) }
        }
        _ if status >= 500 => Outcome::Retry { code, after: retry_after },
        _ => Outcome::Failed { code },
    }
}

/// Whether an `INVALID_ARGUMENT` error is about the registration token (a field violation on `message.token`,
/// or FCM's message naming the registration token) rather than about the payload.
fn about_the_token(error: &Value) -> bool {
    let field_is_token = error["details"].as_array().into_iter().flatten().any(|detail| {
        detail["fieldViolations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|violation| violation["field"].as_str() == Some("message.token"))
    });
    field_is_token || error["message"].as_str().is_some_and(|m| m.to_ascii_lowercase().contains("registration token"))
}

/// `Retry-After` as delta seconds (FCM's form); an HTTP date or garbage is ignored.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|secs| Duration::from_secs(secs.min(24 * 3600)))
}

// The property the `cargo fuzz` target in `fuzz/` checks on arbitrary bytes; `fuzz_corpora` in hattrick's tests
// replays every committed corpus file through it. Panics when the property is broken.
/// FCM responses ([`classify`], the `fcm_response` fuzz target): never panics, whatever the status, body and
/// `Retry-After`; a 2xx is a delivery and nothing else is; a retry never comes back sooner than the server asked.
pub fn fuzz_classify(data: &[u8]) {
    let [high, low, rest @ ..] = data else { return };
    let status = 100 + u16::from_be_bytes([*high, *low]) % 500;
    let text = String::from_utf8_lossy(rest);
    let (retry_after, body) = match text.split_once('\n') {
        Some((header, body)) => (Some(header), body),
        None => (None, text.as_ref()),
    };
    let outcome = classify(status, body, retry_after);
    assert_eq!(matches!(outcome, Outcome::Delivered), (200..300).contains(&status), "{status}: {outcome:?}");
    if let (Outcome::Retry { after: Some(after), .. }, Some(Ok(seconds))) =
        (&outcome, retry_after.map(|h| h.trim().parse::<u64>()))
    {
        assert!(after.as_secs() >= seconds.min(3600), "retried after {after:?}, asked {seconds} s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fcm_error(status: u16, canonical: &str, code: &str, message: &str) -> String {
        serde_json::json!({ "error": { "code": status, "message": message, "status": canonical, "details": [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code }
        ] } })
        .to_string()
    }

    #[test]
    fn every_fcm_answer_maps_to_its_action() {
        let token_violation = serde_json::json!({ "error": { "code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid value", "details": [
                { "@type": "type.googleapis.com/google.rpc.BadRequest",
                  "fieldViolations": [{ "field": "message.token", "description": "Invalid registration token" }] }
            ] } })
        .to_string();
        let deactivate = |code: &str| Outcome::DeactivateToken { code: code.into() };
        let retry =
            |code: &str, secs: Option<u64>| Outcome::Retry { code: code.into(), after: secs.map(Duration::from_secs) };
        let cases: Vec<(u16, String, Option<&str>, Outcome)> = vec![
            (200, r#"{"name":"projects/p/messages/1"}"#.into(), None, Outcome::Delivered),
            (
                404,
                fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
                None,
                deactivate("UNREGISTERED"),
            ),
            (
                403,
                fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
                None,
                deactivate("SENDER_ID_MISMATCH"),
            ),
            (
                400,
                fcm_error(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token",
                ),
                None,
                deactivate("INVALID_ARGUMENT"),
            ),
            (400, token_violation, None, deactivate("INVALID_ARGUMENT")),
            (
                400,
                fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload received."),
                None,
                Outcome::Failed { code: "INVALID_ARGUMENT".into() },
            ),
            (
                429,
                fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded"),
                Some("5"),
                retry("QUOTA_EXCEEDED", Some(60)),
            ),
            (
                429,
                fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded"),
                Some("120"),
                retry("QUOTA_EXCEEDED", Some(120)),
            ),
            (
                503,
                fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "Unavailable"),
                Some("7"),
                retry("UNAVAILABLE", Some(7)),
            ),
            (
                503,
                fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "Unavailable"),
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                retry("UNAVAILABLE", None),
            ),
            (500, fcm_error(500, "INTERNAL", "INTERNAL", "Internal error"), None, retry("INTERNAL", None)),
            (502, "<html>bad gateway</html>".into(), None, retry("HTTP_502", None)),
            (
                401,
                fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "APNs certificate"),
                None,
                Outcome::AuthFailure { code: "THIRD_PARTY_AUTH_ERROR".into() },
            ),
            (
                401,
                r#"{"error":{"code":401,"status":"UNAUTHENTICATED","message":"invalid credentials"}}"#.into(),
                None,
                Outcome::AuthFailure { code: "UNAUTHENTICATED".into() },
            ),
            (413, "".into(), None, Outcome::Failed { code: "HTTP_413".into() }),
        ];
        for (status, body, retry_after, expected) in cases {
            assert_eq!(classify(status, &body, retry_after), expected, "{status} {body}");
        }
    }
}
