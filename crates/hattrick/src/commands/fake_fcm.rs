//! `hattrick fake-fcm`: the fake FCM on a socket, for tests, demos and staging.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::commands::wait_for_signal;

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
