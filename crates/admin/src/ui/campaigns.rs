//! The campaigns list and composer (with its live audience count), a campaign, cancel.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
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
    #[serde(default)]
    local_time: String,
    #[serde(default)]
    if_passed: String,
    #[serde(default)]
    variants: String,
    #[serde(default)]
    holdout_percent: String,
    #[serde(default)]
    conversion_event: String,
    #[serde(default)]
    conversion_window_hours: String,
}

impl ComposeForm {
    /// The draft the form describes, or the problems reading its fields (the draft's own rules are checked
    /// when it is created).
    fn draft(&self, audience: AudienceQuery) -> Result<domain::CampaignDraft, Vec<String>> {
        let mut problems = Vec::new();
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let scheduled_at = form_time("scheduled_at", &self.scheduled_at).map_err(|p| problems.push(p)).ok().flatten();
        let local_time = form_time("local_time", &self.local_time)
            .map_err(|p| problems.push(p))
            .ok()
            .flatten()
            .map(|at| at.naive_utc());
        let variants = match optional(&self.variants) {
            None => domain::campaign::Variants::default(),
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
                problems.push(format!("variants: not a JSON array of variants ({e})"));
                domain::campaign::Variants::default()
            }),
        };
        let mut number = |field: &str, text: &str| {
            optional(text).and_then(|t| {
                t.parse::<i32>().map_err(|_| problems.push(format!("{field}: {t:?} is not a number"))).ok()
            })
        };
        let holdout_percent = number("holdout_percent", &self.holdout_percent).filter(|&h| h != 0);
        let conversion_window_hours = number("conversion_window_hours", &self.conversion_window_hours);
        // The conversion fields always post a value: they count only for an experiment.
        let experiment = !variants.0.is_empty() || holdout_percent.is_some();
        let draft = domain::CampaignDraft {
            title_tr: self.title_tr.clone(),
            title_en: optional(&self.title_en),
            body_tr: self.body_tr.clone(),
            body_en: optional(&self.body_en),
            deep_link_url: optional(&self.deep_link_url),
            image_url: optional(&self.image_url),
            target_audience: audience.target_audience,
            segment_filter: audience.segment_filter,
            scheduled_at,
            local_time,
            if_passed: local_time.and(optional(&self.if_passed)),
            variants,
            holdout_percent,
            conversion_event: optional(&self.conversion_event).filter(|_| experiment),
            conversion_window_hours: conversion_window_hours.filter(|_| experiment),
        };
        if problems.is_empty() { Ok(draft) } else { Err(problems) }
    }
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
    let new = match form.draft(query) {
        Ok(draft) => draft,
        Err(problems) => {
            return Ok(render_campaigns(&admin, session, None, form, problems, None).await?.into_response());
        }
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
    /// For a local-time campaign: (zone, when, users), earliest first.
    zones: Vec<(String, String, i64)>,
    /// For an experiment: (group, users, delivered, converted, rate with interval, lift with interval).
    results: Vec<[String; 6]>,
    /// The experiment's conversion, and whether the figures are final.
    conversion: String,
}

async fn campaign_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Page<CampaignPage> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no campaign {id}")))?;
    let CampaignDelivery { campaign, outbox, tokens_sent, tokens_failed, zones } =
        data::campaign(admin.pool(), id, admin.settings.zones.business)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))?;
    let results = data::campaign_results(admin.pool(), id, admin.engine.clock().now()).await?;
    let percent = |x: f64| format!("{:.1} %", 100.0 * x);
    let points = |x: f64| format!("{:+.1}", 100.0 * x);
    Ok(CampaignPage {
        cancellable: matches!(campaign.status.as_str(), "pending" | "sending"),
        filter: campaign
            .segment_filter
            .as_ref()
            .map(|f| serde_json::to_string_pretty(f).unwrap_or_default())
            .unwrap_or_default(),
        zones: zones.into_iter().map(|z| (z.zone, when(z.at), z.users)).collect(),
        conversion: results.as_ref().map_or_else(String::new, |r| {
            format!(
                "{} within {} h of the send{}",
                r.conversion_event,
                r.conversion_window_hours,
                if r.final_figures { "" } else { " (windows still open: not final)" }
            )
        }),
        results: results
            .map(|r| r.groups)
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                [
                    g.name,
                    g.users.to_string(),
                    g.delivered.to_string(),
                    g.converted.to_string(),
                    format!(
                        "{} ({} to {})",
                        percent(g.conversion.value),
                        percent(g.conversion.low),
                        percent(g.conversion.high)
                    ),
                    g.lift.map_or_else(
                        || "—".to_owned(),
                        |l| format!("{} pts ({} to {})", points(l.value), points(l.low), points(l.high)),
                    ),
                ]
            })
            .collect(),
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
    fn form_times_read_as_utc_and_the_form_reads_an_experiment() {
        assert_eq!(form_time("scheduled_at", "").unwrap(), None);
        let at = form_time("scheduled_at", "2026-12-01T18:30").unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T18:30:00+00:00");
        assert!(form_time("scheduled_at", "tomorrow").unwrap_err().starts_with("scheduled_at:"));

        let audience = || AudienceQuery { target_audience: "all".into(), segment_filter: None };
        let form = ComposeForm {
            title_tr: "Derbi".into(),
            body_tr: "Bu akşam".into(),
            local_time: "2026-12-12T19:00".into(),
            if_passed: "skip".into(),
            variants: r#"[{"title_tr": "A", "body_tr": "a"}, {"title_tr": "B", "body_tr": "b", "weight": 3}]"#.into(),
            holdout_percent: "10".into(),
            ..ComposeForm::default()
        };
        let draft = form.draft(audience()).unwrap();
        assert_eq!(draft.local_time.unwrap().to_string(), "2026-12-12 19:00:00");
        assert_eq!((draft.if_passed.as_deref(), draft.holdout_percent), (Some("skip"), Some(10)));
        assert_eq!(draft.variants.0[1].weight, 3);
        let broken = ComposeForm { variants: "[{".into(), holdout_percent: "ten".into(), ..form };
        let problems = broken.draft(audience()).unwrap_err();
        assert!(problems[0].starts_with("variants: not a JSON array"), "{problems:?}");
        assert!(problems[1].starts_with("holdout_percent:"), "{problems:?}");
    }
}
