//! One FCM HTTP v1 message (docs/push.md "Message"): what hattrick sends to one token, and its wire form.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

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
        let mut wire = self.to_fcm_json();
        if let Some(message) = wire.get_mut("message").and_then(Value::as_object_mut) {
            message.remove("token");
        }
        serde_json::to_vec(&wire).map_or(usize::MAX, |bytes| bytes.len())
    }

    /// Checks the message before it goes out.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        if self.token.is_empty() {
            return Err(InvalidMessage::NoToken);
        }
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
    pub fn to_fcm_json(&self) -> Value {
        let mut notification = json!({ "title": self.title, "body": self.body });
        if let Some(image) = &self.image {
            notification["image"] = json!(image);
        }
        let mut android = json!({ "priority": "HIGH", "notification": { "channel_id": "default" } });
        let mut apns_headers = serde_json::Map::new();
        if let Some(ttl) = self.ttl {
            android["ttl"] = json!(format!("{}s", ttl.remaining.as_secs()));
            apns_headers.insert("apns-expiration".into(), json!(ttl.expires_at_unix.to_string()));
        }
        let mut message = json!({
            "token": self.token,
            "notification": notification,
            "data": self.data,
        });
        if let Some(key) = &self.collapse_key {
            // Android folds shown notifications by tag; APNs and web push fold by their header. Not Android's
            // `collapse_key`: FCM keeps at most four collapse keys per offline device, and a key per row would
            // lose a phone's pushes beyond four overnight.
            android["notification"]["tag"] = json!(key);
            apns_headers.insert("apns-collapse-id".into(), json!(key));
            message["webpush"] = json!({ "headers": { "Topic": key } });
        }
        let mut apns = json!({ "payload": { "aps": { "sound": "default" } } });
        if !apns_headers.is_empty() {
            apns["headers"] = Value::Object(apns_headers);
        }
        message["android"] = android;
        message["apns"] = apns;
        if let Some(label) = &self.analytics_label {
            message["fcm_options"] = json!({ "analytics_label": label });
        }
        json!({ "message": message })
    }
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
