//! The outbox: depth, the oldest due push, recent failures.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::{Page, Session, when};
use crate::Admin;
use crate::data::{self, OutboxHealth};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router.route("/admin/ui/outbox", get(outbox_page))
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

async fn outbox_page(State(admin): State<Arc<Admin>>, session: Session) -> Page<OutboxPage> {
    let outbox = data::outbox(admin.pool(), admin.engine.clock().now(), 20).await?;
    Ok(OutboxPage {
        oldest: format!("{:.0} s", outbox.oldest_due_seconds),
        failures: outbox.recent_failures.iter().map(|f| (when(f.created_at), f.customer_user_id.to_string())).collect(),
        outbox,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: None,
    })
}
