//! One FCM HTTP v1 message (docs/push.md "Message"): what hattrick sends to one token, and its wire form.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// FCM's limit on a message's payload.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// A notification for one device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// The device's registration token.
    pub token: String,
    /// Notification title.
    pub title: String,
    /// Notification body.
    pub body: String,
    /// Optional image shown with the notification.
    pub image: Option<String>,
    /// String key/values delivered to the app (includes `deepLink`).
    pub data: BTreeMap<String, String>,
    /// Remaining lifetime: FCM drops the message after it (`android.ttl`, `apns-expiration`).
    pub ttl: Option<Ttl>,
    /// The same value on every send of one outbox row ([`collapse_key`]): a device shows the row's sends as one
    /// notification (`android.notification.tag`, `apns-collapse-id`, web `Topic`).
    pub collapse_key: Option<String>,
    /// `fcm_options.analytics_label` ([`analytics_label`]): the Firebase console reports delivery per label.
    pub analytics_label: Option<String>,
}

/// The collapse key of the outbox row with dedupe key `dedupe_key`: 32 characters of base64url of its SHA-256,
/// which fits every platform's rule (APNs: at most 64 bytes; web push `Topic`: at most 32 characters of the
/// URL-safe base64 alphabet) and names one row only.
pub fn collapse_key(dedupe_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, dedupe_key.as_bytes());
    let mut key = URL_SAFE_NO_PAD.encode(digest.as_ref());
    key.truncate(COLLAPSE_KEY_CHARS);
    key
}

/// Length of a [`collapse_key`].
pub const COLLAPSE_KEY_CHARS: usize = 32;

/// The longest analytics label FCM accepts.
pub const ANALYTICS_LABEL_CHARS: usize = 50;

/// The analytics label of a push: `campaign-{id}` for a campaign's pushes (`campaign-{id}-v{n}` for an
/// experiment's variant `n`), else its kind (`badge_unlock`, `streak_warning`, ...). Characters FCM refuses (it
/// allows `[A-Za-z0-9-_.~%]`) become `_`; at most 50.
pub fn analytics_label(campaign: Option<uuid::Uuid>, variant: Option<u64>, kind: &str) -> String {
    let label = match (campaign, variant) {
        (Some(id), Some(n)) => format!("campaign-{id}-v{n}"),
        (Some(id), None) => format!("campaign-{id}"),
        (None, _) if kind.is_empty() => "push".to_owned(),
        (None, _) => kind.to_owned(),
    };
    label.chars().take(ANALYTICS_LABEL_CHARS).map(|c| if valid_label_char(c) { c } else { '_' }).collect()
}

/// Whether FCM accepts `c` in an analytics label.
pub fn valid_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '%')
}

/// A message's lifetime, as FCM wants it on each platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// How long from now.
    pub remaining: Duration,
    /// The same instant as Unix seconds (APNs wants an absolute time).
    pub expires_at_unix: i64,
}

/// Why a message cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// No token.
    #[error("the message has no token")]
    NoToken,
    /// The title or body is empty.
    #[error("the message needs a title and a body")]
    Empty,
    /// Over FCM's 4 KB limit.
    #[error("the payload is {0} bytes, over FCM's limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
}

impl PushMessage {
    /// The size of the message as it goes on the wire, without its token: the JSON of notification, data and
    /// platform options, escapes included (a text of control characters is six bytes a character once
    /// serialised). This is what is held to FCM's 4 KB, so a message that passes here is never refused for its
    /// size.
    pub fn payload_size(&self) -> usize {
        serde_json::to_vec(&self.wire(false)).map_or(usize::MAX, |bytes| bytes.len())
    }

    /// Checks the message before it goes out.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        if self.token.is_empty() {
            return Err(InvalidMessage::NoToken);
        }
        self.validate_content()
    }

    /// Checks what every token of a push is sent alike (texts and size), so a push to several devices is checked
    /// once.
    pub fn validate_content(&self) -> Result<(), InvalidMessage> {
        if self.title.is_empty() || self.body.is_empty() {
            return Err(InvalidMessage::Empty);
        }
        let size = self.payload_size();
        if size > MAX_PAYLOAD_BYTES {
            return Err(InvalidMessage::TooLarge(size));
        }
        Ok(())
    }

    /// The `messages:send` request body: Android priority high on channel `default`, APNs sound `default`.
    /// Serialised straight from the message's fields (a sender writes one for every device).
    pub fn wire(&self, with_token: bool) -> Wire<'_> {
        let collapse_key = self.collapse_key.as_deref();
        // Android folds shown notifications by tag; APNs and web push fold by their header. Not Android's
        // `collapse_key`: FCM keeps at most four collapse keys per offline device, and a key per row would lose a
        // phone's pushes beyond four overnight.
        let apns_headers =
            ApnsHeaders { expiration: self.ttl.map(|ttl| ttl.expires_at_unix.to_string()), collapse_id: collapse_key };
        Wire {
            message: WireMessage {
                token: with_token.then_some(self.token.as_str()),
                notification: Notification { title: &self.title, body: &self.body, image: self.image.as_deref() },
                data: &self.data,
                android: Android {
                    priority: "HIGH",
                    ttl: self.ttl.map(|ttl| format!("{}s", ttl.remaining.as_secs())),
                    notification: AndroidNotification { channel_id: "default", tag: collapse_key },
                },
                apns: Apns {
                    headers: (apns_headers.expiration.is_some() || apns_headers.collapse_id.is_some())
                        .then_some(apns_headers),
                    payload: ApnsPayload { aps: Aps { sound: "default" } },
                },
                webpush: collapse_key.map(|topic| WebPush { headers: WebPushHeaders { topic } }),
                fcm_options: self.analytics_label.as_deref().map(|label| FcmOptions { analytics_label: label }),
            },
        }
    }

    /// [`PushMessage::wire`] as a JSON value.
    pub fn to_fcm_json(&self) -> Value {
        serde_json::to_value(self.wire(true)).unwrap_or(Value::Null)
    }
}

/// The body of an FCM `messages:send` request ([`PushMessage::wire`]).
#[derive(Debug, serde::Serialize)]
pub struct Wire<'a> {
    message: WireMessage<'a>,
}

#[derive(Debug, serde::Serialize)]
struct WireMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    notification: Notification<'a>,
    data: &'a BTreeMap<String, String>,
    android: Android<'a>,
    apns: Apns<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webpush: Option<WebPush<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fcm_options: Option<FcmOptions<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct Notification<'a> {
    title: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
}

#[derive(Debug, serde::Serialize)]
struct Android<'a> {
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    notification: AndroidNotification<'a>,
}

#[derive(Debug, serde::Serialize)]
struct AndroidNotification<'a> {
    channel_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
}

#[derive(Debug, serde::Serialize)]
struct Apns<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<ApnsHeaders<'a>>,
    payload: ApnsPayload,
}

#[derive(Debug, serde::Serialize)]
struct ApnsHeaders<'a> {
    #[serde(rename = "apns-expiration", skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    #[serde(rename = "apns-collapse-id", skip_serializing_if = "Option::is_none")]
    collapse_id: Option<&'a str>,
}

#[derive(Debug, serde::Serialize)]
struct ApnsPayload {
    aps: Aps,
}

#[derive(Debug, serde::Serialize)]
struct Aps {
    sound: &'static str,
}

#[derive(Debug, serde::Serialize)]
struct WebPush<'a> {
    headers: WebPushHeaders<'a>,
}

#[derive(Debug, serde::Serialize)]
struct WebPushHeaders<'a> {
    #[serde(rename = "Topic")]
    topic: &'a str,
}

#[derive(Debug, serde::Serialize)]
struct FcmOptions<'a> {
    analytics_label: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> PushMessage {
        PushMessage {
            token: "tok".into(),
            title: "Yeni Rozet!".into(),
            body: "Kazandın".into(),
            image: None,
            data: BTreeMap::from([("deepLink".into(), "goalgpt://badges".into())]),
            ttl: None,
            collapse_key: None,
            analytics_label: None,
        }
    }

    #[test]
    fn a_collapse_key_and_a_label_reach_every_platform() {
        let mut m = message();
        assert!(m.to_fcm_json()["message"].get("webpush").is_none());
        assert!(m.to_fcm_json()["message"].get("fcm_options").is_none());
        let key = collapse_key("badge:0193a3c2-6a57-7c41-9b1e-5d6a1f0e2b11:0193a3c2-6a57-7c41-9b1e-5d6a1f0e2b12");
        m.collapse_key = Some(key.clone());
        m.analytics_label = Some(analytics_label(None, None, "badge_unlock"));
        m.ttl = Some(Ttl { remaining: Duration::from_secs(60), expires_at_unix: 1_800_000_000 });
        let json = m.to_fcm_json();
        let message = &json["message"];
        assert!(message["android"].get("collapse_key").is_none(), "a key per row would cap offline devices at 4");
        assert_eq!(message["android"]["notification"]["tag"], key.as_str());
        assert_eq!(message["android"]["notification"]["channel_id"], "default");
        assert_eq!(message["apns"]["headers"]["apns-collapse-id"], key.as_str());
        assert_eq!(message["apns"]["headers"]["apns-expiration"], "1800000000");
        assert_eq!(message["webpush"]["headers"]["Topic"], key.as_str());
        assert_eq!(message["fcm_options"]["analytics_label"], "badge_unlock");
    }

    #[test]
    fn collapse_keys_fit_every_platform_and_name_one_row() {
        let a = collapse_key("streak:u1:2026-12-05");
        let b = collapse_key("streak:u1:2026-12-06");
        assert_ne!(a, b);
        assert_eq!(a, collapse_key("streak:u1:2026-12-05"));
        for key in [&a, &b, &collapse_key(&"x".repeat(500))] {
            assert_eq!(key.len(), COLLAPSE_KEY_CHARS);
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{key}");
        }
    }

    #[test]
    fn analytics_labels_keep_to_fcms_alphabet_and_length() {
        let id = uuid::Uuid::nil();
        assert_eq!(analytics_label(Some(id), None, "campaign"), format!("campaign-{id}"));
        assert_eq!(analytics_label(Some(id), Some(5), "campaign"), format!("campaign-{id}-v5"));
        assert!(analytics_label(Some(id), Some(5), "campaign").len() <= ANALYTICS_LABEL_CHARS);
        assert_eq!(analytics_label(None, None, "level_up"), "level_up");
        assert_eq!(analytics_label(None, None, ""), "push");
        assert_eq!(analytics_label(None, None, "a b/ç"), "a_b__");
        assert_eq!(analytics_label(None, None, &"k".repeat(80)).len(), ANALYTICS_LABEL_CHARS);
    }

    #[test]
    fn the_wire_form_carries_platform_options_and_string_data() {
        let mut m = message();
        m.ttl = Some(Ttl { remaining: Duration::from_secs(3600), expires_at_unix: 1_800_000_000 });
        let json = m.to_fcm_json();
        assert_eq!(json["message"]["token"], "tok");
        assert_eq!(json["message"]["data"]["deepLink"], "goalgpt://badges");
        assert_eq!(json["message"]["android"]["priority"], "HIGH");
        assert_eq!(json["message"]["android"]["ttl"], "3600s");
        assert_eq!(json["message"]["android"]["notification"]["channel_id"], "default");
        assert_eq!(json["message"]["apns"]["payload"]["aps"]["sound"], "default");
        assert_eq!(json["message"]["apns"]["headers"]["apns-expiration"], "1800000000");
        assert!(json["message"]["notification"].get("image").is_none());
    }

    #[test]
    fn payloads_over_four_kilobytes_are_refused() {
        let mut m = message();
        assert_eq!(m.validate(), Ok(()));
        m.body = "x".repeat(MAX_PAYLOAD_BYTES);
        assert!(matches!(m.validate(), Err(InvalidMessage::TooLarge(n)) if n > MAX_PAYLOAD_BYTES));
        m.body = String::new();
        assert_eq!(m.validate(), Err(InvalidMessage::Empty));
        m.token = String::new();
        assert_eq!(m.validate(), Err(InvalidMessage::NoToken));
    }
}
