//! `hattrick demo` (README.md): the whole product on one simulated business day, in under a minute.
//!
//! 1. A database of its own: a throwaway cluster from the machine's PostgreSQL binaries when no `DATABASE_URL`
//!    is set, else a fresh database on that server (never an existing one).
//! 2. The schema (events on), a synthetic population, a fake FCM with a few faults, a campaign for the evening.
//! 3. Sunday 1 November 2026 in the business zone (the weekly and the monthly housekeeping jobs fall on it) on a
//!    clock running about 2,900 times faster than real time: the scheduler, event runs, the dispatcher and the
//!    admin API, while an app simulator logs users in, posts comments, settles predictions, claims daily rewards,
//!    signs up referred friends and sells subscriptions.
//! 4. A summary of what every job did, read from the database; then everything is removed (`--keep` leaves the
//!    database and the admin page up).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use clap::Args;
use db::Pool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::application::{Application, Options, Roles};
use crate::config::Settings;
use crate::outln;
use crate::startup::{self, Definitions};
use engine::Clock;

/// The German texts the demo adds to the catalogue.
const GERMAN: &str = include_str!("../../../../examples/messages/de.toml");

/// Options of `hattrick demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Users in the synthetic population.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=200_000))]
    pub users: u64,
    /// Real seconds the simulated business day takes.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub seconds: u64,
    /// Seed of the population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Leave the database and the admin page up after the day (until Ctrl-C), to explore.
    #[arg(long)]
    pub keep: bool,
}

/// Where the demo's database lives.
enum Place {
    /// A throwaway cluster under the temp directory.
    Cluster { cluster: db::cluster::TempCluster, root: std::path::PathBuf },
    /// A database created on the configured server.
    Server { admin_url: String, name: String },
}

impl Place {
    async fn open(settings: &Settings) -> anyhow::Result<(Self, String)> {
        if settings.database.url.is_none() {
            let root = std::env::temp_dir().join(format!("hattrick-demo-{}", std::process::id()));
            let at = root.clone();
            let cluster =
                tokio::task::spawn_blocking(move || db::cluster::TempCluster::start(&at, 5432)).await?.context(
                    "no DATABASE_URL, so the demo starts a throwaway PostgreSQL from the machine's binaries \
                     (initdb, pg_ctl): install PostgreSQL or set DATABASE_URL",
                )?;
            let url = cluster.url("postgres");
            return Ok((Place::Cluster { cluster, root }, url));
        }
        let admin_url = settings.database_url();
        let name = format!("hattrick_demo_{}", std::process::id());
        let mut admin = db::connect_one(&admin_url, "hattrick demo")
            .await
            .with_context(|| format!("connecting to {}", db::redact_url(&admin_url)))?;
        db::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating the demo database {name} (the demo never uses an existing one)"))?;
        let url = db::with_database(&admin_url, &name);
        Ok((Place::Server { admin_url, name }, url))
    }

    fn describe(&self, url: &str) -> String {
        match self {
            Place::Cluster { root, .. } => format!(
                "{}\n  (a throwaway cluster; stop it with: pg_ctl -D {} stop)",
                db::redact_url(url),
                root.join("data").display()
            ),
            Place::Server { name, .. } => format!("database {name} on {}", db::redact_url(url)),
        }
    }

    async fn remove(self) -> anyhow::Result<()> {
        match self {
            Place::Cluster { cluster, root } => {
                tokio::task::spawn_blocking(move || cluster.destroy(&root)).await??;
            }
            Place::Server { admin_url, name } => {
                let mut admin = db::connect_one(&admin_url, "hattrick demo").await?;
                db::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
            }
        }
        Ok(())
    }
}

/// What the app simulator did.
#[derive(Debug, Default)]
pub struct Activity {
    /// Logins written (users' `last_login_at`, with their streaks).
    pub logins: AtomicU64,
    /// Comments posted.
    pub comments: AtomicU64,
    /// Predictions settled.
    pub settled: AtomicU64,
    /// Daily rewards claimed.
    pub claims: AtomicU64,
    /// Friends signed up with a referral code.
    pub referrals: AtomicU64,
    /// Subscriptions sold.
    pub subscriptions: AtomicU64,
}

/// Runs the demo.
pub async fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let zone = engine::schedule::parse_time_zone(&settings.time.business_zone)?;
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).context("the demo day")?;
    let local = |h: u32, m: u32| {
        zone.from_local_datetime(&day.and_hms_opt(h, m, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .context("a local time of the demo day")
    };
    let begin = local(0, 0)? - chrono::Duration::minutes(10);
    let end = local(0, 0)? + chrono::Duration::days(1);
    outln!("hattrick demo: one business day, Sunday 1 November 2026 ({}), in about {} s", zone.name(), args.seconds);

    let (place, url) = Place::open(settings).await?;
    let outcome = simulate(settings, &args, &url, begin, end).await;
    match (&outcome, args.keep) {
        (Ok(()), true) => {
            outln!("\nKept: {}", place.describe(&url));
            return Ok(ExitCode::SUCCESS);
        }
        _ => place.remove().await.context("removing the demo database")?,
    }
    outcome?;
    outln!("\nDone in {:.1} s; the demo database is gone (--keep leaves it).", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

async fn simulate(
    settings: &Settings,
    args: &DemoArgs,
    url: &str,
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<()> {
    let phase = Instant::now();
    let mut migrator = db::migrate::Migrator::connect(url).await?.with_events(true);
    let plan = migrator.plan().await?;
    migrator.apply(&plan).await?;
    migrator.close().await?;
    let mut options = seed::SeedOptions::new(args.users, args.seed);
    options.now = Some(begin);
    options.business_zone = engine::schedule::parse_time_zone(&settings.time.business_zone)?;
    let report = seed::seed_database(url, &options).await?;
    outln!(
        "\nDatabase ready in {:.1} s: {} users with identities, devices, XP, credits, streaks, referrals, \
         subscriptions, partners, comments, predictions, claims and ad views ({} rows).",
        phase.elapsed().as_secs_f64(),
        args.users,
        report.tables.iter().map(|t| t.rows).sum::<u64>()
    );

    // The outside world: a fake FCM that now and then is unavailable (the dispatcher retries).
    let dir = std::env::temp_dir().join(format!("hattrick-demo-fcm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fake = push::fake::FakeFcm::bind(
        "127.0.0.1:0",
        push::fake::FakeConfig { rate_503: 0.02, latency: Duration::from_millis(2), ..Default::default() },
    )
    .await?;
    let key = dir.join("service-account.json");
    std::fs::write(&key, fake.service_account_json())?;

    let mut settings = settings.clone();
    settings.database.url = Some(crate::config::DatabaseUrl::new(url));
    settings.push.transport = crate::config::TransportKind::Fcm;
    settings.push.service_account = Some(key);
    settings.push.fcm_endpoint = fake.endpoint();
    settings.events.enabled = true;

    let factor = (end - begin).num_milliseconds() as f64 / 1000.0 / args.seconds as f64;
    // The clock holds at the start of the day until everything is set up (the jobs register their first tick
    // from it), then runs.
    let clock = Clock::scaled(begin, factor, SystemTime::now() + Duration::from_secs(2));
    // A coarse real-time poll is a long business interval: ticks missed between two looks fall under their job's
    // misfire policy, as after a short outage.
    let engine_settings = engine::EngineSettings {
        poll_interval: Duration::from_millis(100),
        misfire_grace: Duration::from_millis(100),
        heartbeat: Duration::from_secs(2),
        lease: Duration::from_secs(20),
        shutdown_grace: Duration::from_secs(10),
        max_concurrent_runs: 6,
        ..startup::engine_settings(&settings)
    };
    let roles = Roles { scheduler: true, events: true, dispatcher: true, api: None };
    let options = Options {
        engine: Some(engine_settings),
        events: Some(engine::events::EventSettings { poll_interval: Duration::from_millis(20) }),
        ..Options::new(clock.clone(), roles)
    };
    let application = Application::build(&settings, options).await?;
    let pool = application.engine().pool().clone();
    campaign(&pool, begin).await?;
    // A language the deployment added: the German texts of examples/messages/de.toml, for one user in twenty.
    let german = super::messages::parse_locale_file(GERMAN, "de")
        .map_err(|problems| anyhow::anyhow!("examples/messages/de.toml: {}", problems.join("; ")))?;
    admin::actions::audited_message_put(&pool, "demo", None, &german, begin).await?;
    sqlx::query!("UPDATE customer_users SET locale_preference = 'de' WHERE abs(hashtext(id::text)) % 20 = 0")
        .execute(&pool)
        .await?;

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // The scheduler and the event lane stop claiming at `shutdown` but let the runs they started finish (the day
    // ends without interrupted runs); `runs_stop` cancels whatever is still running after that.
    let runs_stop = CancellationToken::new();
    let running = tokio::spawn(application.run(shutdown.clone(), runs_stop));
    let activity = Arc::new(Activity::default());
    let app_pool = db::connect(
        url,
        &db::PoolSettings {
            application_name: "goalgpt-app (demo)".to_owned(),
            max_connections: 3,
            ..Default::default()
        },
    )
    .await?;
    {
        let (activity, clock, stop) = (Arc::clone(&activity), clock.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(error) = simulate_app(&app_pool, &clock, &activity, &stop).await {
                tracing::warn!(error = %error, "demo: the app simulator stopped");
            }
        });
    }

    outln!("\nSimulating the day (scheduler, event runs, dispatcher, app activity):");
    let mut next_report = begin + chrono::Duration::hours(3);
    while clock.now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if clock.now() >= next_report {
            let local = next_report.with_timezone(&engine::schedule::parse_time_zone(&settings.time.business_zone)?);
            let so_far = sqlx::query!(
                r#"SELECT (SELECT count(*) FROM job_execution_logs WHERE status <> 'skipped') AS "runs!",
                          (SELECT count(*) FROM push_outbox WHERE status = 'sent') AS "pushes!""#,
            )
            .fetch_one(&pool)
            .await?;
            let (runs, pushes) = (so_far.runs, so_far.pushes);
            outln!("  {}  {runs:>5} runs so far, {pushes:>5} pushes delivered", local.format("%H:%M"));
            next_report += chrono::Duration::hours(3);
        }
    }
    shutdown.cancel();
    running.await??;
    while tasks.join_next().await.is_some() {}
    let fcm = fake.stats();

    summary(&pool, begin, end, &activity, fcm.accepted).await?;

    if args.keep {
        keep_admin_page(&settings, url, end).await?;
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// 19:00 on the simulated business day (`begin` is a few minutes before its midnight).
fn evening(begin: DateTime<Utc>) -> chrono::NaiveDateTime {
    let day = (begin + chrono::Duration::hours(1)).with_timezone(&chrono_tz::Europe::Istanbul).date_naive();
    day.and_hms_opt(19, 0, 0).unwrap_or_default()
}

/// The evening campaign, an experiment: a segment of Android users with XP, at 19:00 in each user's zone, two
/// variants and a 20 % holdout, read out as daily-reward claims within 4 hours.
async fn campaign(pool: &Pool, begin: DateTime<Utc>) -> anyhow::Result<()> {
    let local = evening(begin);
    let draft = domain::CampaignDraft {
        title_tr: "Derbi bu akşam!".into(),
        title_en: Some("Derby tonight!".into()),
        body_tr: "Tahminini yap, kredileri kap.".into(),
        body_en: Some("Make your pick, win credits.".into()),
        deep_link_url: Some("goalgpt://matches/derby".into()),
        image_url: None,
        target_audience: "segment".into(),
        segment_filter: Some(serde_json::json!({"platform": "android", "xp_points": {"gte": 100}})),
        scheduled_at: None,
        local_time: Some(local),
        if_passed: Some("skip".into()),
        variants: domain::campaign::Variants(vec![
            domain::campaign::Variant {
                weight: 1,
                title_tr: "Derbi bu akşam!".into(),
                title_en: Some("Derby tonight!".into()),
                body_tr: "Tahminini yap, kredileri kap.".into(),
                body_en: Some("Make your pick, win credits.".into()),
                deep_link_url: None,
                image_url: None,
            },
            domain::campaign::Variant {
                weight: 1,
                title_tr: "Derbi 19:00'da ⚽".into(),
                title_en: Some("Derby at 19:00 ⚽".into()),
                body_tr: "Son şans: tahminini yap, günlük ödülünü al.".into(),
                body_en: Some("Last call: make your pick, claim your daily reward.".into()),
                deep_link_url: Some("goalgpt://daily-rewards".into()),
                image_url: None,
            },
        ]),
        holdout_percent: Some(20),
        conversion_event: Some("daily_reward".into()),
        conversion_window_hours: Some(4),
    }
    .normalized(begin);
    sqlx::query!(
        r#"INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en, deep_link_url, target_audience,
             segment_filter, scheduled_at, status, created_at, local_time, if_passed, variants, holdout_percent,
             conversion_event, conversion_window_hours)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13, $14, $15)"#,
        draft.title_tr,
        draft.title_en,
        draft.body_tr,
        draft.body_en,
        draft.deep_link_url,
        draft.target_audience,
        draft.segment_filter,
        draft.scheduled_at,
        begin,
        draft.local_time,
        draft.if_passed,
        draft.variants.to_column(),
        draft.holdout_percent,
        draft.conversion_event,
        draft.conversion_window_hours,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The app: writes its users' activity with business-time timestamps, as GoalGPT's backend would, until `stop`
/// (the demo, and the chaos test's load). `pool` should not be named `hattrick...`, so the triggers record it.
pub async fn simulate_app(
    pool: &Pool,
    clock: &Clock,
    activity: &Activity,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut round = 0u64;
    while !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(40)).await;
        round += 1;
        let now = clock.now();
        // Logins: a few random users, and now and then a referred friend who has not been paid for yet.
        let logged_in = sqlx::query!(
            "WITH who AS (
                 (SELECT id FROM customer_users WHERE deleted_at IS NULL ORDER BY random() LIMIT 3)
                 UNION
                 (SELECT r.referred_user_id FROM referrals r WHERE r.status = 'pending' AND r.created_at < $1::timestamptz - interval '15 minutes'
                  AND random() < 0.3 LIMIT 1)),
             logins AS (UPDATE customer_users u SET last_login_at = $1 FROM who WHERE u.id = who.id RETURNING u.id)
             UPDATE customer_xp x SET current_streak_days = x.current_streak_days + 1,
                    longest_streak_days = greatest(x.longest_streak_days, x.current_streak_days + 1),
                    last_activity_date = ($1 AT TIME ZONE 'Europe/Istanbul')::date
             FROM logins WHERE x.customer_user_id = logins.id
               AND x.last_activity_date IS DISTINCT FROM ($1 AT TIME ZONE 'Europe/Istanbul')::date",
            now,
        )
        .execute(pool)
        .await?;
        activity.logins.fetch_add(logged_in.rows_affected().max(1), Ordering::Relaxed);
        let comments = sqlx::query!(
            "INSERT INTO match_comments (match_id, customer_user_id, content, created_at, updated_at)
             SELECT 9000 + ($2::int % 40), id, 'Bu maç çok iyi! #' || $2::int, $1, $1
             FROM customer_users WHERE deleted_at IS NULL ORDER BY random() LIMIT 2",
            now,
            i32::try_from(round).unwrap_or(0),
        )
        .execute(pool)
        .await?;
        activity.comments.fetch_add(comments.rows_affected(), Ordering::Relaxed);
        let settled = sqlx::query!(
            "UPDATE customer_predictions SET is_correct = random() < 0.5, settled_at = $1
             WHERE id IN (SELECT id FROM customer_predictions WHERE is_correct IS NULL LIMIT 3)",
            now,
        )
        .execute(pool)
        .await?;
        activity.settled.fetch_add(settled.rows_affected(), Ordering::Relaxed);
        // Daily-reward claims through the ledger function the app calls (docs/ledger.md): a random user, and now and
        // then a user whom a campaign push brought back within two hours of it (what the experiment's read-out
        // counts; the holdout gets no push, so only its own random claims).
        let claimed: Vec<Uuid> = sqlx::query_scalar!(
            r#"INSERT INTO customer_daily_rewards (customer_user_id, reward_date, day_number, reward_type, reward_amount,
                   claimed_at)
               SELECT w.who, ($1::timestamptz AT TIME ZONE 'Europe/Istanbul')::date, 1, 'credits', 10, $1
               FROM ((SELECT id AS who FROM customer_users WHERE deleted_at IS NULL ORDER BY random() LIMIT 1)
                     UNION
                     SELECT o.customer_user_id FROM push_outbox o
                     WHERE o.campaign_id IS NOT NULL AND o.status = 'sent'
                       AND o.sent_at > $1::timestamptz - interval '2 hours' AND random() < 0.004) w
               ON CONFLICT (customer_user_id, reward_date) DO NOTHING
               RETURNING customer_user_id"#,
            now,
        )
        .fetch_all(pool)
        .await?;
        for user in claimed {
            sqlx::query!(
                "SELECT hattrick_grant_credits($1::uuid, 10, 'daily_reward', 'demo-claim:' || $1::uuid || ':' || $2::text, NULL, '{}', $3)",
                user,
                now.date_naive().to_string(),
                now,
            )
            .fetch_all(pool)
            .await?;
            activity.claims.fetch_add(1, Ordering::Relaxed);
        }
        if round.is_multiple_of(12) {
            // A friend signs up with a referral code.
            let friend: Uuid = sqlx::query_scalar!(
                "INSERT INTO customer_users (email, created_at, timezone) VALUES ('friend' || $2::bigint || '@demo.example', $1,
                 'Europe/Istanbul') RETURNING id",
                now,
                i64::try_from(round).unwrap_or(0),
            )
            .fetch_one(pool)
            .await?;
            sqlx::query!(
                "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
                 SELECT id, $2, 'DEMO' || ($3::bigint % 1000), $1::timestamptz, $1::timestamptz + interval '30 days'
                 FROM customer_users WHERE deleted_at IS NULL AND id <> $2 ORDER BY random() LIMIT 1",
                now,
                friend,
                i64::try_from(round).unwrap_or(0),
            )
            .execute(pool)
            .await?;
            activity.referrals.fetch_add(1, Ordering::Relaxed);
        }
        if round.is_multiple_of(15) {
            // A subscription: preferably a friend whose referral was paid at tier 2 (that pays tier 3).
            let sold = sqlx::query!(
                "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, started_at,
                     expired_at, auto_renew_enabled, created_at, updated_at)
                 SELECT who, 'active', 'ios', 99.90, 'TRY', $1::timestamptz, $1::timestamptz + interval '30 days', true, $1, $1
                 FROM (SELECT coalesce(
                     (SELECT referred_user_id FROM referrals WHERE status = 'completed' AND tier = 2 ORDER BY random() LIMIT 1),
                     (SELECT id FROM customer_users WHERE deleted_at IS NULL ORDER BY random() LIMIT 1)) AS who) w",
                now,
            )
            .execute(pool)
            .await?;
            activity.subscriptions.fetch_add(sold.rows_affected(), Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn summary(
    pool: &Pool,
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    activity: &Activity,
    fcm_accepted: u64,
) -> anyhow::Result<()> {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    outln!(
        "\nApp activity: {} logins, {} comments, {} predictions settled, {} daily claims, {} referred friends, \
         {} subscriptions",
        get(&activity.logins),
        get(&activity.comments),
        get(&activity.settled),
        get(&activity.claims),
        get(&activity.referrals),
        get(&activity.subscriptions)
    );

    outln!("\nJobs (runs during the day; items as each job counts them; runs going at midnight were let finish):");
    let jobs = sqlx::query!(
        r#"SELECT job_name,
                  count(*) FILTER (WHERE status = 'success' AND trigger <> 'event') AS "scheduled!",
                  count(*) FILTER (WHERE status = 'success' AND trigger = 'event') AS "events!",
                  count(*) FILTER (WHERE status = 'skipped') AS "skipped!",
                  count(*) FILTER (WHERE status = 'failed') AS "failed!",
                  count(*) FILTER (WHERE status = 'interrupted') AS "interrupted!",
                  coalesce(sum(items_processed), 0)::bigint AS "items!"
           FROM job_execution_logs WHERE started_at >= $1 GROUP BY job_name ORDER BY job_name"#,
        begin,
    )
    .fetch_all(pool)
    .await?;
    outln!(
        "  {:<28} {:>9} {:>7} {:>8} {:>7} {:>11} {:>9}",
        "job",
        "scheduled",
        "events",
        "skipped",
        "failed",
        "interrupted",
        "items"
    );
    for row in &jobs {
        let (job, scheduled, events, skipped, failed) =
            (&row.job_name, row.scheduled, row.events, row.skipped, row.failed);
        let (interrupted, items) = (row.interrupted, row.items);
        outln!("  {job:<28} {scheduled:>9} {events:>7} {skipped:>8} {failed:>7} {interrupted:>11} {items:>9}");
    }

    let badges = sqlx::query!(
        r#"SELECT coalesce(sum(items_processed), 0)::bigint AS "unlocks!",
                  coalesce(sum(items_processed) FILTER (WHERE trigger = 'event'), 0)::bigint AS "by_event!"
           FROM job_execution_logs WHERE job_name = 'badge-auto-unlock' AND status = 'success' AND started_at >= $1"#,
        begin,
    )
    .fetch_one(pool)
    .await?;
    let (unlocks, by_event) = (badges.unlocks, badges.by_event);
    let top = sqlx::query!(
        r#"SELECT b.name_en, count(*) AS "unlocks!" FROM customer_badges cb JOIN badges b ON b.id = cb.badge_id
           WHERE cb.unlocked_at >= $1 GROUP BY b.name_en ORDER BY 2 DESC, 1 LIMIT 4"#,
        begin,
    )
    .fetch_all(pool)
    .await?;
    let top: Vec<String> = top.into_iter().map(|row| format!("{} {}", row.name_en, row.unlocks)).collect();
    outln!(
        "\nBadges: {unlocks} unlocked ({by_event} by event runs within seconds of the app's write); most: {}",
        top.join(", ")
    );

    let referrals = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE idempotency_key LIKE 'referral:%:tier2:referrer') AS "tier2!",
                  count(*) FILTER (WHERE idempotency_key LIKE 'referral:%:tier3:credits') AS "tier3!"
           FROM customer_credit_transactions WHERE created_at >= $1"#,
        begin,
    )
    .fetch_one(pool)
    .await?;
    let (tier2, tier3) = (referrals.tier2, referrals.tier3);
    outln!("Referrals paid: tier 2 (first login) {tier2}, tier 3 (subscription) {tier3}");

    outln!("\nPushes written during the day, by kind (the dispatcher's outcome for each):");
    struct Kind {
        kind: String,
        sent: i64,
        held: i64,
        capped: i64,
        opted_out: i64,
        no_device: i64,
        expired: i64,
        quiet: i64,
    }
    let pushes: Vec<Kind> = sqlx::query_as!(
        Kind,
        r#"SELECT split_part(dedupe_key, ':', 1) AS "kind!",
                  count(*) FILTER (WHERE status = 'sent') AS "sent!",
                  count(*) FILTER (WHERE status IN ('pending', 'sending') AND last_error = 'quiet_hours') AS "held!",
                  count(*) FILTER (WHERE status = 'cancelled' AND last_error = 'daily_cap') AS "capped!",
                  count(*) FILTER (WHERE status = 'opted_out') AS "opted_out!",
                  count(*) FILTER (WHERE status = 'no_tokens') AS "no_device!",
                  count(*) FILTER (WHERE status = 'cancelled' AND last_error IS DISTINCT FROM 'daily_cap')
                      AS "expired!",
                  count(*) FILTER (WHERE last_error = 'quiet_hours') AS "quiet!"
           FROM push_outbox WHERE created_at >= $1 AND created_at < $2 GROUP BY 1 ORDER BY 2 DESC, 1"#,
        begin,
        end,
    )
    .fetch_all(pool)
    .await?;
    outln!(
        "  {:<22} {:>8} {:>12} {:>10} {:>10} {:>10} {:>9}   {}",
        "kind",
        "sent",
        "held (quiet)",
        "daily cap",
        "opted out",
        "no device",
        "expired",
        "held at night, then sent"
    );
    for Kind { kind, sent, held, capped, opted_out, no_device, expired, quiet } in &pushes {
        outln!("  {kind:<22} {sent:>8} {held:>12} {capped:>10} {opted_out:>10} {no_device:>10} {expired:>9}   {quiet}");
    }
    let local = sqlx::query!(
        r#"SELECT job_name, outcome, count(*) AS "users!" FROM hattrick_local_sends GROUP BY 1, 2 ORDER BY 1, 2"#
    )
    .fetch_all(pool)
    .await?;
    let local: Vec<String> =
        local.into_iter().map(|row| format!("{} {} {}", row.job_name, row.outcome, row.users)).collect();
    outln!("Local-time jobs decided per user: {}", local.join(", "));
    let languages = sqlx::query!(
        r#"SELECT hattrick_language(u.locale_preference) AS "language!", count(*) AS "pushes!"
           FROM push_outbox o JOIN customer_users u ON u.id = o.customer_user_id
           WHERE o.created_at >= $1 AND o.created_at < $2 AND o.category IN ('reward', 'engagement')
           GROUP BY 1 ORDER BY 2 DESC"#,
        begin,
        end,
    )
    .fetch_all(pool)
    .await?;
    let languages: Vec<String> = languages.into_iter().map(|row| format!("{} {}", row.language, row.pushes)).collect();
    outln!(
        "Job pushes by the reader's language (German added from examples/messages/de.toml): {}",
        languages.join(", ")
    );
    outln!("The fake FCM accepted {fcm_accepted} messages (2 % of sends were answered 503 and retried).");

    let campaign = sqlx::query!(
        r#"SELECT c.id, c.status AS "status!",
                  coalesce(c.recipient_count, (SELECT count(*) FROM push_outbox o WHERE o.campaign_id = c.id)::int)
                      AS "recipients!",
                  (SELECT count(*) FROM push_outbox o WHERE o.campaign_id = c.id AND o.status = 'sent') AS "sent!",
                  (SELECT count(*) FROM push_outbox o
                   WHERE o.campaign_id = c.id AND o.status IN ('pending', 'sending')) AS "waiting!",
                  (SELECT count(*) FROM push_outbox o WHERE o.campaign_id = c.id
                   AND o.status NOT IN ('sent', 'pending', 'sending')) AS "other!"
           FROM scheduled_notifications c WHERE c.title_en = 'Derby tonight!'"#,
    )
    .fetch_optional(pool)
    .await?
    .map(|c| (c.id, c.status, c.recipients, c.sent, c.waiting, c.other));
    if let Some((id, status, recipients, sent, waiting, other)) = campaign {
        let status = if status == "sending" { "zones still to come at midnight".to_owned() } else { status };
        outln!(
            "\nCampaign \"Derby tonight!\" (Android users with 100+ XP, 19:00 in each user's zone): {status}; \
             {recipients} recipients so far: {sent} delivered, {waiting} waiting for their time or quiet hours, \
             {other} not sent (no device, cap, preference)"
        );
        experiment(pool, id, begin, end).await?;
    }

    let partners = sqlx::query!(
        r#"SELECT count(*) AS "partners!", coalesce(sum(active_subscribers), 0)::bigint AS "subscribers!",
                  coalesce(sum(new_signups), 0)::bigint AS "signups!", coalesce(sum(revenue), 0)::float8 AS "revenue!",
                  coalesce(sum(commission), 0)::float8 AS "commission!"
           FROM partner_analytics WHERE date = '2026-10-31'"#,
    )
    .fetch_one(pool)
    .await?;
    outln!(
        "Partner analytics for Saturday 31 October (written at 00:05): {} partners, {} active subscribers, {} signups, \
         revenue {:.2} TRY, commission {:.2} TRY",
        partners.partners,
        partners.subscribers,
        partners.signups,
        partners.revenue,
        partners.commission
    );
    let cleanup = sqlx::query!(
        "SELECT job_name, details FROM job_execution_logs
         WHERE job_name IN ('dead-token-cleanup', 'old-logs-cleanup') AND status = 'success' AND started_at >= $1
         ORDER BY started_at",
        begin,
    )
    .fetch_all(pool)
    .await?;
    for row in cleanup {
        outln!("Cleanup {}: {}", row.job_name, compact(&row.details.unwrap_or_default()));
    }
    Ok(())
}

/// The evening experiment's read-out: when it went out per zone, and per group users, deliveries and
/// conversions with their 95 % intervals (docs/jobs/scheduled-notifications.md "Experiments").
async fn experiment(pool: &Pool, id: Uuid, begin: DateTime<Utc>, end: DateTime<Utc>) -> anyhow::Result<()> {
    let zones = admin::data::zone_sends(pool, evening(begin), chrono_tz::Europe::Istanbul).await?;
    let zones: Vec<String> =
        zones.iter().map(|z| format!("{} {} UTC ({} users)", z.zone, z.at.format("%H:%M"), z.users)).collect();
    outln!("  out at 19:00 local: {}", zones.join(", "));
    let Some(results) = admin::data::campaign_results(pool, id, end).await? else { return Ok(()) };
    outln!(
        "  experiment: 2 variants and a 20 % holdout; conversion = {} within {} h of the send{}",
        results.conversion_event,
        results.conversion_window_hours,
        if results.final_figures { "" } else { " (some windows still open at midnight)" }
    );
    outln!(
        "  {:<10} {:>6} {:>10} {:>10}   {:<24} {}",
        "group",
        "users",
        "delivered",
        "converted",
        "rate (95 % CI)",
        "lift over holdout (95 % CI)"
    );
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    for g in results.groups {
        let lift = g.lift.map_or_else(
            || "—".to_owned(),
            |l| format!("{:+.1} pts ({:+.1} to {:+.1})", 100.0 * l.value, 100.0 * l.low, 100.0 * l.high),
        );
        outln!(
            "  {:<10} {:>6} {:>10} {:>10}   {:<24} {lift}",
            g.name,
            g.users,
            g.delivered,
            g.converted,
            format!("{} ({} to {})", pct(g.conversion.value), pct(g.conversion.low), pct(g.conversion.high))
        );
    }
    Ok(())
}

/// The deleted counts of a cleanup report, wherever they sit: `table 12 deleted, ...`.
fn compact(details: &serde_json::Value) -> String {
    fn walk(name: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        let Some(map) = value.as_object() else { return };
        match map.get("deleted").and_then(serde_json::Value::as_i64) {
            Some(deleted) if !name.is_empty() => out.push(format!("{name} {deleted}")),
            Some(deleted) => out.push(format!("{deleted} rows")),
            None => {}
        }
        for (key, inner) in map {
            if inner.is_object() {
                walk(key, inner, out);
            }
        }
    }
    let mut parts = Vec::new();
    walk("", details, &mut parts);
    if parts.is_empty() { "nothing to delete".to_owned() } else { format!("deleted {}", parts.join(", ")) }
}

/// Serves the admin page on the demo database (its clock stopped at the end of the day) until Ctrl-C.
async fn keep_admin_page(settings: &Settings, url: &str, end: DateTime<Utc>) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    settings.database.url = Some(crate::config::DatabaseUrl::new(url));
    let token = format!("demo-{}", Uuid::new_v4().simple());
    settings.admin.token = None;
    settings.admin.tokens = [("demo".to_owned(), crate::config::Secret::new(&token))].into();
    let roles = Roles { api: Some("127.0.0.1:0".to_owned()), ..Roles::default() };
    let options = Options { definitions: Definitions::ReadOnly, ..Options::new(Clock::fixed(end), roles) };
    let application = Application::build(&settings, options).await?;
    let addr = application.admin_addr().context("the admin server's address")?;
    outln!("\nAdmin page: http://{addr}/admin/ui  (sign in with {token}); Ctrl-C to stop.");
    application.run_until_stopped(super::stop_on_signal()).await?;
    Ok(())
}
