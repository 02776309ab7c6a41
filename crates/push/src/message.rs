//! One FCM HTTP v1 message (docs/push.md "Message"): what hattrick sends to one token, and its wire form.

use std::collections::BTreeMap;
use std::time::Duration;

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
        let mut apns = json!({ "payload": { "aps": { "sound": "default" } } });
        if let Some(ttl) = self.ttl {
            android["ttl"] = json!(format!("{}s", ttl.remaining.as_secs()));
            apns["headers"] = json!({ "apns-expiration": ttl.expires_at_unix.to_string() });
        }
        json!({
            "message": {
                "token": self.token,
                "notification": notification,
                "data": self.data,
                "android": android,
                "apns": apns,
            }
        })
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
        }
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
