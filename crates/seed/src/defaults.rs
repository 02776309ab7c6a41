//! The fixed rows a population needs: the default badges (docs/jobs/badge-auto-unlock.md), subscription plans
//! and a handful of push campaigns.

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::rng;

/// Stream tags of the fixed rows. Badge and plan ids do not depend on the seed: the badges are the same in every
/// population, and a second seed (with `--force`) finds it already installed.
const BADGE_TAG: u64 = 101;
const PLAN_TAG: u64 = 102;
const CAMPAIGN_TAG: u64 = 103;

/// One of the default badges.
#[derive(Debug, Clone)]
pub struct BadgeDefinition {
    /// Unique slug.
    pub slug: &'static str,
    /// Turkish name.
    pub name_tr: &'static str,
    /// English name.
    pub name_en: &'static str,
    /// Turkish description.
    pub description_tr: String,
    /// English description.
    pub description_en: String,
    /// Category shown in the app.
    pub category: &'static str,
    /// common, rare, epic or legendary.
    pub rarity: &'static str,
    /// The unlock condition in the shapes of docs/jobs/badge-auto-unlock.md.
    pub unlock_condition: Value,
    /// XP granted on unlock.
    pub reward_xp: i32,
    /// Credits granted on unlock.
    pub reward_credits: i32,
    /// VIP days granted on unlock.
    pub reward_vip_days: i32,
}

impl BadgeDefinition {
    /// The badge's icon.
    pub fn icon_url(&self) -> String {
        format!("https://cdn.goalgpt.example/badges/{}.png", self.slug)
    }
}

/// A text in the app's two languages.
struct Names<T> {
    tr: T,
    en: T,
}

/// Where a badge shows in the app, and how rare it is.
struct Kind {
    category: &'static str,
    rarity: &'static str,
}

/// What unlocking a badge pays.
struct Rewards {
    xp: i32,
    credits: i32,
    vip_days: i32,
}

impl From<(i32, i32, i32)> for Rewards {
    /// The tables below write rewards as (XP, credits, VIP days).
    fn from((xp, credits, vip_days): (i32, i32, i32)) -> Self {
        Self { xp, credits, vip_days }
    }
}

fn badge(
    slug: &'static str,
    name: Names<&'static str>,
    description: Names<String>,
    kind: Kind,
    unlock_condition: Value,
    rewards: Rewards,
) -> BadgeDefinition {
    BadgeDefinition {
        slug,
        name_tr: name.tr,
        name_en: name.en,
        description_tr: description.tr,
        description_en: description.en,
        category: kind.category,
        rarity: kind.rarity,
        unlock_condition,
        reward_xp: rewards.xp,
        reward_credits: rewards.credits,
        reward_vip_days: rewards.vip_days,
    }
}

/// The default badges of docs/jobs/badge-auto-unlock.md, in display order.
pub fn default_badges() -> Vec<BadgeDefinition> {
    let mut badges = Vec::new();
    for (slug, tr, en, count, rarity, rewards) in [
        ("first_referral", "İlk Davet", "First Referral", 1, "common", (50, 10, 0)),
        ("social_butterfly", "Sosyal Kelebek", "Social Butterfly", 5, "rare", (200, 50, 0)),
        ("influencer", "Fenomen", "Influencer", 20, "epic", (500, 150, 3)),
        ("legend_recruiter", "Efsane Davetçi", "Legend Recruiter", 100, "legendary", (2_000, 500, 30)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names {
                tr: format!("{count} arkadaşını davet et ve giriş yapsınlar"),
                en: format!("Invite {count} friends who sign in"),
            },
            Kind { category: "referral", rarity },
            json!({"type": "referrals", "count": count}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, count, rarity, rewards) in [
        ("lucky_guess", "Şanslı Tahmin", "Lucky Guess", 1, "common", (10, 5, 0)),
        ("prediction_master", "Tahmin Ustası", "Prediction Master", 10, "rare", (100, 25, 0)),
        ("oracle", "Kahin", "Oracle", 50, "epic", (500, 100, 0)),
        ("nostradamus", "Nostradamus", "Nostradamus", 200, "legendary", (2_000, 500, 7)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: format!("{count} doğru tahmin yap"), en: format!("Make {count} correct predictions") },
            Kind { category: "prediction", rarity },
            json!({"type": "predictions", "correct_count": count}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, accuracy, min_count, rarity, rewards) in [
        ("accuracy_king", "İsabet Kralı", "Accuracy King", 70, 20, "epic", (300, 75, 0)),
        ("sharp_shooter", "Keskin Nişancı", "Sharp Shooter", 80, 50, "legendary", (1_000, 250, 3)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names {
                tr: format!("En az {min_count} tahminde %{accuracy} isabet"),
                en: format!("{accuracy}% accuracy over at least {min_count} predictions"),
            },
            Kind { category: "prediction", rarity },
            json!({"type": "predictions", "accuracy": accuracy, "min_count": min_count}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, count, rarity, rewards) in [
        ("first_comment", "İlk Yorum", "First Comment", 1, "common", (10, 5, 0)),
        ("commentator", "Yorumcu", "Commentator", 50, "rare", (100, 25, 0)),
        ("active_voice", "Aktif Ses", "Active Voice", 200, "epic", (300, 75, 0)),
        ("community_leader", "Topluluk Lideri", "Community Leader", 1_000, "legendary", (1_000, 250, 0)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: format!("{count} maç yorumu yaz"), en: format!("Write {count} match comments") },
            Kind { category: "community", rarity },
            json!({"type": "comments", "count": count}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, count, rarity, rewards) in [
        ("liked", "Beğenilen", "Liked", 10, "common", (50, 10, 0)),
        ("crowd_favourite", "Taraftar Favorisi", "Crowd Favourite", 500, "epic", (500, 100, 0)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names {
                tr: format!("Yorumların toplam {count} beğeni alsın"),
                en: format!("Receive {count} likes on your comments"),
            },
            Kind { category: "community", rarity },
            json!({"type": "comments", "like_count": count}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, days, rarity, rewards) in [
        ("streak_3", "3 Günlük Seri", "3-Day Streak", 3, "common", (20, 5, 0)),
        ("streak_7", "7 Günlük Seri", "7-Day Streak", 7, "common", (50, 15, 0)),
        ("streak_14", "14 Günlük Seri", "14-Day Streak", 14, "rare", (100, 30, 0)),
        ("streak_30", "30 Günlük Seri", "30-Day Streak", 30, "epic", (300, 100, 1)),
        ("streak_100", "100 Günlük Seri", "100-Day Streak", 100, "legendary", (1_000, 500, 7)),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: format!("{days} gün üst üste giriş yap"), en: format!("Sign in {days} days in a row") },
            Kind { category: "streak", rarity },
            json!({"type": "login_streak", "days": days}),
            Rewards::from(rewards),
        ));
    }
    for (slug, tr, en, level, level_tr, level_en, rarity, credits) in [
        ("bronze_warrior", "Bronz Savaşçı", "Bronze Warrior", "bronze", "Bronz", "Bronze", "common", 10),
        ("silver_champion", "Gümüş Şampiyon", "Silver Champion", "silver", "Gümüş", "Silver", "common", 25),
        ("gold_legend", "Altın Efsane", "Gold Legend", "gold", "Altın", "Gold", "rare", 50),
        ("platinum_master", "Platin Usta", "Platinum Master", "platinum", "Platin", "Platinum", "epic", 100),
        ("diamond_elite", "Elmas Elit", "Diamond Elite", "diamond", "Elmas", "Diamond", "epic", 250),
        (
            "vip_elite_god",
            "VIP Elite Tanrısı",
            "VIP Elite God",
            "vip_elite",
            "VIP Elite",
            "VIP Elite",
            "legendary",
            500,
        ),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: format!("{level_tr} seviyesine ulaş"), en: format!("Reach the {level_en} level") },
            Kind { category: "level", rarity },
            json!({"type": "xp_level", "level": level}),
            Rewards::from((0, credits, 0)),
        ));
    }
    for (slug, tr, en, amount, rarity, reward_xp) in [
        ("credit_collector", "Kredi Toplayıcı", "Credit Collector", 100, "common", 20),
        ("credit_magnate", "Kredi Patronu", "Credit Magnate", 500, "rare", 50),
        ("credit_tycoon", "Kredi Kralı", "Credit Tycoon", 2_000, "epic", 200),
        ("billionaire", "Milyarder", "Billionaire", 10_000, "legendary", 500),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: format!("Toplam {amount} kredi kazan"), en: format!("Earn {amount} credits in total") },
            Kind { category: "credits", rarity },
            json!({"type": "credits_earned", "amount": amount}),
            Rewards::from((reward_xp, 0, 0)),
        ));
    }
    badges.push(badge(
        "vip_founder",
        Names { tr: "VIP Kurucu", en: "VIP Founder" },
        Names { tr: "VIP üye ol".to_owned(), en: "Become a VIP member".to_owned() },
        Kind { category: "vip", rarity: "rare" },
        json!({"type": "subscription", "any": true}),
        Rewards::from((100, 50, 0)),
    ));
    for (slug, tr, en, description_tr, description_en) in [
        ("beta_tester", "Beta Testçisi", "Beta Tester", "Beta sürümünü test ettin", "You tested the beta"),
        ("founding_member", "Kurucu Üye", "Founding Member", "İlk üyelerimizdensin", "One of our first members"),
    ] {
        badges.push(badge(
            slug,
            Names { tr, en },
            Names { tr: description_tr.to_owned(), en: description_en.to_owned() },
            Kind { category: "special", rarity: "legendary" },
            json!({"type": "manual"}),
            Rewards::from((0, 0, 0)),
        ));
    }
    badges
}

/// Installs the default badges; badges whose slug already exists are left as they are. Returns how
/// many were inserted.
pub async fn install_default_badges(conn: &mut PgConnection, now: DateTime<Utc>) -> anyhow::Result<u64> {
    let mut inserted = 0;
    for (order, badge) in default_badges().iter().enumerate() {
        let id = Uuid::from_bytes(rng::uuid(0, BADGE_TAG, order as u64, 0));
        inserted += sqlx::query!(
            "INSERT INTO badges (id, slug, name_tr, name_en, description_tr, description_en, icon_url, category,
                                 rarity, unlock_condition, reward_xp, reward_credits, reward_vip_days, is_active,
                                 display_order, total_unlocks, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, true, $14, 0, $15, $15)
             ON CONFLICT (slug) DO NOTHING",
            id,
            badge.slug,
            badge.name_tr,
            badge.name_en,
            &badge.description_tr,
            &badge.description_en,
            badge.icon_url(),
            badge.category,
            badge.rarity,
            &badge.unlock_condition,
            badge.reward_xp,
            badge.reward_credits,
            badge.reward_vip_days,
            order as i32 + 1,
            now,
        )
        .execute(db::unnamed(&mut *conn))
        .await
        .with_context(|| format!("inserting badge {}", badge.slug))?
        .rows_affected();
    }
    Ok(inserted)
}

/// A subscription plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) id: [u8; 16],
    pub(crate) name: &'static str,
    pub(crate) platform: &'static str,
    /// List price in kuruş (hundredths of a lira).
    pub(crate) price_cents: i64,
    pub(crate) days: i64,
}

/// The plans: weekly, monthly and yearly VIP on iOS (indexes 0..3) and Android (3..6).
pub(crate) fn plans() -> Vec<Plan> {
    let mut plans = Vec::new();
    for platform in ["ios", "android"] {
        for (name, price_cents, days) in
            [("VIP Haftalık", 4_999, 7), ("VIP Aylık", 14_999, 30), ("VIP Yıllık", 119_999, 365)]
        {
            let index = plans.len() as u64;
            plans.push(Plan { id: rng::uuid(0, PLAN_TAG, index, 0), name, platform, price_cents, days });
        }
    }
    plans
}

/// Installs the plans (once: their ids are the same for every seed). Returns how many were inserted.
pub(crate) async fn install_plans(conn: &mut PgConnection) -> anyhow::Result<u64> {
    let mut inserted = 0;
    for plan in plans() {
        inserted += sqlx::query!(
            "INSERT INTO subscription_plans (id, name, platform, price, duration_in_days, is_active)
             VALUES ($1, $2, $3, $4::bigint::numeric / 100, $5, true)
             ON CONFLICT (id) DO NOTHING",
            Uuid::from_bytes(plan.id),
            plan.name,
            plan.platform,
            plan.price_cents,
            plan.days as i32,
        )
        .execute(db::unnamed(&mut *conn))
        .await
        .with_context(|| format!("inserting subscription plan {} ({})", plan.name, plan.platform))?
        .rows_affected();
    }
    Ok(inserted)
}

/// A campaign: title_tr, title_en, body_tr, body_en, audience, segment filter, scheduled time relative to now,
/// status, and recipients as a percentage of the users.
type CampaignRow =
    (&'static str, &'static str, &'static str, &'static str, &'static str, Option<Value>, Duration, &'static str, i64);

/// Installs a handful of campaigns: some pending in the future, some sent (with delivery counts in proportion
/// to the population), one cancelled and one failed; once per seed. Returns how many were inserted.
pub(crate) async fn install_campaigns(
    conn: &mut PgConnection,
    seed: u64,
    users: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let users = i64::try_from(users).unwrap_or(i64::MAX);
    let campaigns: [CampaignRow; 9] = [
        (
            "Derbi Günü! ⚽",
            "Derby day! ⚽",
            "Bu akşamki derbi için tahminini yap, 2 kat XP kazan!",
            "Make your pick for tonight's derby and earn double XP!",
            "all",
            None,
            Duration::hours(2),
            "pending",
            0,
        ),
        (
            "VIP'lere Özel Analiz 👑",
            "VIP-only analysis 👑",
            "Haftanın maçları için özel analizler yayında.",
            "This week's exclusive match analyses are live.",
            "vip",
            None,
            Duration::days(1),
            "pending",
            0,
        ),
        (
            "Altın ve Üstü Oyunculara 🏆",
            "For Gold players and above 🏆",
            "Seviyene özel turnuva başlıyor!",
            "A tournament for your level is starting!",
            "segment",
            Some(json!({"xp_level": ["gold", "platinum", "diamond", "vip_elite"]})),
            Duration::days(3),
            "pending",
            0,
        ),
        (
            "Seriye Devam 🔥",
            "Keep it going 🔥",
            "7 günlük serin var, bugün de tahminini yap!",
            "You are on a 7-day streak, make today's pick too!",
            "segment",
            Some(json!({"current_streak_days": {"gte": 7}})),
            Duration::days(5),
            "cancelled",
            0,
        ),
        (
            "Hafta Sonu Bonusu 🎁",
            "Weekend bonus 🎁",
            "Hafta sonu tüm tahminlerde ekstra kredi seni bekliyor.",
            "Extra credits on every pick this weekend.",
            "all",
            None,
            -Duration::days(2),
            "sent",
            78,
        ),
        (
            "VIP'i Dene 👑",
            "Try VIP 👑",
            "İlk ay %50 indirimli VIP fırsatını kaçırma.",
            "Don't miss 50% off your first VIP month.",
            "free",
            None,
            -Duration::days(9),
            "sent",
            70,
        ),
        (
            "Şampiyonlar Ligi Gecesi 🌟",
            "Champions League night 🌟",
            "Bu geceki maçlar için tahminler açıldı.",
            "Predictions for tonight's matches are open.",
            "all",
            None,
            -Duration::days(20),
            "sent",
            80,
        ),
        (
            "Yeni Sezon Başlıyor 🏟️",
            "The new season starts 🏟️",
            "Yeni sezonda yeni rozetler seni bekliyor.",
            "New badges are waiting for you this season.",
            "all",
            None,
            -Duration::days(120),
            "sent",
            75,
        ),
        (
            "Seviye Kampanyası",
            "Level campaign",
            "Seviyeni yükselt, ödülleri topla.",
            "Level up and collect rewards.",
            "segment",
            Some(json!({"xp_lvl": {"gte": "gold"}})),
            -Duration::days(40),
            "failed",
            0,
        ),
    ];
    let mut inserted = 0;
    for (k, (title_tr, title_en, body_tr, body_en, audience, filter, offset, status, percent)) in
        campaigns.into_iter().enumerate()
    {
        let scheduled = now + offset;
        let recipients = (status == "sent").then_some(users * percent / 100);
        let success = recipients.map_or(0, |r| r * 96 / 100);
        let failure = recipients.map_or(0, |r| r - r * 96 / 100);
        let sent_at = (status == "sent").then(|| scheduled + Duration::minutes(4));
        let error = (status == "failed").then_some("segment_filter.xp_lvl: unknown field");
        inserted += sqlx::query!(
            "INSERT INTO scheduled_notifications (id, title_tr, title_en, body_tr, body_en, deep_link_url, image_url,
                                                  target_audience, segment_filter, scheduled_at, sent_at, status,
                                                  recipient_count, success_count, failure_count, error, created_at)
             VALUES ($1, $2, $3, $4, $5, 'goalgpt://home', NULL, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (id) DO NOTHING",
            Uuid::from_bytes(rng::uuid(seed, CAMPAIGN_TAG, k as u64, 0)),
            title_tr,
            title_en,
            body_tr,
            body_en,
            audience,
            filter,
            scheduled,
            sent_at,
            status,
            recipients.map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
            i32::try_from(success).unwrap_or(i32::MAX),
            i32::try_from(failure).unwrap_or(i32::MAX),
            error,
            scheduled.min(now) - Duration::days(1),
        )
        .execute(db::unnamed(&mut *conn))
        .await
        .with_context(|| format!("inserting campaign {title_en:?}"))?
        .rows_affected();
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_badges_list_every_slug_of_the_spec_once() {
        let badges = default_badges();
        assert_eq!(badges.len(), 34);
        let mut slugs: Vec<&str> = badges.iter().map(|b| b.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), 34);
        let types: Vec<&str> = badges.iter().filter_map(|b| b.unlock_condition["type"].as_str()).collect();
        assert_eq!(types.len(), 34);
        assert_eq!(badges.iter().filter(|b| b.unlock_condition == json!({"type": "manual"})).count(), 2);
    }
}
