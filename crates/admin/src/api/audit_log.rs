//! `/admin/audit`: who changed what.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiQuery, limit};
use crate::Admin;
use crate::audit::{self, AuditRecord};
use crate::error::{ApiError, ErrorBody};

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Only records older than this id (the previous page's last id).
    pub before: Option<i64>,
}

/// Every write made through the API or the page, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn audit_log(
    State(admin): State<Arc<Admin>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    Ok(Json(audit::recent(admin.pool(), limit(query.limit)?, query.before).await?))
}
