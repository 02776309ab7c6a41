//! The outbox: depth, the oldest due push, recent failures, and sending failed pushes again.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::redrive::PushRedrive;
use serde::Deserialize;

use super::{Notice, Page, Session, back_to, form_time, when};
use crate::actions::{self, By};
use crate::data::{self, OutboxHealth};
use crate::{Admin, request_id};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router.route("/admin/ui/outbox", get(outbox_page)).route("/admin/ui/outbox/redrive", post(redrive))
}

#[derive(Template, WebTemplate)]
#[template(path = "outbox.html")]
struct OutboxPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    outbox: OutboxHealth,
    oldest: String,
    failures: Vec<(String, String)>,
}

async fn outbox_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(notice): Query<Notice>,
) -> Page<OutboxPage> {
    let outbox = data::outbox(admin.pool(), admin.engine.clock().now(), 20).await?;
    Ok(OutboxPage {
        oldest: format!("{:.0} s", outbox.oldest_due_seconds),
        failures: outbox.recent_failures.iter().map(|f| (when(f.created_at), f.customer_user_id.to_string())).collect(),
        outbox,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

/// The retry form: one row (`id`, the button beside a failure) or a filter; every field may be empty.
#[derive(Deserialize)]
struct RedriveForm {
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    campaign_id: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl RedriveForm {
    fn filter(&self) -> Result<PushRedrive, Vec<String>> {
        let mut problems = Vec::new();
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let ids = match text(&self.id).map(|id| id.parse::<i64>()) {
            None => Vec::new(),
            Some(Ok(id)) => vec![id],
            Some(Err(_)) => {
                problems.push(format!("id: {:?} is not an outbox row id", self.id));
                Vec::new()
            }
        };
        let campaign_id = text(&self.campaign_id).and_then(|id| {
            id.parse().map_err(|_| problems.push(format!("campaign_id: {id:?} is not a campaign id (a UUID)"))).ok()
        });
        let mut time = |field: &str, value: &str| form_time(field, value).map_err(|p| problems.push(p)).ok().flatten();
        let (from, to) = (time("from", &self.from), time("to", &self.to));
        let filter = PushRedrive { ids, campaign_id, error: text(&self.error), from, to };
        problems.extend(filter.problems());
        if problems.is_empty() { Ok(filter) } else { Err(problems) }
    }
}

/// `POST /admin/ui/outbox/redrive`.
async fn redrive(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RedriveForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let filter = match form.filter() {
        Ok(filter) => filter,
        Err(problems) => return Ok(back_to("/admin/ui/outbox", &problems.join("; ")).into_response()),
    };
    let done =
        actions::redrive_pushes(&admin, By { actor: &session.actor(), request_id: request_id(&headers) }, &filter)
            .await?;
    let message = format!(
        "Sending {} failed push(es) again; left failed: {} without a live device, {} expired",
        done.redriven, done.no_live_device, done.expired
    );
    Ok(back_to("/admin/ui/outbox", &message).into_response())
}
