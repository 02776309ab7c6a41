//! What an operator may put in a push (campaigns, test pushes), checked before anything is stored: images over
//! https from a named host, deep links only in the app's schemes, and a message that fits FCM's 4 KB as it is
//! serialised.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::message::{ANALYTICS_LABEL_CHARS, COLLAPSE_KEY_CHARS, MAX_PAYLOAD_BYTES, PushMessage, Ttl};

/// The deep-link schemes accepted unless configured otherwise (`push.deep_link_schemes`): the app's own and
/// https (universal links).
pub const DEFAULT_DEEP_LINK_SCHEMES: &[&str] = &["goalgpt", "https"];

/// The rules an operator's push content is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRules {
    /// Schemes a deep link may use, lower case, without `:`.
    pub deep_link_schemes: Vec<String>,
}

impl Default for ContentRules {
    fn default() -> Self {
        Self { deep_link_schemes: DEFAULT_DEEP_LINK_SCHEMES.iter().map(|s| (*s).to_owned()).collect() }
    }
}

/// Whether `scheme` is a URL scheme as RFC 3986 writes it (a letter, then letters, digits, `+`, `-`, `.`).
pub fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl ContentRules {
    /// What is wrong with an image URL: it must be `https://` on a host name (not an address, no credentials).
    pub fn image_problem(&self, image: &str) -> Option<String> {
        let Ok(url) = url::Url::parse(image) else {
            return Some("must be an https:// URL".to_owned());
        };
        if url.scheme() != "https" {
            return Some("must be an https:// URL".to_owned());
        }
        match url.host() {
            Some(url::Host::Domain(_)) => {}
            Some(_) => return Some("must name a host, not an IP address".to_owned()),
            None => return Some("must name a host".to_owned()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Some("must not carry credentials".to_owned());
        }
        None
    }

    /// What is wrong with a deep link: its scheme must be one of [`ContentRules::deep_link_schemes`].
    pub fn deep_link_problem(&self, link: &str) -> Option<String> {
        let allowed = self.deep_link_schemes.join(", ");
        let Some((scheme, rest)) = link.split_once(':') else {
            return Some(format!("must be a URL in one of the schemes {allowed}"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !self.deep_link_schemes.contains(&scheme) {
            return Some(format!("the scheme {scheme:?} is not one of {allowed} (push.deep_link_schemes)"));
        }
        if rest.is_empty() || link.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Some("must be a URL without spaces or control characters".to_owned());
        }
        None
    }
}

/// The bytes the message with these parts would take on the wire without its token, if that is over FCM's limit
/// (the texts in the language that makes it longest, the `data` as the outbox row carries it, and a lifetime).
pub fn oversize(title: &str, body: &str, image: Option<&str>, data: &BTreeMap<String, String>) -> Option<usize> {
    let message = PushMessage {
        token: String::new(),
        title: title.to_owned(),
        body: body.to_owned(),
        image: image.map(str::to_owned),
        data: data.clone(),
        // The longest lifetime strings a campaign row can give (the TTL is rendered into the message).
        ttl: Some(Ttl { remaining: Duration::from_secs(9_999_999), expires_at_unix: 9_999_999_999 }),
        // And the longest collapse key and label every message carries.
        collapse_key: Some("k".repeat(COLLAPSE_KEY_CHARS)),
        analytics_label: Some("l".repeat(ANALYTICS_LABEL_CHARS)),
    };
    let size = message.payload_size();
    (size > MAX_PAYLOAD_BYTES).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_https_on_a_named_host() {
        let rules = ContentRules::default();
        assert_eq!(rules.image_problem("https://cdn.goalgpt.com/a.png"), None);
        for bad in [
            "http://cdn.goalgpt.com/a.png",
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/x.png",
            "https://[::1]/x.png",
            "https://user:pw@cdn.goalgpt.com/a.png",
            "javascript:alert(1)",
            "cdn.goalgpt.com/a.png",
        ] {
            assert!(rules.image_problem(bad).is_some(), "{bad} was accepted");
        }
    }

    #[test]
    fn deep_links_use_the_configured_schemes() {
        let rules = ContentRules::default();
        assert_eq!(rules.deep_link_problem("goalgpt://matches/42"), None);
        assert_eq!(rules.deep_link_problem("GoalGPT://profile"), None);
        assert_eq!(rules.deep_link_problem("https://goalgpt.com/m/42"), None);
        for bad in ["javascript:alert(1)", "data:text/html,x", "goalgpt", "goalgpt:", "goalgpt://a b", "http://x"] {
            assert!(rules.deep_link_problem(bad).is_some(), "{bad} was accepted");
        }
        let custom = ContentRules { deep_link_schemes: vec!["myapp".to_owned()] };
        assert!(custom.deep_link_problem("goalgpt://x").is_some());
        assert_eq!(custom.deep_link_problem("myapp://x"), None);
    }

    #[test]
    fn size_counts_the_serialised_message() {
        let data = BTreeMap::from([("type".to_owned(), "campaign".to_owned())]);
        assert_eq!(oversize("t", &"x".repeat(3000), None, &data), None);
        // 700 control characters are 700 bytes raw and 4,200 serialised.
        let control = "\u{1}".repeat(700);
        assert!(oversize("t", &control, None, &data).is_some_and(|n| n > 4200));
    }
}
