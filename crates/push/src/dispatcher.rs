//! The outbox dispatcher (docs/push.md "Dispatcher", docs/push.md).
//!
//! A round is one transaction, and each outbox row it takes is written once, at its end:
//! 1. **claim** due `pending` rows (`FOR NO KEY UPDATE SKIP LOCKED`) and hold their locks for the round: no other
//!    dispatcher takes them, and a dispatcher that dies releases them with its connection (the server also ends a
//!    round idle longer than `lease`);
//! 2. **triage** each row in Rust ([`triage`]): gone users and expired or cancelled campaigns end `cancelled`,
//!    opted-out users `opted_out`, quiet hours hold the row to the window's end, the daily cap cancels;
//! 3. **send** one message per active token value of the user (a retried row skips the tokens already final in
//!    `hattrick_push_deliveries`), concurrently up to a bound and paced by the rate limit; a platform whose
//!    authentication failed is skipped while its circuit breaker is open;
//! 4. **record**, with batched statements, and commit: per-token outcomes, dead tokens deactivated, each row final
//!    (`sent` if a token delivered, else `failed`; `no_tokens`) or back to `pending` with a backoff when something
//!    transient is left and the row is younger than the retry window; `attempts` counts the round.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use db::Pool;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::message::{PushMessage, Ttl, analytics_label, collapse_key};
use crate::outcome::Outcome;
use crate::transport::Transport;

/// Quiet hours in the user's local time (docs/push.md "Respect"): held, not dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// When the quiet window starts (default 23:00).
    pub start: NaiveTime,
    /// When it ends (default 08:00); before `start` means the window spans midnight.
    pub end: NaiveTime,
}

impl Default for QuietHours {
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(23, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
        }
    }
}

impl QuietHours {
    /// Whether `local` falls in the window.
    pub fn contains(&self, local: NaiveTime) -> bool {
        if self.start <= self.end {
            local >= self.start && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// The end of the window that contains `local` (a local date-time).
    pub fn window_end(&self, local: NaiveDateTime) -> NaiveDateTime {
        let end_today = local.date().and_time(self.end);
        if end_today > local { end_today } else { end_today + chrono::Duration::days(1) }
    }
}

/// How a dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Rows claimed per round.
    pub batch: i64,
    /// Sends in flight at once (shared by the workers).
    pub concurrency: usize,
    /// Rounds in progress at once: while one waits for FCM, another claims or records.
    pub workers: usize,
    /// Messages per minute at most, per dispatcher (default 80 % of FCM's 600,000 per minute, docs/push.md).
    pub rate_per_minute: u32,
    /// The longest a round may wait idle while it holds its rows (the server then ends its transaction, and the
    /// rows are due again); also how long a row an earlier release left `sending` waits before it returns.
    pub lease: Duration,
    /// Wait between rounds when nothing was due.
    pub idle_poll: Duration,
    /// Quiet hours; None turns them off.
    pub quiet_hours: Option<QuietHours>,
    /// Engagement and campaign pushes per user per local day.
    pub daily_cap: i64,
    /// Transient failures are retried this long after the row was created (docs/push.md: 24 h).
    pub retry_window: Duration,
    /// First retry delay; doubled per attempt, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How long an open circuit breaker waits before a probe.
    pub breaker_probe: Duration,
    /// Zone of users without a valid zone of their own.
    pub business_zone: Tz,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            batch: 1000,
            concurrency: 512,
            workers: 6,
            rate_per_minute: 480_000,
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
            quiet_hours: Some(QuietHours::default()),
            daily_cap: 3,
            retry_window: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            breaker_probe: Duration::from_secs(60),
            business_zone: chrono_tz::Europe::Istanbul,
        }
    }
}

/// A claimed row, with what triage needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// Outbox id.
    pub id: i64,
    /// Rounds that took the row, this one included.
    pub attempts: i32,
    /// Recipient.
    pub customer_user_id: uuid::Uuid,
    /// `reward`, `engagement`, `campaign` or `test`.
    pub category: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Image.
    pub image_url: Option<String>,
    /// Deep link.
    pub deep_link: Option<String>,
    /// Extra data.
    pub data: serde_json::Value,
    /// When it stops being worth sending.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Only tokens on these platforms (a campaign whose segment requires them); None means all.
    pub platforms: Option<Vec<String>>,
    /// The user exists, is active and not deleted.
    pub live: bool,
    /// The user allows pushes.
    pub allowed: bool,
    /// The row's preference category (`rewards`, `streaks`, `reminders`, `subscription`, `campaigns`; none for
    /// test sends).
    pub preference: Option<String>,
    /// The user has not turned that category off.
    pub preferred: bool,
    /// Its priority under the daily cap (3 highest).
    pub priority: i32,
    /// The user's zone (their own if valid, else the business zone).
    pub zone: String,
    /// Its campaign, if it belongs to one.
    pub campaign_id: Option<uuid::Uuid>,
    /// Its campaign's status, if it belongs to one.
    pub campaign_status: Option<String>,
    /// The row's dedupe key (its collapse key on the device).
    pub dedupe_key: String,
    /// Capped pushes of this row's priority or higher already sent to the user since their local midnight.
    pub sent_today: i64,
}

/// What to do with a claimed row before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it.
    Send,
    /// The user opted out of every push (None) or of the row's category: final `opted_out`.
    OptedOut(Option<String>),
    /// Final `cancelled` with this reason.
    Cancel(&'static str),
    /// Back to `pending` until then (quiet hours).
    Hold(DateTime<Utc>),
}

/// Decides a row's fate at `now`; `capped_today` holds, per user, the priorities of the capped pushes this round
/// already let through (the row's `sent_today` counts those sent before), and gains this one's when it goes.
pub fn triage(
    row: &Claimed,
    now: DateTime<Utc>,
    settings: &DispatcherSettings,
    capped_today: &mut HashMap<uuid::Uuid, Vec<i32>>,
) -> Decision {
    if !row.live {
        return Decision::Cancel("user_inactive");
    }
    if row.campaign_status.as_deref() == Some("cancelled") {
        return Decision::Cancel("campaign_cancelled");
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Decision::Cancel("expired");
    }
    if row.category == "test" {
        return Decision::Send;
    }
    if !row.allowed {
        return Decision::OptedOut(None);
    }
    if !row.preferred {
        return Decision::OptedOut(row.preference.clone());
    }
    if let Some(quiet) = settings.quiet_hours {
        let zone: Tz = row.zone.parse().unwrap_or(settings.business_zone);
        let local = now.with_timezone(&zone).naive_local();
        if quiet.contains(local.time()) {
            let end = quiet.window_end(local);
            let until = zone
                .from_local_datetime(&end)
                .earliest()
                .map_or(now + chrono::Duration::hours(1), |at| at.with_timezone(&Utc));
            return Decision::Hold(until);
        }
    }
    if matches!(row.category.as_str(), "engagement" | "campaign") {
        // Only pushes of this priority or higher count (docs/push.md "Daily cap"): those sent before this round,
        // and those this round already let through.
        let round = capped_today.entry(row.customer_user_id).or_default();
        let sent = row.sent_today + round.iter().filter(|&&p| p >= row.priority).count() as i64;
        if sent >= settings.daily_cap {
            return Decision::Cancel("daily_cap");
        }
        round.push(row.priority);
    }
    Decision::Send
}

/// Counters of one dispatcher, since it started.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Messages FCM accepted.
    pub delivered: AtomicU64,
    /// Deliveries failed for good.
    pub failed: AtomicU64,
    /// Deliveries to retry.
    pub retried: AtomicU64,
    /// Token values deactivated.
    pub deactivated: AtomicU64,
    /// Rows ended `sent`.
    pub rows_sent: AtomicU64,
    /// Rows ended `failed`, `no_tokens`, `opted_out` or `cancelled`.
    pub rows_other: AtomicU64,
    /// Rows held (quiet hours, breaker).
    pub rows_held: AtomicU64,
    /// Error codes seen.
    pub errors: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Time FCM took to answer each send (the rate limiter's wait excluded).
    pub latency: crate::histogram::Histogram,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Rows claimed.
    pub claimed: usize,
    /// Messages sent (one per token).
    pub messages: usize,
}

/// Paces sends to a rate: each send reserves the next slot.
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self { interval, next: Mutex::new(tokio::time::Instant::now()) }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            // Idle time is not banked beyond one second's worth of burst.
            let floor = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
            let slot = (*next).max(floor);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Open circuit breakers: platform (or `*` for all) → when a probe may go.
#[derive(Debug, Default)]
struct Breakers {
    open: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Breakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When sending to `platform` may resume, if its breaker (or the global one) is open at `now`.
    fn closed_after(&self, platform: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let open = self.lock();
        [platform, "*"].iter().filter_map(|key| open.get(*key)).copied().filter(|until| *until > now).max()
    }

    fn trip(&self, platform: &str, until: DateTime<Utc>) {
        self.lock().insert(platform.to_owned(), until);
    }

    fn reset(&self, platform: &str) {
        let mut open = self.lock();
        open.remove(platform);
        open.remove("*");
    }
}

/// The ends of a round's rows, as the columns of one batched update.
#[derive(Default)]
struct RowEnds {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    status: Vec<&'static str>,
    not_before: Vec<DateTime<Utc>>,
    sent: Vec<i32>,
    failed: Vec<i32>,
    error: Vec<Option<String>>,
}

impl RowEnds {
    /// Adds `row`'s end.
    fn push(&mut self, row: &Claimed, end: RowEnd) {
        self.ids.push(row.id);
        self.attempts.push(row.attempts);
        self.status.push(end.status);
        self.not_before.push(end.not_before);
        self.sent.push(end.sent);
        self.failed.push(end.failed);
        self.error.push(end.error);
    }

    /// Writes the ends, in the round's transaction that holds the rows' locks.
    async fn write(&self, tx: &mut sqlx::PgConnection, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        // `as _`: statuses are `&str` and errors optional, which the macro's check refuses; both bind as text[].
        sqlx::query!(
            "UPDATE push_outbox o
             SET status = v.status, not_before = v.not_before, attempts = v.attempts,
                 tokens_sent = o.tokens_sent + v.sent, tokens_failed = o.tokens_failed + v.failed,
                 last_error = coalesce(v.error, o.last_error),
                 sent_at = CASE WHEN v.status = 'sent' THEN $8 ELSE o.sent_at END
             FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[], $5::int[], $6::int[], $7::text[])
                  AS v(id, attempts, status, not_before, sent, failed, error)
             WHERE o.id = v.id",
            &self.ids,
            &self.attempts,
            &self.status as _,
            &self.not_before,
            &self.sent,
            &self.failed,
            &self.error as _,
            now,
        )
        .execute(db::unnamed(tx))
        .await?;
        Ok(())
    }
}

/// Where a row ends after a round: its status (`pending` when it returns), when it may be claimed again, the
/// tokens it reached and failed this round, and its last error.
struct RowEnd {
    status: &'static str,
    not_before: DateTime<Utc>,
    sent: i32,
    failed: i32,
    error: Option<String>,
}

/// The per-token outcomes of a round, as the columns of one batched upsert into `hattrick_push_deliveries`.
#[derive(Default)]
struct Deliveries {
    ids: Vec<i64>,
    tokens: Vec<String>,
    platforms: Vec<String>,
    status: Vec<&'static str>,
    errors: Vec<Option<String>>,
}

impl Deliveries {
    fn push(&mut self, row: &Claimed, token: &TokenResult<'_>) {
        self.ids.push(row.id);
        self.tokens.push(token.target.token.clone());
        self.platforms.push(token.target.platform.clone());
        self.status.push(token.status);
        self.errors.push(token.error.clone());
    }

    async fn write(&self, tx: &mut sqlx::PgConnection, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        // `as _`: statuses are `&str` and errors optional, which the macro's check refuses; both bind as text[].
        sqlx::query!(
            "INSERT INTO hattrick_push_deliveries (outbox_id, token, platform, status, error, updated_at)
             SELECT * , $6::timestamptz FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
             ON CONFLICT (outbox_id, token) DO UPDATE
             SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at,
                 attempts = hattrick_push_deliveries.attempts + 1",
            &self.ids,
            &self.tokens,
            &self.platforms,
            &self.status as _,
            &self.errors as _,
            now,
        )
        .execute(db::unnamed(tx))
        .await?;
        Ok(())
    }
}

/// A round's claimed rows and what was decided for them before sending.
struct Batch {
    rows: Vec<Claimed>,
    decisions: Vec<Decision>,
    /// The (row, token) sends, in the order of their outcomes.
    targets: Vec<Target>,
    /// Rows with tokens held back by an open circuit breaker, and until when.
    held_by_breaker: HashMap<usize, DateTime<Utc>>,
    before: Served,
}

/// A row's sends this round.
#[derive(Default)]
struct RowTally {
    sent: i32,
    failed: i32,
    retry_after: Option<Duration>,
    retry: bool,
    last_error: Option<String>,
}

/// One send's outcome as it is recorded.
struct TokenResult<'b> {
    target: &'b Target,
    status: &'static str,
    error: Option<String>,
}

/// A round's outcomes counted per row and per token, and the tokens found dead.
#[derive(Default)]
struct Tally<'b> {
    rows: HashMap<usize, RowTally>,
    tokens: Vec<TokenResult<'b>>,
    dead: Vec<String>,
}

/// What earlier rounds did with the claimed rows' tokens (`hattrick_push_deliveries`, final outcomes only).
struct Served {
    /// (row, token) pairs already final: never sent again.
    tokens: HashSet<(i64, String)>,
    /// Rows with at least one final token.
    rows: HashSet<i64>,
    /// Rows with at least one delivered token.
    delivered: HashSet<i64>,
}

impl From<Vec<(i64, String, String)>> for Served {
    fn from(done: Vec<(i64, String, String)>) -> Self {
        let rows = done.iter().map(|(id, _, _)| *id).collect();
        let delivered = done.iter().filter(|(_, _, status)| status == "sent").map(|(id, _, _)| *id).collect();
        let tokens = done.into_iter().map(|(id, token, _)| (id, token)).collect();
        Self { tokens, rows, delivered }
    }
}

/// A token of a claimed row's user, to send to.
#[derive(Debug, Clone)]
struct Target {
    row: usize,
    token: String,
    platform: String,
}

/// The outbox dispatcher.
#[derive(Debug)]
pub struct Dispatcher {
    pool: Pool,
    transport: Arc<dyn Transport>,
    settings: DispatcherSettings,
    limiter: RateLimiter,
    sends: Semaphore,
    breakers: Breakers,
    /// Counters since start.
    pub stats: DispatchStats,
}

/// Which due rows a round claims.
#[derive(Debug, Clone, Copy)]
enum Claim<'a> {
    /// The oldest due rows, up to the batch size.
    Due,
    /// Only these rows (a test send), whatever else is due.
    Only(&'a [i64]),
}

/// The claim statement (`$4` holds the rows of [`Claim::Only`]). It takes the rows' locks and writes nothing: the
/// round's transaction holds them until the round records its ends.
fn claim_sql(claim: Claim<'_>) -> String {
    let restrict = match claim {
        Claim::Due => "",
        Claim::Only(_) => "AND id = ANY($4)",
    };
    format!(
        "WITH c AS (
             SELECT * FROM push_outbox
             WHERE status = 'pending' AND not_before <= $1 {restrict}
             ORDER BY not_before -- the index order: a second key would sort every due row
             LIMIT $2
             FOR NO KEY UPDATE SKIP LOCKED)
         SELECT c.id, c.attempts + 1 AS attempts, c.customer_user_id, c.category, c.title, c.body, c.image_url,
                c.deep_link, c.data, c.expires_at, c.created_at, c.platforms, c.campaign_id, c.dedupe_key,
                coalesce(u.deleted_at IS NULL AND u.is_active IS NOT FALSE, false) AS live,
                coalesce(u.is_push_allowed_mobile, true) AS allowed,
                k.preference,
                coalesce((SELECT p.enabled FROM hattrick_push_preferences p
                          WHERE p.customer_user_id = c.customer_user_id AND p.category = k.preference),
                         true) AS preferred,
                k.priority,
                coalesce(z.name, $3) AS zone,
                s.status AS campaign_status,
                CASE WHEN c.category IN ('engagement', 'campaign') THEN (
                    SELECT count(*) FROM push_outbox p
                    WHERE p.customer_user_id = c.customer_user_id AND p.status = 'sent'
                      AND p.category IN ('engagement', 'campaign')
                      AND p.sent_at >= (date_trunc('day', $1 AT TIME ZONE coalesce(z.name, $3))
                                        AT TIME ZONE coalesce(z.name, $3))
                      AND hattrick_push_priority(p.category, p.data ->> 'type') >= k.priority)
                ELSE 0 END AS sent_today
         FROM c
         CROSS JOIN LATERAL (
             SELECT hattrick_push_preference_category(c.category, c.data ->> 'type') AS preference,
                    hattrick_push_priority(c.category, c.data ->> 'type') AS priority) k
         LEFT JOIN customer_users u ON u.id = c.customer_user_id
         LEFT JOIN hattrick_time_zones z ON z.name = u.timezone
         LEFT JOIN scheduled_notifications s ON s.id = c.campaign_id
         ORDER BY c.id"
    )
}

impl Dispatcher {
    /// A dispatcher sending through `transport`.
    pub fn new(pool: Pool, transport: Arc<dyn Transport>, settings: DispatcherSettings) -> Self {
        let limiter = RateLimiter::new(settings.rate_per_minute);
        let sends = Semaphore::new(settings.concurrency.max(1));
        Self {
            pool,
            transport,
            settings,
            limiter,
            sends,
            breakers: Breakers::default(),
            stats: DispatchStats::default(),
        }
    }

    /// Returns rows an earlier release left `sending` (it marked its claims) to `pending` once their lease ran
    /// out; returns how many.
    pub async fn reclaim_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query!("UPDATE push_outbox SET status = 'pending' WHERE status = 'sending' AND not_before <= $1", now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// One round at `now`: claim, triage, send, record.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Round, sqlx::Error> {
        self.round_of(now, Claim::Due).await
    }

    /// One round over the given rows only (a test send), whatever else is due.
    pub async fn round_only(&self, now: DateTime<Utc>, ids: &[i64]) -> Result<Round, sqlx::Error> {
        self.round_of(now, Claim::Only(ids)).await
    }

    async fn round_of(&self, now: DateTime<Utc>, claim: Claim<'_>) -> Result<Round, sqlx::Error> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        // A round that stalls while it holds its rows (a hung process, a lost network) is ended by the server
        // after the lease, and its rows are due again. The claim reads the due index in order: with statistics
        // taken before a campaign or a sweep wrote its pushes, the planner would rather fetch every due row and
        // sort them (on disk, with JIT compilation) for each round of a thousand (BENCHMARKS.md, "Push delivery").
        db::query(
            "SELECT set_config('idle_in_transaction_session_timeout', $1, true),
                    set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)",
        )
        .bind(self.settings.lease.as_millis().to_string())
        .execute(&mut *tx)
        .await?;
        let mut query = db::query_as::<Claimed>(sqlx::AssertSqlSafe(claim_sql(claim)))
            .bind(now)
            .bind(self.settings.batch)
            .bind(self.settings.business_zone.name());
        if let Claim::Only(ids) = claim {
            query = query.bind(ids);
        }
        let rows: Vec<Claimed> = query.fetch_all(&mut *tx).await?;
        // Bitmap scans are what the lookups by user below want.
        db::query("SELECT set_config('enable_bitmapscan', 'on', true)").execute(&mut *tx).await?;
        let claimed_in = started.elapsed();
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Round::default());
        }
        let mut capped = HashMap::new();
        let decisions: Vec<Decision> = rows.iter().map(|row| triage(row, now, &self.settings, &mut capped)).collect();

        // Tokens of the users to send to, each value once per user, minus those already final for the row.
        let sending: Vec<usize> = (0..rows.len()).filter(|&i| decisions[i] == Decision::Send).collect();
        let users: Vec<uuid::Uuid> = sending.iter().map(|&i| rows[i].customer_user_id).collect();
        // Only a row an earlier round recorded can have final tokens: a round writes its deliveries and the row's
        // `attempts` in one transaction, and redrive keeps `attempts`. A first claim has nothing to look up.
        let ids: Vec<i64> = sending.iter().filter(|&&i| rows[i].attempts > 1).map(|&i| rows[i].id).collect();
        let tokens = sqlx::query!(
            "SELECT DISTINCT ON (customer_user_id, token) customer_user_id, token, platform
             FROM customer_push_tokens WHERE customer_user_id = ANY($1) AND is_active IS NOT FALSE
             ORDER BY customer_user_id, token, updated_at DESC",
            &users,
        )
        .fetch_all(db::unnamed(&mut tx))
        .await?;
        let done = if ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query!(
                "SELECT outbox_id, token, status FROM hattrick_push_deliveries WHERE outbox_id = ANY($1) AND status <> 'retry'",
                &ids,
            )
            .fetch_all(db::unnamed(&mut tx))
            .await?
        };
        let mut by_user: HashMap<uuid::Uuid, Vec<(String, String)>> = HashMap::new();
        for row in tokens {
            by_user.entry(row.customer_user_id).or_default().push((row.token, row.platform));
        }
        let before =
            Served::from(done.into_iter().map(|row| (row.outbox_id, row.token, row.status)).collect::<Vec<_>>());

        let mut targets = Vec::new();
        let mut held_by_breaker: HashMap<usize, DateTime<Utc>> = HashMap::new();
        for &i in &sending {
            for (token, platform) in by_user.get(&rows[i].customer_user_id).into_iter().flatten() {
                if before.tokens.contains(&(rows[i].id, token.clone())) {
                    continue;
                }
                if rows[i].platforms.as_ref().is_some_and(|only| !only.contains(platform)) {
                    continue;
                }
                if let Some(until) = self.breakers.closed_after(platform, now) {
                    let entry = held_by_breaker.entry(i).or_insert(until);
                    *entry = (*entry).max(until);
                    continue;
                }
                targets.push(Target { row: i, token: token.clone(), platform: platform.clone() });
            }
        }

        let looked_up_in = started.elapsed();
        let results = self.send_all(&rows, &targets, now).await;
        let sent_in = started.elapsed();
        let batch = Batch { rows, decisions, targets, held_by_breaker, before };
        self.record(&mut tx, &batch, &results, now).await?;
        tx.commit().await?;
        tracing::debug!(
            rows = batch.rows.len(),
            messages = batch.targets.len(),
            claim_ms = claimed_in.as_millis(),
            tokens_ms = (looked_up_in - claimed_in).as_millis(),
            send_ms = (sent_in - looked_up_in).as_millis(),
            record_ms = (started.elapsed() - sent_in).as_millis(),
            "dispatcher round"
        );
        Ok(Round { claimed: batch.rows.len(), messages: batch.targets.len() })
    }

    async fn send_all(&self, rows: &[Claimed], targets: &[Target], now: DateTime<Utc>) -> Vec<Outcome> {
        // A row's texts and size are the same for each of its tokens: checked once per row.
        let mut content: HashMap<usize, Option<String>> = HashMap::new();
        let sends = targets.iter().map(|target| {
            let row = &rows[target.row];
            let message = to_message(row, &target.token, now);
            let invalid = if message.token.is_empty() {
                Some(crate::message::InvalidMessage::NoToken.to_string())
            } else {
                content
                    .entry(target.row)
                    .or_insert_with(|| message.validate_content().err().map(|invalid| invalid.to_string()))
                    .clone()
            };
            async move {
                let Ok(_permit) = self.sends.acquire().await else {
                    return Outcome::Retry { code: "SHUTDOWN".into(), after: None };
                };
                if let Some(invalid) = invalid {
                    return Outcome::Failed { code: format!("INVALID_PAYLOAD: {invalid}") };
                }
                self.limiter.wait().await;
                let started = std::time::Instant::now();
                let outcome = self.transport.send(&message).await;
                self.stats.latency.observe(started.elapsed());
                outcome
            }
        });
        futures_util::future::join_all(sends).await
    }

    /// Writes what a round did, in its transaction: each row's end (or its return to pending), the per-token
    /// outcomes a retry or an operator needs, and dead tokens deactivated.
    async fn record(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &Batch,
        results: &[Outcome],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tally = self.tally(batch, results, now);
        let mut retrying = HashSet::new();
        let mut ends = RowEnds::default();
        for (i, row) in batch.rows.iter().enumerate() {
            let end = self.row_end(batch, i, tally.rows.remove(&i).unwrap_or_default(), now);
            if end.status == "pending" && batch.decisions[i] == Decision::Send {
                retrying.insert(i);
            }
            let counter = match end.status {
                "sent" => &self.stats.rows_sent,
                "pending" => &self.stats.rows_held,
                _ => &self.stats.rows_other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            ends.push(row, end);
        }
        // Per-token rows are what a retry needs (the tokens of a returning row already final) and what operators
        // look for (failures); a delivered token of a row that is finished is already counted on the row.
        let mut deliveries = Deliveries::default();
        for token in &tally.tokens {
            if token.status != "sent" || retrying.contains(&token.target.row) {
                deliveries.push(&batch.rows[token.target.row], token);
            }
        }
        deliveries.write(tx, now).await?;
        if !tally.dead.is_empty() {
            let n = sqlx::query!(
                "UPDATE customer_push_tokens SET is_active = false, updated_at = $2
                 WHERE token = ANY($1) AND is_active IS NOT FALSE",
                &tally.dead,
                now,
            )
            .execute(db::unnamed(tx))
            .await?
            .rows_affected();
            self.stats.deactivated.fetch_add(n, Ordering::Relaxed);
        }
        ends.write(tx, now).await
    }

    /// Each send's outcome counted on its row and its token, with the counters, breakers and dead tokens it
    /// affects.
    fn tally<'b>(&self, batch: &'b Batch, results: &[Outcome], now: DateTime<Utc>) -> Tally<'b> {
        let mut tally = Tally::default();
        for (target, outcome) in batch.targets.iter().zip(results) {
            let entry = tally.rows.entry(target.row).or_default();
            let status = match outcome {
                Outcome::Delivered => {
                    entry.sent += 1;
                    self.breakers.reset(&target.platform);
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    "sent"
                }
                Outcome::DeactivateToken { .. } | Outcome::Failed { .. } => {
                    entry.failed += 1;
                    if matches!(outcome, Outcome::DeactivateToken { .. }) {
                        tally.dead.push(target.token.clone());
                    }
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    "failed"
                }
                Outcome::Retry { after, .. } => {
                    entry.retry = true;
                    entry.retry_after = entry.retry_after.max(*after);
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    "retry"
                }
                Outcome::AuthFailure { code } => {
                    // The token is kept and the row stays pending; the platform's breaker opens (docs/push.md).
                    let key = if code == "OAUTH" { "*" } else { target.platform.as_str() };
                    let until = now + chrono::Duration::from_std(self.settings.breaker_probe).unwrap_or_default();
                    self.breakers.trip(key, until);
                    tracing::error!(code = %code, platform = %target.platform, "FCM authentication failed: circuit breaker open");
                    entry.retry = true;
                    entry.retry_after = entry.retry_after.max(Some(self.settings.breaker_probe));
                    "retry"
                }
            };
            if let Some(code) = outcome.code() {
                entry.last_error = Some(code.to_owned());
                *self
                    .stats
                    .errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(code.to_owned())
                    .or_default() += 1;
            }
            tally.tokens.push(TokenResult { target, status, error: outcome.code().map(str::to_owned) });
        }
        tally
    }

    /// Where row `i` of the batch ends: final, or back to pending until a time.
    fn row_end(&self, batch: &Batch, i: usize, sends: RowTally, now: DateTime<Utc>) -> RowEnd {
        let row = &batch.rows[i];
        let young = now - row.created_at < chrono::Duration::from_std(self.settings.retry_window).unwrap_or_default();
        let end = |status, not_before, error| RowEnd { status, not_before, sent: 0, failed: 0, error };
        match &batch.decisions[i] {
            Decision::OptedOut(category) => end("opted_out", now, category.clone()),
            Decision::Cancel(reason) => end("cancelled", now, Some((*reason).to_owned())),
            Decision::Hold(until) => end("pending", *until, Some("quiet_hours".to_owned())),
            Decision::Send => {
                let breaker = batch.held_by_breaker.get(&i).copied();
                let (sent, failed) = (sends.sent, sends.failed);
                if (sends.retry || breaker.is_some()) && young {
                    let backoff = self.backoff(row, sends.retry_after);
                    let at =
                        (now + chrono::Duration::from_std(backoff).unwrap_or_default()).max(breaker.unwrap_or(now));
                    let error = sends.last_error.or(breaker.map(|_| "circuit_open".to_owned()));
                    RowEnd { status: "pending", not_before: at, sent, failed, error }
                } else {
                    let had_tokens_before = batch.before.rows.contains(&row.id);
                    let status = if sent > 0 || batch.before.delivered.contains(&row.id) {
                        "sent"
                    } else if sent + failed == 0 && !sends.retry && breaker.is_none() && !had_tokens_before {
                        "no_tokens"
                    } else {
                        "failed"
                    };
                    RowEnd { status, not_before: now, sent, failed, error: sends.last_error }
                }
            }
        }
    }

    /// Exponential backoff from the row's claim count, at least `at_least`, with up to 20 % jitter drawn from the
    /// row's id and claim count: rows that failed together spread out, and no clock is read for it.
    fn backoff(&self, row: &Claimed, at_least: Option<Duration>) -> Duration {
        let attempts = row.attempts;
        let exp = self.settings.backoff_base.saturating_mul(1u32 << attempts.clamp(1, 16).saturating_sub(1) as u32);
        let capped = exp.min(self.settings.backoff_max);
        let spread = (row.id as u64 ^ (u64::from(attempts.unsigned_abs()) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let jitter = capped.mul_f64((spread >> 54) as f64 / 1024.0 * 0.2);
        (capped + jitter).max(at_least.unwrap_or_default())
    }

    /// Runs `workers` round loops until `cancel` fires; `now` gives the time of each round.
    pub async fn run(&self, cancel: CancellationToken, now: impl Fn() -> DateTime<Utc>) {
        let loops = (0..self.settings.workers.max(1)).map(|worker| self.worker(worker, &cancel, &now));
        futures_util::future::join_all(loops).await;
    }

    async fn worker(&self, worker: usize, cancel: &CancellationToken, now: &impl Fn() -> DateTime<Utc>) {
        let mut last_reclaim = None;
        while !cancel.is_cancelled() {
            let at = now();
            // One worker looks for rows whose dispatcher died.
            if worker == 0 && last_reclaim.is_none_or(|t: DateTime<Utc>| at - t > chrono::Duration::seconds(10)) {
                if let Err(error) = self.reclaim_expired_leases(at).await {
                    tracing::warn!(%error, "reclaiming expired outbox leases failed");
                }
                last_reclaim = Some(at);
            }
            let idle = match self.round(at).await {
                Ok(round) => round.claimed == 0,
                Err(error) => {
                    tracing::warn!(%error, "dispatcher round failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(self.settings.idle_poll) => {}
                }
            }
        }
    }

    /// Runs rounds at `now` until nothing is due (tests and `hattrick push test`); returns the messages sent.
    pub async fn drain(&self, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
        let mut messages = 0;
        loop {
            let round = self.round(now).await?;
            if round.claimed == 0 {
                return Ok(messages);
            }
            messages += round.messages;
        }
    }
}

/// The FCM message of `row` for `token`; `data` values are made strings and carry `deepLink`.
fn to_message(row: &Claimed, token: &str, now: DateTime<Utc>) -> PushMessage {
    let mut data = BTreeMap::new();
    if let Some(object) = row.data.as_object() {
        for (key, value) in object {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            data.insert(key.clone(), value);
        }
    }
    if let Some(link) = &row.deep_link {
        data.entry("deepLink".to_owned()).or_insert_with(|| link.clone());
    }
    let ttl = row
        .expires_at
        .map(|at| Ttl { remaining: (at - now).to_std().unwrap_or_default(), expires_at_unix: at.timestamp() });
    let kind = row.data.get("type").and_then(serde_json::Value::as_str).unwrap_or(&row.category);
    PushMessage {
        token: token.to_owned(),
        title: row.title.clone(),
        body: row.body.clone(),
        image: row.image_url.clone(),
        analytics_label: Some(analytics_label(
            row.campaign_id,
            row.data.get("variant").and_then(serde_json::Value::as_u64),
            kind,
        )),
        collapse_key: Some(collapse_key(&row.dedupe_key)),
        data,
        ttl,
    }
}
