//! The push catalogue: every kind's texts by locale, and the deployment's own texts (add a language, replace a
//! built-in text, remove one).

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::messages::{self, NewText};
use serde::Deserialize;

use super::{Notice, Page, Session, back_to};
use crate::api::messages::{Catalogue, catalogue};
use crate::{Admin, actions, request_id};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router
        .route("/admin/ui/messages", get(messages_page))
        .route("/admin/ui/messages/save", post(save))
        .route("/admin/ui/messages/remove", post(remove))
}

#[derive(Template, WebTemplate)]
#[template(path = "messages.html")]
struct MessagesPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    catalogue: Catalogue,
    /// Each kind's placeholders as written in a text (`{streak}, {hours}`).
    placeholders: Vec<String>,
}

async fn messages_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(notice): Query<Notice>,
) -> Page<MessagesPage> {
    let catalogue = catalogue(admin.pool()).await?;
    let placeholders = catalogue
        .kinds
        .iter()
        .map(|k| k.placeholders.keys().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", "))
        .collect();
    Ok(MessagesPage {
        catalogue,
        placeholders,
        actor: session.token.name.clone(),
        csrf: session.csrf,
        notice: notice.msg,
    })
}

/// The text form.
#[derive(Deserialize)]
struct SaveForm {
    csrf: String,
    kind: String,
    locale: String,
    title: String,
    body: String,
}

/// `POST /admin/ui/messages/save`.
async fn save(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<SaveForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let text = NewText { kind: form.kind, locale: form.locale, title: form.title, body: form.body };
    let text = match text.checked() {
        Ok(text) => text,
        Err(problems) => return Ok(back_to("/admin/ui/messages", &problems.join("; ")).into_response()),
    };
    let now = admin.engine.clock().now();
    let actor = session.actor();
    actions::audited_message_put(admin.pool(), &actor.0, request_id(&headers), std::slice::from_ref(&text), now)
        .await?;
    Ok(back_to("/admin/ui/messages", &format!("Saved the {} text of {}", text.locale, text.kind)).into_response())
}

/// The remove button beside a deployment's text.
#[derive(Deserialize)]
struct RemoveForm {
    csrf: String,
    kind: String,
    locale: String,
}

/// `POST /admin/ui/messages/remove`.
async fn remove(
    State(admin): State<Arc<Admin>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Page<Response> {
    session.check(&form.csrf)?;
    let (Some(kind), Ok(locale)) = (messages::kind(&form.kind), messages::locale(&form.locale)) else {
        return Ok(back_to("/admin/ui/messages", "No such kind or locale").into_response());
    };
    let now = admin.engine.clock().now();
    let actor = session.actor();
    let removed =
        actions::audited_message_remove(admin.pool(), &actor.0, request_id(&headers), Some(kind.kind), &locale, now)
            .await?;
    let message = if removed > 0 {
        format!("Removed the {locale} text of {}", kind.kind)
    } else {
        format!("{} had no text of the deployment in {locale}", kind.kind)
    };
    Ok(back_to("/admin/ui/messages", &message).into_response())
}
