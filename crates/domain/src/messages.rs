//! The push texts (docs/push.md), in Turkish (the product's own) and English. `{name}` placeholders are filled per
//! user in SQL, from the variables each push row carries.

/// One kind of push: its texts, deep link and `data.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// `data.type` and the text key.
    pub kind: &'static str,
    /// Turkish title.
    pub title_tr: &'static str,
    /// Turkish body.
    pub body_tr: &'static str,
    /// English title.
    pub title_en: &'static str,
    /// English body.
    pub body_en: &'static str,
    /// Deep link opened on tap.
    pub deep_link: &'static str,
}

impl Message {
    /// The distinct `{name}` placeholders of the four texts, in order of first appearance. A name is made of
    /// lowercase ASCII letters, digits and underscores; anything else between braces is literal text.
    pub fn placeholders(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for text in [self.title_tr, self.body_tr, self.title_en, self.body_en] {
            let mut rest = text;
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else { break };
                let name = &after[..close];
                let valid =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if valid && !names.contains(&name) {
                    names.push(name);
                }
                rest = if valid { &after[close + 1..] } else { after };
            }
        }
        names
    }
}

/// A badge was unlocked (`{name_tr}`, `{name_en}`).
pub const BADGE_UNLOCK: Message = Message {
    kind: "badge_unlock",
    title_tr: "Yeni Rozet! 🎖️",
    body_tr: "{name_tr} rozetini kazandın!",
    title_en: "New badge! 🎖️",
    body_en: "You earned the {name_en} badge!",
    deep_link: "goalgpt://badges",
};

/// The referrer's friend logged in (tier 2).
pub const REFERRAL_TIER2: Message = Message {
    kind: "referral_tier2",
    title_tr: "Arkadaşın Giriş Yaptı! 💰",
    body_tr: "Arkadaşın ilk girişini yaptı! {credits} kredi kazandın.",
    title_en: "Your friend joined! 💰",
    body_en: "Your friend signed in for the first time. You earned {credits} credits.",
    deep_link: "goalgpt://referrals",
};

/// The referred user's welcome bonus (tier 2).
pub const WELCOME_BONUS: Message = Message {
    kind: "welcome_bonus",
    title_tr: "Hoş Geldin! 🎁",
    body_tr: "{credits} kredi hediyemiz seninle!",
    title_en: "Welcome! 🎁",
    body_en: "Here are {credits} credits on us!",
    deep_link: "goalgpt://credits",
};

/// The referrer's friend subscribed (tier 3).
pub const REFERRAL_TIER3: Message = Message {
    kind: "referral_tier3",
    title_tr: "Arkadaşın VIP Oldu! 🎉",
    body_tr: "Arkadaşın VIP üye oldu! {credits} kredi + {xp} XP kazandın.",
    title_en: "Your friend went VIP! 🎉",
    body_en: "Your friend became a VIP member. You earned {credits} credits + {xp} XP.",
    deep_link: "goalgpt://referrals",
};

/// The referred user became VIP (tier 3).
pub const WELCOME_VIP: Message = Message {
    kind: "welcome_vip",
    title_tr: "VIP'e Hoş Geldin! 👑",
    body_tr: "VIP ayrıcalıkların açıldı. İyi tahminler!",
    title_en: "Welcome to VIP! 👑",
    body_en: "Your VIP perks are unlocked. Good luck with your picks!",
    deep_link: "goalgpt://home",
};

/// The evening reminder of an unclaimed daily reward (`{credits}`).
pub const DAILY_REWARD_REMINDER: Message = Message {
    kind: "daily_reward_reminder",
    title_tr: "Günlük Ödül 🎁",
    body_tr: "Günlük ödülünü almayı unutma! Bugün {credits} kredi seni bekliyor.",
    title_en: "Daily reward 🎁",
    body_en: "Don't forget your daily reward! {credits} credits are waiting for you today.",
    deep_link: "goalgpt://daily-rewards",
};

/// A live streak not yet extended today (`{streak}`, `{hours}`).
pub const STREAK_WARNING: Message = Message {
    kind: "streak_warning",
    title_tr: "Streak Uyarısı 🔥",
    body_tr: "{streak} günlük serini kaybetme! Gece yarısına {hours} saat kaldı.",
    title_en: "Streak alert 🔥",
    body_en: "Don't lose your {streak}-day streak! {hours} hours left until midnight.",
    deep_link: "goalgpt://home",
};

/// A paid subscription without auto-renew ends soon (`{days}`).
pub const SUBSCRIPTION_EXPIRY: Message = Message {
    kind: "subscription_expiry",
    title_tr: "VIP Üyelik Uyarısı 👑",
    body_tr: "VIP üyeliğin {days} gün sonra sona eriyor. Yenilemeyi unutma!",
    title_en: "VIP membership alert 👑",
    body_en: "Your VIP membership ends in {days} days. Don't forget to renew!",
    deep_link: "goalgpt://paywall",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_collected_once_in_order() {
        assert_eq!(REFERRAL_TIER3.placeholders(), ["credits", "xp"]);
        assert_eq!(BADGE_UNLOCK.placeholders(), ["name_tr", "name_en"]);
        assert!(WELCOME_VIP.placeholders().is_empty());
    }

    #[test]
    fn braces_that_are_not_placeholders_stay_text() {
        let message = Message {
            kind: "k",
            title_tr: "{Not one} {a}{",
            body_tr: "{} {b-c} {{d}}",
            title_en: "",
            body_en: "",
            deep_link: "",
        };
        assert_eq!(message.placeholders(), ["a", "d"]);
    }
}
