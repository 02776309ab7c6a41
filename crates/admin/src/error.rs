//! Errors of the JSON API: a status and a JSON body that says what is wrong and, for validation, where. A 5xx
//! body never carries internal detail; the detail goes to the log, under the request's id.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with the request, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: a field name or a dotted path into the body (`segment_filter.all[1].min`); empty for the whole body.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// Splits `path: message` (the form validators in hattrick report problems in).
    pub fn parse(problem: &str) -> Self {
        match problem.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => Self { path: path.to_owned(), message: message.to_owned() },
            _ => Self { path: String::new(), message: problem.to_owned() },
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `validation`, `bad_request`,
    /// `internal`, `unavailable`.
    pub error: &'static str,
    /// A sentence for people.
    pub message: String,
    /// For `validation`: every problem found, each with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ErrorBody {
    /// Each problem as `path: message` (the message alone for the whole request), as the page lists them.
    pub fn problems(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|e| if e.path.is_empty() { e.message.clone() } else { format!("{}: {}", e.path, e.message) })
            .collect()
    }
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody { error, message: message.into(), errors: Vec::new() } }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "bad_request", message)
    }

    /// 422 with the problems found, each `path: message`.
    pub fn validation<S: AsRef<str>>(problems: impl IntoIterator<Item = S>) -> Self {
        let errors: Vec<FieldError> = problems.into_iter().map(|p| FieldError::parse(p.as_ref())).collect();
        let message = match errors.as_slice() {
            [one] if one.path.is_empty() => one.message.clone(),
            [one] => format!("{}: {}", one.path, one.message),
            many => format!("{} problems in the request", many.len()),
        };
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, body: ErrorBody { error: "validation", message, errors } }
    }

    /// 500: logs `detail`, answers without it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "admin request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details under this response's x-request-id",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %error, "database unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is not reachable")
            }
            sqlx::Error::Database(e) => match e.code().as_deref() {
                // The ledger's idempotency rules (migrations/routines.sql).
                Some("HT001") => Self::conflict(e.message().to_owned()),
                Some("HT002") => Self::validation([format!("Idempotency-Key: {}", e.message())]),
                // Cancelled by admin.statement_timeout: the database is too busy to answer in time.
                Some("57014") => {
                    tracing::warn!(error = %e, "an admin query ran past admin.statement_timeout");
                    Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database did not answer in time")
                }
                // A value the request carried that PostgreSQL cannot store. The guard and the validators catch
                // these with their path first; this is the net under them:
                // 22021 (a NUL or bad byte), 22P05 (untranslatable), 22008 (a date beyond the calendar).
                Some(code @ ("22021" | "22P05" | "22008")) => {
                    tracing::warn!(error = %e, "a request carried a value the database refused");
                    Self::validation([format!("the request holds a value the database cannot store ({code})")])
                }
                _ => Self::internal(error),
            },
            _ => Self::internal(error),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::validation([serde_problem(&e.body_text())]),
            JsonRejection::JsonSyntaxError(e) => Self::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not JSON: {}", tail(&e.body_text())),
            ),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_request",
                "the body must be JSON (Content-Type: application/json)",
            ),
            other => Self::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::validation([serde_problem(&rejection.body_text())])
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::not_found(format!("no such resource: {}", tail(&rejection.body_text())))
    }
}

/// The part of axum's rejection text after its generic prefix.
fn tail(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// Turns serde's "path: problem" (as axum reports it) into ours; a missing field's path is the field.
fn serde_problem(text: &str) -> String {
    let problem = tail(text);
    if let Some(field) = problem.split("missing field `").nth(1).and_then(|rest| rest.split('`').next()) {
        let (prefix, _) = problem.split_once(": ").filter(|(p, _)| !p.contains(' ') && *p != ".").unwrap_or(("", ""));
        let path = if prefix.is_empty() { field.to_owned() } else { format!("{prefix}.{field}") };
        return format!("{path}: required");
    }
    match problem.split_once(": ") {
        Some((path, message)) if !path.contains(' ') && path != "." => format!("{path}: {message}"),
        _ => format!(": {problem}"),
    }
}

/// The API's JSON body extractor: answers 422 with the path of the problem, 400 for what is not JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Body(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_split_into_path_and_message() {
        assert_eq!(
            FieldError::parse("segment_filter.level.in[0]: unknown level `wood`"),
            FieldError { path: "segment_filter.level.in[0]".into(), message: "unknown level `wood`".into() }
        );
        assert_eq!(FieldError::parse(": whole body").path, "");
        assert_eq!(FieldError::parse("no colon here").message, "no colon here");
    }

    #[test]
    fn serde_errors_name_their_field() {
        assert_eq!(
            serde_problem(
                "Failed to deserialize the JSON body into the target type: missing field `title_tr` at line 1 column 2"
            ),
            "title_tr: required"
        );
        assert_eq!(
            serde_problem(
                "Failed to deserialize the JSON body into the target type: amount: invalid type: string \"x\", expected i64 at line 1 column 14"
            ),
            "amount: invalid type: string \"x\", expected i64 at line 1 column 14"
        );
    }
}
