//! Configuration: defaults, then a TOML file (`--config` or `HATTRICK_CONFIG`), then `DATABASE_URL` (as in the
//! first version), then `HATTRICK_SECTION__KEY` overrides. Every value is checked at start-up; an invalid one stops
//! hattrick with a message naming the setting and the problem. `hattrick.example.toml` documents every setting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize, Serializer};

use crate::registry;
use engine::MisfirePolicy;
use engine::schedule::{Schedule, parse_time_zone};
use jobs::BadgeAutoUnlock;

/// A database URL: printed with its password hidden.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&db::redact_url(&self.0))
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&db::redact_url(&self.0))
    }
}

/// A duration written as `500ms`, `30s`, `5m`, `3h` or `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `500ms`, `30s`, `5m`, `3h`, `2d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected a whole number and a unit, e.g. 30s or 5m"))?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("invalid duration {text:?}: the unit must be one of ms, s, m, h, d")),
        };
        Ok(Self(Duration::from_millis(number.saturating_mul(unit_ms))))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ms = self.0.as_millis();
        let text = match ms {
            0 => "0s".to_owned(),
            ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
            ms => format!("{ms}ms"),
        };
        serializer.serialize_str(&text)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[database]`
    pub database: DatabaseSettings,
    /// `[time]`
    pub time: TimeSettings,
    /// `[engine]`
    pub engine: EngineSettings,
    /// `[jobs.<name>]`: per-job overrides of the defaults of docs/engine.md.
    pub jobs: BTreeMap<String, JobSettings>,
    /// `[rewards]`
    pub rewards: RewardSettings,
    /// `[push]`
    pub push: PushSettings,
    /// `[engagement]`
    pub engagement: EngagementSettings,
    /// `[cleanup]`
    pub cleanup: CleanupSettings,
    /// `[admin]`
    pub admin: AdminSettings,
    /// `[events]`
    pub events: EventsSettings,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// The app's database (`DATABASE_URL`).
    pub url: Option<DatabaseUrl>,
    /// No longer used (`DATABASE_DIRECT_URL`): event runs once listened on it, and now look at the change table
    /// through `url`. Accepted so that a configuration naming it still loads; [`Settings::deprecations`] says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_url: Option<DatabaseUrl>,
    /// Largest number of connections one instance opens.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: None, direct_url: None, max_connections: 10 }
    }
}

/// `[time]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeSettings {
    /// The business time zone: schedules and business days are read in it.
    pub business_zone: String,
    /// Set when the app writes its dates (`reward_date`, `last_activity_date`) in one fixed zone instead of the
    /// user's (docs/engine.md).
    pub app_day_zone: Option<String>,
}

impl TimeSettings {
    /// The zones are IANA zones.
    fn problems(&self, problems: &mut Vec<String>) {
        if let Err(e) = parse_time_zone(&self.business_zone) {
            problems.push(format!("time.business_zone: {e}"));
        }
        if let Some(zone) = &self.app_day_zone
            && let Err(e) = parse_time_zone(zone)
        {
            problems.push(format!("time.app_day_zone: {e}"));
        }
    }
}

impl Default for TimeSettings {
    fn default() -> Self {
        Self { business_zone: "Europe/Istanbul".to_owned(), app_day_zone: None }
    }
}

/// `[engine]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// A run whose heartbeat is older than this is taken for dead ("abandoned").
    pub lease: HumanDuration,
    /// How often a running job proves it is alive; must be well under `lease`.
    pub heartbeat: HumanDuration,
    /// On SIGTERM, how long running work may take to finish before the instance exits anyway.
    pub shutdown_grace: HumanDuration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease: HumanDuration(Duration::from_secs(60)),
            heartbeat: HumanDuration(Duration::from_secs(15)),
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// `[jobs.<name>]`: each field overrides that job's default; omitted fields keep it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// A disabled job is never scheduled and records nothing.
    pub enabled: Option<bool>,
    /// 5-field cron expression.
    pub schedule: Option<String>,
    /// IANA zone the schedule is read in (default: the business zone).
    pub timezone: Option<String>,
    /// What to do about ticks missed during downtime.
    pub misfire: Option<MisfirePolicy>,
    /// How long one run may take before it is cancelled.
    pub timeout: Option<HumanDuration>,
    /// How many times a failed run is retried.
    pub retries: Option<u32>,
    /// The first retry's delay; each next one doubles it.
    pub retry_backoff: Option<HumanDuration>,
    /// A run stops with an error before it would grant more than this (docs/jobs/README.md).
    pub max_grants: Option<i64>,
    /// A run stops with an error before it would enqueue more pushes than this (docs/jobs/README.md).
    pub max_pushes: Option<i64>,
    /// Chunks one run grants at once, each on its own connection (badge-auto-unlock only; default 1,
    /// docs/jobs/badge-auto-unlock.md).
    pub chunks_at_once: Option<u32>,
    /// Unlocks one chunk grants in its transaction, a user's never split (badge-auto-unlock only; default 10,000,
    /// docs/jobs/badge-auto-unlock.md).
    pub unlocks_per_chunk: Option<u32>,
}

/// `[rewards]`: amounts the jobs pay (docs/jobs/README.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardSettings {
    /// Credits to the referrer when the referred user first logs in (tier 2).
    pub tier2_referrer_credits: i64,
    /// Credits to the referred user at tier 2.
    pub tier2_referred_credits: i64,
    /// Credits to the referrer when the referred user subscribes (tier 3).
    pub tier3_referrer_credits: i64,
    /// XP to the referrer at tier 3.
    pub tier3_referrer_xp: i64,
    /// Credits of daily-reward days 1 to 7.
    pub daily_reward_credits: Vec<i64>,
    /// Partner revenue is counted in this currency; subscriptions in others are reported, not counted.
    pub base_currency: String,
}

impl RewardSettings {
    /// Amounts are not negative; seven daily amounts; a currency code.
    fn problems(&self, problems: &mut Vec<String>) {
        let rewards = self;
        for (field, value) in [
            ("tier2_referrer_credits", rewards.tier2_referrer_credits),
            ("tier2_referred_credits", rewards.tier2_referred_credits),
            ("tier3_referrer_credits", rewards.tier3_referrer_credits),
            ("tier3_referrer_xp", rewards.tier3_referrer_xp),
        ] {
            if value < 0 {
                problems.push(format!("rewards.{field}: must not be negative (got {value})"));
            }
        }
        if rewards.daily_reward_credits.len() != 7 {
            problems.push(format!(
                "rewards.daily_reward_credits: must list 7 amounts, one per cycle day (got {})",
                rewards.daily_reward_credits.len()
            ));
        }
        if let Some((day, value)) = rewards.daily_reward_credits.iter().enumerate().find(|(_, v)| **v < 0) {
            problems.push(format!("rewards.daily_reward_credits[{day}]: must not be negative (got {value})"));
        }
        if rewards.base_currency.len() != 3 || !rewards.base_currency.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push(format!(
                "rewards.base_currency: expected a three-letter currency code such as TRY (got {:?})",
                rewards.base_currency
            ));
        }
    }
}

impl Default for RewardSettings {
    fn default() -> Self {
        // The referral amounts of docs/jobs/referral-tier2.md, docs/jobs/referral-tier3.md are the rewards crate's;
        // configuration only overrides them.
        let referral = jobs::ReferralAmounts::default();
        Self {
            tier2_referrer_credits: referral.tier2_referrer_credits.into(),
            tier2_referred_credits: referral.tier2_referred_credits.into(),
            tier3_referrer_credits: referral.tier3_referrer_credits.into(),
            tier3_referrer_xp: referral.tier3_referrer_xp.into(),
            daily_reward_credits: vec![10, 15, 20, 25, 30, 40, 100],
            base_currency: "TRY".to_owned(),
        }
    }
}

/// `[engagement]`: the local-time jobs (docs/engine.md, docs/jobs/daily-reward-reminders.md,
/// docs/jobs/streak-break-warnings.md, docs/jobs/streak-reset.md, docs/jobs/subscription-expiry-alerts.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngagementSettings {
    /// `daily-reward-reminders`' time on each user's clock (`HH:MM`).
    pub daily_reward_reminder_at: String,
    /// `streak-break-warnings`' time on each user's clock.
    pub streak_warning_at: String,
    /// `subscription-expiry-alerts`' time on each user's clock.
    pub expiry_alert_at: String,
    /// A user first reached more than this after the local time is skipped for the day.
    pub deadline: HumanDuration,
    /// The shortest streak (days) worth a warning.
    pub streak_warning_min_days: i32,
    /// How many days ahead a subscription's end is announced.
    pub expiry_alert_days: u32,
    /// How many statements (connections) decide a zone's users at once.
    pub parallelism: u32,
}

impl EngagementSettings {
    /// Local times, deadline, streak length, parallelism, alert days.
    fn problems(&self, problems: &mut Vec<String>) {
        let engagement = self;
        for field in ["daily_reward_reminder_at", "streak_warning_at", "expiry_alert_at"] {
            if let Err(problem) = engagement.local_time(field) {
                problems.push(problem);
            }
        }
        if engagement.deadline.0.is_zero() {
            problems.push("engagement.deadline: must be more than zero".to_owned());
        }
        if engagement.streak_warning_min_days < 1 {
            problems.push(format!(
                "engagement.streak_warning_min_days: must be at least 1 (got {})",
                engagement.streak_warning_min_days
            ));
        }
        if !(1..=64).contains(&engagement.parallelism) {
            problems.push(format!("engagement.parallelism: must be 1 to 64 (got {})", engagement.parallelism));
        }
        if engagement.expiry_alert_days < 1 {
            problems.push("engagement.expiry_alert_days: must be at least 1 (got 0)".to_owned());
        }
    }
}

impl Default for EngagementSettings {
    fn default() -> Self {
        Self {
            daily_reward_reminder_at: "20:00".to_owned(),
            streak_warning_at: "22:00".to_owned(),
            expiry_alert_at: "10:00".to_owned(),
            deadline: HumanDuration(domain::delivery::DEFAULT_DEADLINE),
            streak_warning_min_days: 3,
            expiry_alert_days: 3,
            parallelism: domain::delivery::DEFAULT_SLICES,
        }
    }
}

impl EngagementSettings {
    /// The local time of the setting `field` (one of the `*_at` fields); the error names the setting.
    pub fn local_time(&self, field: &str) -> Result<chrono::NaiveTime, String> {
        let value = match field {
            "daily_reward_reminder_at" => &self.daily_reward_reminder_at,
            "streak_warning_at" => &self.streak_warning_at,
            _ => &self.expiry_alert_at,
        };
        chrono::NaiveTime::parse_from_str(value, "%H:%M")
            .map_err(|_| format!("engagement.{field}: expected a local time HH:MM, got {value:?}"))
    }
}

/// Bytes in a MiB, the unit of `cleanup.wal_mb_per_second`.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// `[cleanup]`: the housekeeping jobs (docs/jobs/dead-token-cleanup.md, docs/jobs/old-logs-cleanup.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupSettings {
    /// Rows per delete statement.
    pub batch: i64,
    /// `dead-token-cleanup`: a token not updated for this long is deleted.
    pub token_max_age: HumanDuration,
    /// XP and credit ledger rows older than this are folded into carry-forward rows.
    pub keep_ledgers: HumanDuration,
    /// `customer_ad_views`.
    pub keep_ad_views: HumanDuration,
    /// `match_comment_likes`.
    pub keep_likes: HumanDuration,
    /// Finished campaigns.
    pub keep_campaigns: HumanDuration,
    /// `job_execution_logs`.
    pub keep_job_logs: HumanDuration,
    /// `job_execution_logs` rows of event runs (trigger `event`); longer than `keep_job_logs` changes nothing.
    pub keep_event_runs: HumanDuration,
    /// `push_outbox` rows in a final state.
    pub keep_outbox: HumanDuration,
    /// `VACUUM (ANALYZE)` the cleaned tables instead of `ANALYZE` (docs/jobs/old-logs-cleanup.md).
    pub vacuum: bool,
    /// The vacuum's own statement timeout.
    pub vacuum_timeout: HumanDuration,
    /// After each batch, rest this many times as long as the batch took (0 to 100; 0: no rest).
    pub rest: f64,
    /// At most this many MiB of WAL per second, on average, from the batches (0: no cap); a batch rests long
    /// enough for its WAL to fit, and a ledger compaction batch takes as many users as fit in an eighth of a
    /// second of it.
    pub wal_mb_per_second: f64,
}

impl CleanupSettings {
    /// A batch, retentions of at least a day, the rest, the vacuum timeout.
    fn problems(&self, problems: &mut Vec<String>) {
        let cleanup = self;
        if cleanup.batch < 1 {
            problems.push(format!("cleanup.batch: must be at least 1 (got {})", cleanup.batch));
        }
        for (field, value) in [
            ("token_max_age", cleanup.token_max_age),
            ("keep_ledgers", cleanup.keep_ledgers),
            ("keep_ad_views", cleanup.keep_ad_views),
            ("keep_likes", cleanup.keep_likes),
            ("keep_campaigns", cleanup.keep_campaigns),
            ("keep_job_logs", cleanup.keep_job_logs),
            ("keep_event_runs", cleanup.keep_event_runs),
            ("keep_outbox", cleanup.keep_outbox),
        ] {
            if value.0 < Duration::from_secs(86_400) {
                problems.push(format!("cleanup.{field}: must be at least one day, a guard against typos"));
            }
        }
        if !(0.0..=100.0).contains(&cleanup.rest) {
            problems.push(format!("cleanup.rest: must be 0 to 100 (got {})", cleanup.rest));
        }
        if !(0.0..=100_000.0).contains(&cleanup.wal_mb_per_second) {
            problems.push(format!(
                "cleanup.wal_mb_per_second: must be 0 (no cap) to 100000 (got {})",
                cleanup.wal_mb_per_second
            ));
        }
        if cleanup.vacuum && cleanup.vacuum_timeout.0.is_zero() {
            problems.push("cleanup.vacuum_timeout: must be more than zero".to_owned());
        }
    }
}

impl Default for CleanupSettings {
    fn default() -> Self {
        let retention = jobs::old_logs_cleanup::Retention::default();
        Self {
            batch: jobs::cleanup::Batching::default().batch,
            token_max_age: HumanDuration(jobs::DeadTokenCleanup::default().max_age),
            keep_ledgers: HumanDuration(retention.ledgers),
            keep_ad_views: HumanDuration(retention.ad_views),
            keep_likes: HumanDuration(retention.likes),
            keep_campaigns: HumanDuration(retention.campaigns),
            keep_job_logs: HumanDuration(retention.job_logs),
            keep_event_runs: HumanDuration(retention.event_runs),
            keep_outbox: HumanDuration(retention.outbox),
            vacuum: false,
            vacuum_timeout: HumanDuration(Duration::from_secs(30 * 60)),
            rest: jobs::cleanup::Batching::default().rest,
            wal_mb_per_second: jobs::cleanup::DEFAULT_WAL_PER_SECOND / MIB,
        }
    }
}

/// How pushes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// `fcm` when a service account is configured, else `log`.
    Auto,
    /// FCM HTTP v1.
    Fcm,
    /// One JSON line per message on standard output.
    Log,
}

/// `[push]`: delivery (docs/push.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// `auto`, `fcm` or `log`.
    pub transport: TransportKind,
    /// The service-account key file (`FIREBASE_SERVICE_ACCOUNT_PATH`, else `GOOGLE_APPLICATION_CREDENTIALS`).
    pub service_account: Option<PathBuf>,
    /// The service-account key's JSON itself (`FIREBASE_SERVICE_ACCOUNT_JSON`), for platforms that hand secrets
    /// over as environment variables.
    pub service_account_json: Option<Secret>,
    /// Take access tokens from the metadata server of a Google VM, Cloud Run or a GKE workload with Workload
    /// Identity (no key file).
    pub metadata_server: bool,
    /// The metadata server's host (`GCE_METADATA_HOST`, as Google's client libraries read it).
    pub metadata_host: String,
    /// The Firebase project to send in; by default the key's `project_id` or the metadata server's project.
    pub project_id: Option<String>,
    /// FCM's base URL.
    pub fcm_endpoint: String,
    /// Whether `serve` runs the outbox dispatcher.
    pub dispatcher: bool,
    /// Outbox rows claimed per round.
    pub batch: i64,
    /// Sends in flight at once per instance.
    pub concurrency: usize,
    /// Dispatcher rounds in progress at once per instance.
    pub workers: usize,
    /// Messages per minute per instance (default 80 % of FCM's default project quota, docs/push.md).
    pub rate_per_minute: u32,
    /// The longest a dispatcher round may wait idle while it holds its rows; the database then ends the round
    /// and the rows are due again.
    pub lease: HumanDuration,
    /// Start of quiet hours in the user's local time (`HH:MM`), or `off`.
    pub quiet_hours_start: String,
    /// End of quiet hours (`HH:MM`).
    pub quiet_hours_end: String,
    /// Engagement and campaign pushes per user per local day.
    pub daily_cap: i64,
    /// How long a campaign's pushes stay worth sending.
    pub campaign_lifetime: HumanDuration,
    /// Per-request timeout to FCM.
    pub request_timeout: HumanDuration,
    /// The schemes a campaign's or test push's deep link may use (the app's own, and https for universal links).
    pub deep_link_schemes: Vec<String>,
}

/// Whether `authority` (`host[:port]`) names this machine: `localhost`, or a loopback address.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The ways to give hattrick FCM credentials, for messages that name them.
pub const CREDENTIAL_SETTINGS: &str = "push.service_account (FIREBASE_SERVICE_ACCOUNT_PATH or \
GOOGLE_APPLICATION_CREDENTIALS), push.service_account_json (FIREBASE_SERVICE_ACCOUNT_JSON), or \
push.metadata_server = true on Google Cloud";

impl PushSettings {
    /// Whether any FCM credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.service_account.is_some() || self.service_account_json.is_some() || self.metadata_server
    }
}

impl PushSettings {
    /// Quiet hours, batch and rates, the FCM endpoint, deep-link schemes, credentials.
    fn problems(&self, problems: &mut Vec<String>) {
        let push = self;
        if let Err(problem) = push.quiet_hours() {
            problems.push(problem);
        }
        for (field, value) in [("batch", push.batch), ("daily_cap", push.daily_cap)] {
            if value < 1 {
                problems.push(format!("push.{field}: must be at least 1 (got {value})"));
            }
        }
        if push.concurrency == 0 {
            problems.push("push.concurrency: must be at least 1".to_owned());
        }
        if push.workers == 0 {
            problems.push("push.workers: must be at least 1".to_owned());
        }
        if push.rate_per_minute == 0 {
            problems.push("push.rate_per_minute: must be at least 1".to_owned());
        }
        if !push.fcm_endpoint.starts_with("http://") && !push.fcm_endpoint.starts_with("https://") {
            problems
                .push(format!("push.fcm_endpoint: must be an http:// or https:// URL (got {:?})", push.fcm_endpoint));
        } else if let Some(rest) = push.fcm_endpoint.strip_prefix("http://")
            && !is_loopback_authority(rest.split('/').next().unwrap_or_default())
        {
            problems.push(format!(
                "push.fcm_endpoint: plain http:// is accepted only to this machine (a fake or a local proxy): the \
                 OAuth token would travel in clear; use https:// (got {:?})",
                push.fcm_endpoint
            ));
        }
        if push.deep_link_schemes.is_empty() {
            problems.push("push.deep_link_schemes: at least one scheme (the app's, such as goalgpt)".to_owned());
        }
        for scheme in &push.deep_link_schemes {
            if !push::content::valid_scheme(scheme) || scheme.to_ascii_lowercase() != *scheme {
                problems.push(format!("push.deep_link_schemes: {scheme:?} is not a lower-case URL scheme (no `:`)"));
            } else if matches!(scheme.as_str(), "javascript" | "data" | "vbscript" | "file") {
                problems.push(format!("push.deep_link_schemes: {scheme:?} can run code or read files; not allowed"));
            }
        }
        if push.transport == TransportKind::Fcm && !push.has_credentials() {
            problems.push(format!("push.transport: fcm needs credentials: {CREDENTIAL_SETTINGS}"));
        }
    }
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            transport: TransportKind::Auto,
            service_account: None,
            service_account_json: None,
            metadata_server: false,
            metadata_host: push::METADATA_HOST.to_owned(),
            project_id: None,
            fcm_endpoint: "https://fcm.googleapis.com".to_owned(),
            dispatcher: true,
            batch: 1000,
            concurrency: 512,
            workers: 6,
            rate_per_minute: 480_000,
            lease: HumanDuration(Duration::from_secs(300)),
            quiet_hours_start: "23:00".to_owned(),
            quiet_hours_end: "08:00".to_owned(),
            daily_cap: 3,
            campaign_lifetime: HumanDuration(Duration::from_secs(24 * 3600)),
            request_timeout: HumanDuration(Duration::from_secs(10)),
            deep_link_schemes: push::content::DEFAULT_DEEP_LINK_SCHEMES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl PushSettings {
    /// Quiet hours as times, None when `off`; an error names the setting.
    pub fn quiet_hours(&self) -> Result<Option<(chrono::NaiveTime, chrono::NaiveTime)>, String> {
        if self.quiet_hours_start.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let parse = |name: &str, value: &str| {
            chrono::NaiveTime::parse_from_str(value, "%H:%M")
                .map_err(|_| format!("push.{name}: expected HH:MM or off, got {value:?}"))
        };
        Ok(Some((
            parse("quiet_hours_start", &self.quiet_hours_start)?,
            parse("quiet_hours_end", &self.quiet_hours_end)?,
        )))
    }
}

/// `[events]`: reacting to the app's writes (docs/events.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSettings {
    /// Install change-capture triggers (`hattrick migrate`) and start event runs (`serve`); false: the scheduled
    /// sweeps alone (for databases where triggers are not allowed).
    pub enabled: bool,
    /// No longer used: the wait for more changes after a notification, from when the triggers notified. Accepted
    /// so that a configuration naming it still loads; [`Settings::deprecations`] says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debounce: Option<HumanDuration>,
    /// Look at the change table this often: the longest a change waits for its event run to start, and the
    /// batching of bursts.
    pub poll_interval: HumanDuration,
}

impl EventsSettings {
    /// Polling within bounds.
    fn problems(&self, problems: &mut Vec<String>) {
        if self.poll_interval.0 < Duration::from_millis(10) {
            problems.push("events.poll_interval: at least 10ms".to_owned());
        }
    }
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self { enabled: true, debounce: None, poll_interval: HumanDuration(Duration::from_millis(100)) }
    }
}

/// A secret (an admin token): printed and serialised as `<redacted>`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// `[admin]`: the admin API, page and metrics (the `api` role of `serve`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address to listen on (`--listen` overrides it).
    pub listen: String,
    /// The admin token (`HATTRICK_ADMIN_TOKEN`); its writes are recorded as `admin`.
    pub token: Option<Secret>,
    /// Named admin tokens: `name = "secret"`; writes are recorded under the name.
    pub tokens: BTreeMap<String, Secret>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// A request taking longer is answered 408.
    pub request_timeout: HumanDuration,
    /// How long a sign-in to the admin page lasts.
    pub session_ttl: HumanDuration,
    /// Host names the server answers to besides loopback ones (with tokens; empty: any).
    pub allowed_hosts: Vec<String>,
    /// The server is reached through TLS (a proxy in front): cookies are `Secure`, HSTS is sent.
    pub secure_cookies: bool,
    /// A client must send a request's headers within this; idle connections are closed after it.
    pub header_timeout: HumanDuration,
    /// Connections served at once.
    pub max_connections: usize,
    /// A bearer token `/metrics` requires (`HATTRICK_METRICS_TOKEN`); none: `/metrics` is open.
    pub metrics_token: Option<Secret>,
    /// How long `/metrics` reuses the gauges it read from the database.
    pub metrics_cache: HumanDuration,
    /// API and page queries are cancelled after this.
    pub statement_timeout: HumanDuration,
    /// Failed sign-ins to the page allowed per client address and minute.
    pub sign_in_attempts: u32,
}

impl Default for AdminSettings {
    /// The admin server's own defaults (`admin::AdminSettings::new`), written once there.
    fn default() -> Self {
        let defaults = admin::AdminSettings::new(Vec::new(), domain::DayZones::default());
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            token: None,
            tokens: BTreeMap::new(),
            body_limit: defaults.body_limit,
            request_timeout: HumanDuration(defaults.request_timeout),
            session_ttl: HumanDuration(defaults.session_ttl),
            allowed_hosts: defaults.allowed_hosts,
            secure_cookies: defaults.secure_cookies,
            header_timeout: HumanDuration(defaults.header_timeout),
            max_connections: defaults.max_connections,
            metrics_token: None,
            metrics_cache: HumanDuration(defaults.metrics_cache),
            statement_timeout: HumanDuration(defaults.statement_timeout),
            sign_in_attempts: defaults.sign_in_attempts,
        }
    }
}

/// The smallest admin token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LENGTH: usize = 16;

impl AdminSettings {
    /// The admin server's settings: these, with users' `zones` and the content rules of `push`.
    pub fn to_admin(&self, zones: domain::DayZones, push: &PushSettings) -> admin::AdminSettings {
        let tokens = self.named_tokens().into_iter().map(|(name, secret)| admin::AdminToken { name, secret }).collect();
        let mut admin = admin::AdminSettings::new(tokens, zones);
        admin.build = crate::build_info();
        admin.body_limit = self.body_limit;
        admin.request_timeout = self.request_timeout.0;
        admin.session_ttl = self.session_ttl.0;
        admin.allowed_hosts.clone_from(&self.allowed_hosts);
        admin.secure_cookies = self.secure_cookies;
        admin.header_timeout = self.header_timeout.0;
        admin.max_connections = self.max_connections;
        admin.metrics_token = self.metrics_token.as_ref().map(|t| t.expose().to_owned());
        admin.metrics_cache = self.metrics_cache.0;
        admin.statement_timeout = self.statement_timeout.0;
        admin.sign_in_attempts = self.sign_in_attempts;
        admin.content = push::ContentRules { deep_link_schemes: push.deep_link_schemes.clone() };
        admin
    }

    /// Every token with its name (`admin` for `admin.token`).
    pub fn named_tokens(&self) -> Vec<(String, String)> {
        let mut tokens: Vec<(String, String)> =
            self.tokens.iter().map(|(name, secret)| (name.clone(), secret.expose().to_owned())).collect();
        if let Some(token) = &self.token {
            tokens.push(("admin".to_owned(), token.expose().to_owned()));
        }
        tokens
    }

    fn problems(&self, problems: &mut Vec<String>) {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("admin.listen: expected an address such as 127.0.0.1:8080 (got {:?})", self.listen));
        }
        if self.token.is_some() && self.tokens.contains_key("admin") {
            problems
                .push("admin.tokens.admin: the name `admin` belongs to admin.token (HATTRICK_ADMIN_TOKEN)".to_owned());
        }
        let named = self.named_tokens();
        for (name, secret) in &named {
            let setting =
                if self.tokens.contains_key(name) { format!("admin.tokens.{name}") } else { "admin.token".to_owned() };
            if secret.len() < MIN_TOKEN_LENGTH {
                problems.push(format!("{setting}: at least {MIN_TOKEN_LENGTH} characters"));
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
                problems.push(format!("{setting}: a token name is letters, digits, '-', '_' or '.'"));
            }
        }
        for (i, (name, secret)) in named.iter().enumerate() {
            if named[..i].iter().any(|(_, other)| other == secret) {
                problems
                    .push(format!("admin.tokens.{name}: the same secret as another token (each name needs its own)"));
            }
        }
        if self.body_limit < 1024 {
            problems.push(format!("admin.body_limit: at least 1024 bytes (got {})", self.body_limit));
        }
        if self.request_timeout.0.is_zero() {
            problems.push("admin.request_timeout: must be more than zero".to_owned());
        }
        if self.session_ttl.0 < Duration::from_secs(60) {
            problems.push("admin.session_ttl: at least one minute".to_owned());
        }
        for host in &self.allowed_hosts {
            let plain = !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !host.starts_with('.');
            if !plain {
                problems.push(format!("admin.allowed_hosts: {host:?} is not a host name (no scheme, port or path)"));
            }
        }
        for (setting, value) in
            [("header_timeout", self.header_timeout.0), ("statement_timeout", self.statement_timeout.0)]
        {
            if value.is_zero() {
                problems.push(format!("admin.{setting}: must be more than zero"));
            }
        }
        if self.max_connections == 0 {
            problems.push("admin.max_connections: at least 1".to_owned());
        }
        if self.sign_in_attempts == 0 {
            problems.push("admin.sign_in_attempts: at least 1".to_owned());
        }
        if let Some(token) = &self.metrics_token
            && token.expose().len() < MIN_TOKEN_LENGTH
        {
            problems.push(format!("admin.metrics_token: at least {MIN_TOKEN_LENGTH} characters"));
        }
    }
}

/// Why configuration was rejected: every problem found, each naming its setting.
#[derive(Debug)]
pub struct ConfigError {
    /// Where the file came from, if one was read.
    pub file: Option<PathBuf>,
    /// One line per problem, `setting: problem`.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => writeln!(f, "invalid configuration (file {}):", file.display())?,
            None => writeln!(f, "invalid configuration:")?,
        }
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where to read configuration from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file, if any (`--config` or `HATTRICK_CONFIG`).
    pub file: Option<PathBuf>,
    /// The environment, as `(name, value)` pairs (the process environment in production; a fixed list in tests).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process environment and the file it names, unless `file` is given.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file.or_else(|| env.iter().find(|(k, _)| k == "HATTRICK_CONFIG").map(|(_, v)| PathBuf::from(v)));
        Self { file, env }
    }
}

impl Settings {
    /// Reads and checks configuration from `sources`.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let error = |problems: Vec<String>| ConfigError { file: sources.file.clone(), problems };
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = &sources.file {
            if !Path::new(file).is_file() {
                return Err(error(vec![format!("config file {} does not exist", file.display())]));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::finish(figment, sources)
    }

    /// Reads and checks configuration from TOML text alone (no file, no environment): the fuzz target's way in.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let figment = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(text));
        Self::finish(figment, &Sources::default())
    }

    /// Applies the environment of `sources` over `figment`, extracts and checks the settings.
    fn finish(mut figment: Figment, sources: &Sources) -> Result<Self, ConfigError> {
        let error = |problems: Vec<String>| ConfigError { file: sources.file.clone(), problems };
        let lookup = |name: &str| sources.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if let Some(url) = lookup("DATABASE_URL").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        // Application Default Credentials' key file, then the first version's variable, which wins.
        if let Some(path) = lookup("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("push.service_account", path));
        }
        if let Some(path) = lookup("FIREBASE_SERVICE_ACCOUNT_PATH").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("push.service_account", path));
        }
        if let Some(json) = lookup("FIREBASE_SERVICE_ACCOUNT_JSON").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("push.service_account_json", json));
        }
        if let Some(host) = lookup("GCE_METADATA_HOST").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("push.metadata_host", host));
        }
        if let Some(url) = lookup("DATABASE_DIRECT_URL").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("database.direct_url", url));
        }
        if let Some(token) = lookup("HATTRICK_ADMIN_TOKEN").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("admin.token", token));
        }
        if let Some(token) = lookup("HATTRICK_METRICS_TOKEN").filter(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("admin.metrics_token", token));
        }
        // Only `HATTRICK_<SECTION>__<KEY>` are overrides; HATTRICK_CONFIG and HATTRICK_CLOCK are not settings.
        let overrides: Vec<(String, String)> =
            sources.env.iter().filter(|(k, _)| k.starts_with("HATTRICK_") && k.contains("__")).cloned().collect();
        for (name, value) in overrides {
            let key = normalise_job_key(&name["HATTRICK_".len()..].to_ascii_lowercase().replace("__", "."));
            // Numbers, booleans and arrays are read as such, anything else as a string (as figment's Env does).
            let value: figment::value::Value =
                value.parse().unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            figment = figment.merge(Serialized::default(&key, value));
        }
        let settings: Settings =
            figment.extract().map_err(|e| error(e.into_iter().map(|e| describe_figment_error(&e)).collect()))?;
        let problems = settings.problems();
        if problems.is_empty() { Ok(settings) } else { Err(error(problems)) }
    }

    /// Every semantic problem, each as `setting: problem`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.time.problems(&mut problems);
        self.database_and_engine_problems(&mut problems);
        self.job_problems(&mut problems);
        self.rewards.problems(&mut problems);
        self.engagement.problems(&mut problems);
        self.cleanup.problems(&mut problems);
        self.admin.problems(&mut problems);
        self.events.problems(&mut problems);
        self.push.problems(&mut problems);
        problems
    }

    /// The pool (and the dispatcher workers' share of it), and the engine's lease and heartbeat.
    fn database_and_engine_problems(&self, problems: &mut Vec<String>) {
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".to_owned());
        }
        if self.push.dispatcher && self.push.workers >= self.database.max_connections as usize {
            problems.push(format!(
                "push.workers: must be less than database.max_connections ({}): each dispatcher worker holds a \
                 connection for its round, and the jobs need the rest",
                self.database.max_connections
            ));
        }
        if self.engine.heartbeat.0 * 2 > self.engine.lease.0 {
            problems.push(format!(
                "engine.heartbeat: must be at most half of engine.lease ({}), so one late heartbeat does not lose \
                 the lease",
                serde_json::to_string(&self.engine.lease).unwrap_or_default()
            ));
        }
    }

    /// `[jobs.<name>]`: known jobs, their schedules and zones, budgets and timeouts.
    fn job_problems(&self, problems: &mut Vec<String>) {
        for (name, job) in &self.jobs {
            let Some(defaults) = registry::find(name).map(|entry| entry.defaults) else {
                problems.push(format!("jobs.{name}: unknown job (known jobs: {})", registry::names()));
                continue;
            };
            let zone_name = job.timezone.as_deref().unwrap_or(&self.time.business_zone);
            match parse_time_zone(zone_name) {
                Ok(zone) => {
                    if let Err(e) = Schedule::new(job.schedule.as_deref().unwrap_or(defaults.schedule), zone) {
                        problems.push(format!("jobs.{name}.schedule: {e}"));
                    }
                }
                Err(e) if job.timezone.is_some() => problems.push(format!("jobs.{name}.timezone: {e}")),
                Err(_) => {} // already reported as time.business_zone
            }
            for (field, value) in [("max_grants", job.max_grants), ("max_pushes", job.max_pushes)] {
                if let Some(value) = value.filter(|v| *v < 0) {
                    problems.push(format!("jobs.{name}.{field}: must not be negative (got {value})"));
                }
            }
            let chunked = [("chunks_at_once", job.chunks_at_once), ("unlocks_per_chunk", job.unlocks_per_chunk)];
            if name != BadgeAutoUnlock::DEFAULTS.name {
                for (field, _) in chunked.iter().filter(|(_, value)| value.is_some()) {
                    problems
                        .push(format!("jobs.{name}.{field}: only {} grants in chunks", BadgeAutoUnlock::DEFAULTS.name));
                }
            } else {
                if let Some(at_once) = job.chunks_at_once.filter(|n| *n == 0 || *n >= self.database.max_connections) {
                    problems.push(format!(
                        "jobs.{name}.chunks_at_once: must be at least 1 and less than database.max_connections ({}): \
                         each chunk holds a connection (got {at_once})",
                        self.database.max_connections
                    ));
                }
                if job.unlocks_per_chunk == Some(0) {
                    problems.push(format!("jobs.{name}.unlocks_per_chunk: must be at least 1 (got 0)"));
                }
            }
            if job.timeout.is_some_and(|t| t.0.is_zero()) {
                problems.push(format!("jobs.{name}.timeout: must be more than zero"));
            }
        }
    }

    /// The database URL: configuration or `DATABASE_URL`, else the local default.
    pub fn database_url(&self) -> String {
        self.database.url.as_ref().map(|u| u.expose().to_owned()).unwrap_or_else(|| db::DEFAULT_DATABASE_URL.to_owned())
    }

    /// Settings that are accepted but no longer do anything, each as `setting: what to do` (logged at start).
    pub fn deprecations(&self) -> Vec<String> {
        let mut found = Vec::new();
        if self.database.direct_url.is_some() {
            found.push(
                "database.direct_url (DATABASE_DIRECT_URL): no longer used; event runs look at the change table \
                 through database.url every events.poll_interval, so remove it"
                    .to_owned(),
            );
        }
        if self.events.debounce.is_some() {
            found.push(
                "events.debounce: no longer used; events.poll_interval alone sets how long changes gather, so \
                 remove it"
                    .to_owned(),
            );
        }
        found
    }

    /// The configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = String::new();
        write_toml(&mut out, "", &value);
        out
    }
}

/// Job names have hyphens, environment variable names cannot: `HATTRICK_JOBS__BADGE_AUTO_UNLOCK__SCHEDULE` names
/// `jobs.badge-auto-unlock.schedule`.
fn normalise_job_key(key: &str) -> String {
    match key.split('.').collect::<Vec<_>>().as_slice() {
        ["jobs", job, rest @ ..] => {
            let mut parts = vec!["jobs".to_owned(), job.replace('_', "-")];
            parts.extend(rest.iter().map(|s| (*s).to_owned()));
            parts.join(".")
        }
        _ => key.to_owned(),
    }
}

fn describe_figment_error(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let origin = match error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
        _ => String::new(),
    };
    let kind = &error.kind;
    if key.is_empty() { format!("{kind}{origin}") } else { format!("{key}: {kind}{origin}") }
}

/// A minimal TOML writer for printing settings (sections for objects, inline values otherwise).
fn write_toml(out: &mut String, section: &str, value: &serde_json::Value) {
    let Some(map) = value.as_object() else { return };
    let mut nested = Vec::new();
    for (key, value) in map {
        match value {
            serde_json::Value::Object(_) => nested.push((key, value)),
            serde_json::Value::Null => {}
            other => out.push_str(&format!("{} = {}\n", quote_key(key), other)),
        }
    }
    for (key, value) in nested {
        let name = if section.is_empty() { quote_key(key) } else { format!("{section}.{}", quote_key(key)) };
        let has_scalars = value.as_object().is_some_and(|m| m.values().any(|v| !v.is_object() && !v.is_null()));
        if has_scalars || value.as_object().is_some_and(|m| m.is_empty()) {
            out.push_str(&format!("\n[{name}]\n"));
        }
        write_toml(out, &name, value);
    }
}

fn quote_key(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

// The property the `cargo fuzz` target in `fuzz/` checks on arbitrary bytes; `fuzz_corpora` in hattrick's tests
// replays every committed corpus file through it. Panics when the property is broken.
/// Configuration files ([`Settings::from_toml`], the `config` fuzz target): never panics; a rejection lists at least
/// one problem, each naming a setting or the file; an accepted configuration has no problems left and prints without
/// its secrets.
pub fn fuzz_from_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Settings::from_toml(text) {
        Ok(settings) => {
            assert!(settings.problems().is_empty(), "accepted with problems: {:?}", settings.problems());
            let printed = settings.to_redacted_toml();
            for (_, secret) in settings.admin.named_tokens() {
                assert!(!printed.contains(&secret), "a token is printed");
            }
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "a rejected configuration names at least one problem");
            assert!(error.problems.iter().all(|p| !p.trim().is_empty()));
        }
    }
}
