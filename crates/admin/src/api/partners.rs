//! `/admin/partners/analytics`, and the date ranges the API and the page accept.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::ApiQuery;
use crate::Admin;
use crate::data::{self, PartnerDay};
use crate::error::{ApiError, ErrorBody};

/// A date range of partner analytics.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day (business zone).
    pub from: NaiveDate,
    /// Last day, inclusive (at most 366 days after `from`).
    pub to: NaiveDate,
    /// One partner only.
    pub partner_id: Option<Uuid>,
}

/// The days a range may name: those an RFC 3339 date can write (years 0000 to 9999), which the database and the
/// calendar arithmetic both hold.
pub const DAYS: std::ops::RangeInclusive<NaiveDate> =
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date")..=NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");

/// Checks that `day` (the field `path`) is one a range may name.
pub fn check_day(path: &str, day: NaiveDate) -> Result<(), ApiError> {
    if DAYS.contains(&day) {
        Ok(())
    } else {
        Err(ApiError::validation([format!("{path}: {day} is not between {} and {}", DAYS.start(), DAYS.end())]))
    }
}

/// Checks a date range.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), ApiError> {
    check_day("from", from)?;
    check_day("to", to)?;
    if to < from {
        return Err(ApiError::validation([format!("to: {to} is before from ({from})")]));
    }
    if (to - from).num_days() >= data::MAX_RANGE_DAYS {
        return Err(ApiError::validation([format!("to: the range is longer than {} days", data::MAX_RANGE_DAYS)]));
    }
    Ok(())
}

/// Revenue, commission, signups and subscribers per partner and day.
#[utoipa::path(get, path = "/admin/partners/analytics", tag = "partners", params(RangeQuery),
    responses((status = 200, body = Vec<PartnerDay>, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn partner_analytics(
    State(admin): State<Arc<Admin>>,
    ApiQuery(range): ApiQuery<RangeQuery>,
) -> Result<Json<Vec<PartnerDay>>, ApiError> {
    check_range(range.from, range.to)?;
    Ok(Json(data::partner_days(admin.pool(), range.from, range.to, range.partner_id).await?))
}
