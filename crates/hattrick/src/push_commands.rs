//! `hattrick fake-fcm` and `hattrick push test`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::app;
use crate::commands::wait_for_signal;
use crate::config::Settings;

/// Options of `hattrick fake-fcm`.
#[derive(Debug, Args)]
pub struct FakeFcmArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Write a service-account key file that the fake accepts (its token_uri points at the fake).
    #[arg(long)]
    pub write_service_account: Option<PathBuf>,
    /// Tokens starting with this are answered UNREGISTERED.
    #[arg(long)]
    pub unregistered_prefix: Option<String>,
    /// Tokens starting with this are answered INVALID_ARGUMENT (about the token).
    #[arg(long)]
    pub invalid_prefix: Option<String>,
    /// Tokens starting with this are answered THIRD_PARTY_AUTH_ERROR.
    #[arg(long)]
    pub auth_error_prefix: Option<String>,
    /// Share of sends answered 429 QUOTA_EXCEEDED with Retry-After (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub rate_429: f64,
    /// Share of sends answered 503 UNAVAILABLE (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub rate_503: f64,
    /// Retry-After seconds sent with 429 and 503.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Latency added to every send, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Lifetime of the access tokens it issues, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_lifetime_secs: u64,
    /// Also accept this bearer token without an OAuth grant (for load generators such as h2load).
    #[arg(long)]
    pub accept_token: Option<String>,
}

fn share(value: &str) -> Result<f64, String> {
    let share: f64 = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&share) { Ok(share) } else { Err(format!("{share} is not between 0 and 1")) }
}

/// Runs a fake FCM until SIGTERM or SIGINT; prints the settings that point hattrick at it.
pub async fn fake_fcm(args: FakeFcmArgs) -> anyhow::Result<ExitCode> {
    let config = push::fake::FakeConfig {
        unregistered_prefix: args.unregistered_prefix,
        invalid_prefix: args.invalid_prefix,
        auth_error_prefix: args.auth_error_prefix,
        rate_429: args.rate_429,
        rate_503: args.rate_503,
        retry_after_secs: args.retry_after_secs,
        latency: Duration::from_millis(args.latency_ms),
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        static_token: args.accept_token,
        ..push::fake::FakeConfig::default()
    };
    let fake = push::fake::FakeFcm::bind(&args.listen, config)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    if let Some(path) = &args.write_service_account {
        std::fs::write(path, fake.service_account_json()).with_context(|| format!("writing {}", path.display()))?;
        crate::outln!("FIREBASE_SERVICE_ACCOUNT_PATH={}", path.display());
    }
    crate::outln!("HATTRICK_PUSH__FCM_ENDPOINT={}", fake.endpoint());
    crate::outln!("HATTRICK_PUSH__TRANSPORT=fcm");
    tracing::info!(addr = %fake.addr(), "fake FCM listening (stats at /_fake/stats)");
    wait_for_signal().await;
    Ok(ExitCode::SUCCESS)
}

/// `hattrick push ...`
#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Send a test push now to the given users' devices and print what happened to each.
    ///
    /// Test pushes ignore quiet hours, the daily cap and opt-out (they are for operators' own devices).
    Test(PushTestArgs),
}

/// Options of `hattrick push test`.
#[derive(Debug, Args)]
pub struct PushTestArgs {
    /// A recipient's user id (repeat for several).
    #[arg(long = "user", required = true)]
    pub users: Vec<Uuid>,
    /// Title (with --body), unless --campaign is given.
    #[arg(long, required_unless_present = "campaign")]
    pub title: Option<String>,
    /// Body.
    #[arg(long, required_unless_present = "campaign")]
    pub body: Option<String>,
    /// Send a campaign's texts (in each user's language) instead: a test send before it goes out.
    #[arg(long, conflicts_with_all = ["title", "body"])]
    pub campaign: Option<Uuid>,
}

/// Writes one `test` outbox row per user and sends them at once through the configured transport.
pub async fn push(settings: &Settings, command: PushCommand) -> anyhow::Result<ExitCode> {
    let PushCommand::Test(args) = command;
    let pool = app::pool(settings).await?;
    app::require_schema(&pool).await?;
    let now = app::clock_from_env()?.now();
    let run = Uuid::new_v4();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                  campaign_id, not_before, created_at)
         SELECT u.id, 'test', 'test:' || $1::text || ':' || u.id,
                coalesce(CASE WHEN u.locale_preference ILIKE 'en%' THEN c.title_en END, c.title_tr, $3),
                coalesce(CASE WHEN u.locale_preference ILIKE 'en%' THEN c.body_en END, c.body_tr, $4),
                c.image_url, c.deep_link_url,
                jsonb_strip_nulls(jsonb_build_object('type', 'test', 'campaignId', c.id::text,
                                                     'deepLink', c.deep_link_url)),
                NULL, $6, $6
         FROM customer_users u
         LEFT JOIN scheduled_notifications c ON c.id = $5
         WHERE u.id = ANY($2) AND ($5::uuid IS NULL OR c.id IS NOT NULL)
         RETURNING id",
    )
    .bind(run)
    .bind(&args.users)
    .bind(args.title.as_deref())
    .bind(args.body.as_deref())
    .bind(args.campaign)
    .bind(now)
    .fetch_all(&pool)
    .await?;
    if ids.len() != args.users.len() {
        let missing = if args.campaign.is_some() { "unknown campaign or user" } else { "unknown user" };
        eprintln!("error: {missing}: {} of {} recipients found", ids.len(), args.users.len());
        return Ok(ExitCode::from(crate::commands::EXIT_USAGE));
    }
    let dispatcher =
        push::Dispatcher::new(pool.clone(), app::transport(settings)?, app::dispatcher_settings(settings)?);
    dispatcher.round_only(now, &ids).await?;
    let rows: Vec<(Uuid, String, i32, i32, Option<String>)> = sqlx::query_as(
        "SELECT customer_user_id, status, tokens_sent, tokens_failed, last_error FROM push_outbox
         WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await?;
    let mut all_sent = true;
    for (user, status, sent, failed, error) in rows {
        all_sent &= status == "sent";
        let error = error.map(|e| format!(", last error {e}")).unwrap_or_default();
        crate::outln!("{user}: {status} ({sent} token(s) delivered, {failed} failed{error})");
    }
    Ok(if all_sent { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
