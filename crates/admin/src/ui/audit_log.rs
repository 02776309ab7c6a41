//! The audit log.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::{Page, Session, when};
use crate::Admin;
use crate::audit::{self, AuditRecord};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router.route("/admin/ui/audit", get(audit_page))
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    records: Vec<(String, AuditRecord, String)>,
}

async fn audit_page(State(admin): State<Arc<Admin>>, session: Session) -> Page<AuditPage> {
    let records = audit::recent(admin.pool(), 200, None).await?;
    Ok(AuditPage {
        records: records
            .into_iter()
            .map(|r| (when(r.at), r.details.to_string(), r))
            .map(|(w, d, r)| (w, r, d))
            .collect(),
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: None,
    })
}
