//! `/admin/messages`: the push catalogue, its texts per kind and locale, and a deployment's own texts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery};
use crate::auth::Actor;
use crate::error::{ApiError, Body, ErrorBody};
use crate::{Admin, actions, request_id};
use domain::messages::{self, NewText, Rendered, Text};

/// One push kind and its texts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageKind {
    /// The kind (`data.type` of its pushes).
    pub kind: String,
    /// What it is for.
    pub about: String,
    /// Its deep link.
    pub deep_link: String,
    /// The placeholders its texts may use, each with an example value.
    pub placeholders: BTreeMap<String, String>,
    /// Its texts, by locale; a deployment's text beside the built-in one of the same locale replaces it.
    pub texts: Vec<Text>,
}

/// The whole catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Catalogue {
    /// Every push kind, with its texts.
    pub kinds: Vec<MessageKind>,
    /// The locales that have at least one text.
    pub locales: Vec<String>,
    /// Texts hattrick would refuse to start with (a placeholder its kind does not carry, a missing built-in).
    pub problems: Vec<String>,
}

/// The catalogue as the API and the admin page show it.
pub(crate) async fn catalogue(pool: &db::Pool) -> Result<Catalogue, sqlx::Error> {
    let texts = messages::load(pool).await?;
    let problems = messages::catalogue_problems(&texts);
    let mut locales: Vec<String> = texts.iter().map(|t| t.locale.clone()).collect();
    locales.sort();
    locales.dedup();
    let kinds = messages::KINDS
        .iter()
        .map(|m| MessageKind {
            kind: m.kind.to_owned(),
            about: m.about.to_owned(),
            deep_link: m.deep_link.to_owned(),
            placeholders: m.examples(),
            texts: texts.iter().filter(|t| t.kind == m.kind).cloned().collect(),
        })
        .collect();
    Ok(Catalogue { kinds, locales, problems })
}

/// Every push kind with its texts in every locale.
#[utoipa::path(get, path = "/admin/messages", tag = "push",
    responses((status = 200, body = Catalogue, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token")))]
pub(super) async fn list_messages(State(admin): State<Arc<Admin>>) -> Result<Json<Catalogue>, ApiError> {
    Ok(Json(catalogue(admin.pool()).await?))
}

/// A text to store.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageText {
    /// Title, with the kind's `{name}` placeholders.
    pub title: String,
    /// Body, with the kind's `{name}` placeholders.
    pub body: String,
}

/// What a write did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageWritten {
    /// The kind.
    pub kind: String,
    /// The locale, as the catalogue writes it (`pt_BR` is stored as `pt-br`).
    pub locale: String,
    /// Whether it replaced the deployment's previous text of this kind and locale.
    pub replaced: bool,
}

fn known_kind(kind: &str) -> Result<&'static messages::Message, ApiError> {
    messages::kind(kind).ok_or_else(|| ApiError::not_found(format!("no push kind {kind:?}")))
}

/// Stores the deployment's text of a kind in a locale: a new locale, or a replacement for a built-in text. Users
/// of that locale (and of its regional variants without a text of their own) get it from the next push on.
#[utoipa::path(put, path = "/admin/messages/{kind}/{locale}", tag = "push", request_body = MessageText,
    params(("kind" = String, Path, description = "The push kind"), ("locale" = String, Path, description = "The locale, e.g. `de` or `pt-br`")),
    responses((status = 200, body = MessageWritten, description = "Stored"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 404, body = ErrorBody, description = "No such push kind"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn put_message(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath((kind, locale)): ApiPath<(String, String)>,
    Body(text): Body<MessageText>,
) -> Result<Json<MessageWritten>, ApiError> {
    known_kind(&kind)?;
    let text = NewText { kind, locale, title: text.title, body: text.body }.checked().map_err(ApiError::validation)?;
    let now = admin.engine.clock().now();
    let replaced =
        actions::audited_message_put(admin.pool(), &actor.0, request_id(&headers), std::slice::from_ref(&text), now)
            .await?;
    Ok(Json(MessageWritten { kind: text.kind, locale: text.locale, replaced: replaced > 0 }))
}

/// What a removal did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessagesRemoved {
    /// Texts removed (0 or 1).
    pub removed: u64,
}

/// Removes the deployment's text of a kind in a locale; a built-in text of that locale applies again.
#[utoipa::path(delete, path = "/admin/messages/{kind}/{locale}", tag = "push",
    params(("kind" = String, Path, description = "The push kind"), ("locale" = String, Path, description = "The locale")),
    responses((status = 200, body = MessagesRemoved, description = "Removed"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 404, body = ErrorBody, description = "No such kind, or no deployment text of it in this locale")))]
pub(super) async fn remove_message(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath((kind, locale)): ApiPath<(String, String)>,
) -> Result<Json<MessagesRemoved>, ApiError> {
    known_kind(&kind)?;
    let normalised = messages::locale(&locale).map_err(ApiError::not_found)?;
    let now = admin.engine.clock().now();
    let removed =
        actions::audited_message_remove(admin.pool(), &actor.0, request_id(&headers), Some(&kind), &normalised, now)
            .await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no text of the deployment for {kind} in {normalised}")));
    }
    Ok(Json(MessagesRemoved { removed }))
}

/// For which locale to render.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RenderQuery {
    /// A user's locale as the app stores it (`de`, `pt_BR`); default Turkish.
    pub locale: Option<String>,
}

/// A kind's push as a user of a locale would read it (through the fallbacks: the locale, its language, English,
/// Turkish), with the kind's example values.
#[utoipa::path(get, path = "/admin/messages/{kind}/render", tag = "push",
    params(("kind" = String, Path, description = "The push kind"), RenderQuery),
    responses((status = 200, body = Rendered, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"),
              (status = 404, body = ErrorBody, description = "No such push kind, or it has no text"),
              (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn render_message(
    State(admin): State<Arc<Admin>>,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(query): ApiQuery<RenderQuery>,
) -> Result<Json<Rendered>, ApiError> {
    let message = known_kind(&kind)?;
    let locale = match &query.locale {
        Some(raw) => messages::locale(raw).map_err(|e| ApiError::validation([format!("locale: {e}")]))?,
        None => "tr".to_owned(),
    };
    messages::render(admin.pool(), message, &locale, &BTreeMap::new())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{kind} has no text (run `hattrick migrate`)")))
}
