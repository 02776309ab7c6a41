//! The campaigns list and composer (with its live audience count), a campaign, cancel.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{CsrfForm, Notice, Page, Session, UiError, back_to, form_time, when};
use crate::actions::{self, By};
use crate::api::campaigns::AudienceQuery;
use crate::data::{self, Campaign, CampaignDelivery};
use crate::error::ApiError;
use crate::{Admin, request_id};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router
        .route("/admin/ui/campaigns", get(campaigns_page).post(compose))
        .route("/admin/ui/campaigns/preview", post(preview))
        .route("/admin/ui/campaigns/{id}", get(campaign_page))
        .route("/admin/ui/campaigns/{id}/cancel", post(cancel))
}

/// The composer's fields, as typed (kept on a validation error so nothing is lost).
#[derive(Debug, Clone, Default, Deserialize)]
struct ComposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    title_tr: String,
    #[serde(default)]
    title_en: String,
    #[serde(default)]
    body_tr: String,
    #[serde(default)]
    body_en: String,
    #[serde(default)]
    deep_link_url: String,
    #[serde(default)]
    image_url: String,
    #[serde(default)]
    target_audience: String,
    #[serde(default)]
    segment_filter: String,
    #[serde(default)]
    scheduled_at: String,
}

struct CampaignRow {
    campaign: Campaign,
    scheduled: String,
    delivery: String,
}

impl From<Campaign> for CampaignRow {
    fn from(campaign: Campaign) -> Self {
        let delivery = match campaign.recipient_count {
            Some(n) => format!(
                "{n} users: {} reached, {} not",
                campaign.success_count.unwrap_or(0),
                campaign.failure_count.unwrap_or(0)
            ),
            None => "not expanded yet".to_owned(),
        };
        CampaignRow { scheduled: when(campaign.scheduled_at), delivery, campaign }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "campaigns.html")]
struct CampaignsPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    form: ComposeForm,
    problems: Vec<String>,
    audience: Option<i64>,
    campaigns: Vec<CampaignRow>,
}

impl CampaignsPage {
    fn audience_is(&self, value: &str) -> bool {
        let current = if self.form.target_audience.is_empty() { "all" } else { self.form.target_audience.as_str() };
        current == value
    }
}

async fn campaigns_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(notice): Query<Notice>,
) -> Page<CampaignsPage> {
    render_campaigns(&admin, session, notice.msg, ComposeForm::default(), Vec::new(), None).await
}

async fn render_campaigns(
    admin: &Admin,
    session: Session,
    notice: Option<String>,
    form: ComposeForm,
    problems: Vec<String>,
    audience: Option<i64>,
) -> Page<CampaignsPage> {
    let campaigns = data::campaigns(admin.pool(), 50).await?;
    Ok(CampaignsPage {
        csrf: session.csrf,
        actor: session.token.name,
        notice,
        form,
        problems,
        audience,
        campaigns: campaigns.into_iter().map(CampaignRow::from).collect(),
    })
}

/// The composer's audience and filter, or the problems reading them.
fn audience_of(form: &ComposeForm) -> Result<AudienceQuery, Vec<String>> {
    let target_audience = if form.target_audience.is_empty() { "all".to_owned() } else { form.target_audience.clone() };
    let segment_filter = if form.segment_filter.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&form.segment_filter)
                .map_err(|e| vec![format!("segment_filter: not valid JSON ({e})")])?,
        )
    };
    Ok(AudienceQuery { target_audience, segment_filter })
}

/// The composer's `scheduled_at`: now when empty.
fn scheduled_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    Ok(form_time("scheduled_at", text)?.unwrap_or(now))
}

async fn compose(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ComposeForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let query = match audience_of(&form) {
        Ok(query) => query,
        Err(problems) => {
            return Ok(render_campaigns(&admin, session, None, form, problems, None).await?.into_response());
        }
    };
    if form.action == "preview" {
        return Ok(match actions::audience(&admin, &query).await {
            Ok(size) => render_campaigns(&admin, session, None, form, Vec::new(), Some(size.users)).await?,
            Err(error) => {
                let problems = error.body.problems();
                render_campaigns(&admin, session, None, form, problems, None).await?
            }
        }
        .into_response());
    }
    let now = admin.engine.clock().now();
    let at = match scheduled_at(&form.scheduled_at, now) {
        Ok(at) => at,
        Err(problem) => {
            return Ok(render_campaigns(&admin, session, None, form, vec![problem], None).await?.into_response());
        }
    };
    let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let new = domain::CampaignDraft {
        title_tr: form.title_tr.clone(),
        title_en: optional(&form.title_en),
        body_tr: form.body_tr.clone(),
        body_en: optional(&form.body_en),
        deep_link_url: optional(&form.deep_link_url),
        image_url: optional(&form.image_url),
        target_audience: query.target_audience,
        segment_filter: query.segment_filter,
        scheduled_at: Some(at),
    };
    match actions::create(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, new.normalized(now))
        .await
    {
        Ok(campaign) => {
            Ok(back_to(&format!("/admin/ui/campaigns/{}", campaign.id), "Campaign created").into_response())
        }
        Err(error) if error.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let problems = error.body.problems();
            let page = render_campaigns(&admin, session, None, form, problems, None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// The composer's live count: JSON in, JSON out (CSRF token in the `x-csrf-token` header).
async fn preview(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ComposeForm>,
) -> Response {
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(UiError(error)) = session.check(csrf) {
        return error.into_response();
    }
    let query = match audience_of(&form) {
        Ok(query) => query,
        Err(problems) => return ApiError::validation(problems).into_response(),
    };
    match actions::audience(&admin, &query).await {
        Ok(size) => Json(size).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "campaign.html")]
struct CampaignPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    row: CampaignRow,
    outbox: Vec<(String, i64)>,
    tokens_sent: i64,
    tokens_failed: i64,
    filter: String,
    cancellable: bool,
}

async fn campaign_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Page<CampaignPage> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no campaign {id}")))?;
    let CampaignDelivery { campaign, outbox, tokens_sent, tokens_failed } =
        data::campaign(admin.pool(), id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))?;
    Ok(CampaignPage {
        cancellable: matches!(campaign.status.as_str(), "pending" | "sending"),
        filter: campaign
            .segment_filter
            .as_ref()
            .map(|f| serde_json::to_string_pretty(f).unwrap_or_default())
            .unwrap_or_default(),
        row: campaign.into(),
        outbox: outbox.into_iter().collect(),
        tokens_sent,
        tokens_failed,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

async fn cancel(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let pushes = actions::cancel(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, id).await?;
    Ok(back_to(&format!("/admin/ui/campaigns/{id}"), &format!("Cancelled; {pushes} pushes not sent")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_composers_example_filter_compiles() {
        let page = include_str!("../../templates/campaigns.html");
        let example = page
            .split("id=\"segment_filter\"")
            .nth(1)
            .and_then(|rest| rest.split("placeholder='").nth(1))
            .and_then(|rest| rest.split('\'').next())
            .expect("the segment filter's placeholder");
        let filter: serde_json::Value = serde_json::from_str(example).expect("the example is JSON");
        let zones = domain::DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None };
        let compiled = domain::campaign::audience_sql("segment", Some(&filter), &zones, 2);
        assert!(compiled.is_ok(), "the example the page shows must be a valid filter: {compiled:?}");
    }

    #[test]
    fn schedule_times_read_as_utc() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T09:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(scheduled_at("", now).unwrap(), now);
        assert_eq!(scheduled_at("2026-12-01T18:30", now).unwrap().to_rfc3339(), "2026-12-01T18:30:00+00:00");
        assert!(scheduled_at("tomorrow", now).unwrap_err().starts_with("scheduled_at:"));
    }
}
