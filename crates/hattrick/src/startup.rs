//! Start-up: from settings to a pool, a registry of jobs and an engine.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use db::Pool;

use crate::config::Settings;
use domain::DayZones;
use engine::schedule::parse_time_zone;
use engine::{Clock, Engine, EngineSettings};

use crate::config::TransportKind;

/// The business clock: `HATTRICK_CLOCK` (`system`, `fixed:<instant>`, `scaled:<instant>,<factor>[,<ms>]`) for
/// tests and demos, else the system clock.
pub fn clock_from_env() -> anyhow::Result<Clock> {
    match std::env::var("HATTRICK_CLOCK") {
        Ok(description) if !description.is_empty() => {
            Clock::parse(&description).with_context(|| "HATTRICK_CLOCK".to_owned())
        }
        _ => Ok(Clock::system()),
    }
}

/// A pool on the configured database.
pub async fn pool(settings: &Settings) -> anyhow::Result<Pool> {
    let url = settings.database_url();
    db::connect(&url, &db::PoolSettings { max_connections: settings.database.max_connections, ..Default::default() })
        .await
        .with_context(|| format!("connecting to {}", db::redact_url(&url)))
}

/// SQLSTATE of a missing table.
const UNDEFINED_TABLE: &str = "42P01";

/// Refuses to work on a database whose schema is not this binary's: `serve` never migrates (docs/schema.md).
pub async fn require_schema(pool: &Pool) -> anyhow::Result<()> {
    // Only a missing table means a missing schema: any other error (authentication, network, TLS, a pooler's
    // refusal) is reported as itself.
    let stored: Option<String> =
        match sqlx::query_scalar!("SELECT value FROM hattrick_schema_state WHERE key = 'schema_checksum'")
            .fetch_optional(pool)
            .await
        {
            Ok(stored) => stored,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => None,
            Err(e) => return Err(anyhow::Error::new(e).context("reading hattrick's schema state")),
        };
    match stored {
        Some(checksum) if checksum == db::migrate::schema_checksum() => Ok(()),
        Some(_) => anyhow::bail!("the database schema is not this version's: run `hattrick migrate` first"),
        None => anyhow::bail!("the database has no hattrick schema: run `hattrick migrate` first"),
    }
}

/// Refuses to start on a push catalogue with a text that could not be rendered (a placeholder its kind does not
/// carry, a kind hattrick does not send) or without the built-in texts (docs/push.md "Messages and languages").
/// `hattrick messages` does not check it, so that a bad text can be fixed.
pub async fn require_catalogue(pool: &Pool) -> anyhow::Result<()> {
    let texts = domain::messages::load(pool).await.context("reading the push catalogue (hattrick_messages)")?;
    let problems = domain::messages::catalogue_problems(&texts);
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the push catalogue (hattrick_messages) has {} problem(s); fix them with `hattrick messages` or the admin \
         page:\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    )
}

/// The zones users' days are computed in.
pub fn day_zones(settings: &Settings) -> anyhow::Result<DayZones> {
    Ok(DayZones {
        business: parse_time_zone(&settings.time.business_zone)?,
        app_day_zone: settings.time.app_day_zone.as_deref().map(parse_time_zone).transpose()?,
    })
}

/// The push transport configuration asks for: FCM with a service account, else the log transport.
pub async fn transport(settings: &Settings) -> anyhow::Result<Arc<dyn push::Transport>> {
    let config = &settings.push;
    let fcm = match config.transport {
        TransportKind::Fcm => true,
        TransportKind::Log => false,
        TransportKind::Auto => config.has_credentials(),
    };
    if !fcm {
        return Ok(Arc::new(push::LogTransport::default()));
    }
    let credentials = credentials(config).await?;
    let transport = push::FcmTransport::new(credentials, &config.fcm_endpoint, config.request_timeout.0)
        .context("building the FCM HTTP client")?;
    Ok(Arc::new(transport))
}

/// FCM credentials the way Google deployments provide them (Application Default Credentials, in this order): a key
/// file (`push.service_account`: `FIREBASE_SERVICE_ACCOUNT_PATH`, else `GOOGLE_APPLICATION_CREDENTIALS`), the key's
/// JSON in `FIREBASE_SERVICE_ACCOUNT_JSON`, or, with `push.metadata_server`, the metadata server of a Google VM or a
/// Kubernetes workload (`GCE_METADATA_HOST`, else `metadata.google.internal`). `push.project_id` overrides the
/// project they name.
pub async fn credentials(config: &crate::config::PushSettings) -> anyhow::Result<push::Credentials> {
    let mut credentials = if let Some(path) = &config.service_account {
        push::Credentials::ServiceAccount(push::ServiceAccount::from_file(path)?)
    } else if let Some(json) = &config.service_account_json {
        let account = push::ServiceAccount::from_json(json.expose())
            .map_err(|reason| anyhow::anyhow!("push.service_account_json (FIREBASE_SERVICE_ACCOUNT_JSON): {reason}"))?;
        push::Credentials::ServiceAccount(account)
    } else if config.metadata_server {
        let server = push::MetadataServer::discover(&config.metadata_host, config.project_id.clone())
            .await
            .context("asking the metadata server for the project (push.metadata_server)")?;
        push::Credentials::Metadata(server)
    } else {
        anyhow::bail!("no FCM credentials: set {}", crate::config::CREDENTIAL_SETTINGS);
    };
    if let (Some(project), push::Credentials::ServiceAccount(account)) = (&config.project_id, &mut credentials) {
        account.project_id.clone_from(project);
    }
    Ok(credentials)
}

/// The dispatcher's settings for a dispatcher reading `clock`: its claims are written in business time, so their
/// lease is scaled to last `push.lease` of real time (on a demo's fast clock too).
pub fn dispatcher_settings_on(settings: &Settings, clock: &Clock) -> anyhow::Result<push::DispatcherSettings> {
    let mut dispatcher = dispatcher_settings(settings)?;
    dispatcher.lease = clock.business_duration(dispatcher.lease);
    Ok(dispatcher)
}

/// The dispatcher's settings from configuration.
pub fn dispatcher_settings(settings: &Settings) -> anyhow::Result<push::DispatcherSettings> {
    let config = &settings.push;
    let quiet_hours =
        config.quiet_hours().map_err(anyhow::Error::msg)?.map(|(start, end)| push::QuietHours { start, end });
    Ok(push::DispatcherSettings {
        batch: config.batch,
        concurrency: config.concurrency,
        workers: config.workers,
        rate_per_minute: config.rate_per_minute,
        lease: config.lease.0,
        quiet_hours,
        daily_cap: config.daily_cap,
        business_zone: parse_time_zone(&settings.time.business_zone)?,
        ..push::DispatcherSettings::default()
    })
}

/// The engine's settings from configuration.
pub fn engine_settings(settings: &Settings) -> EngineSettings {
    EngineSettings {
        lease: settings.engine.lease.0,
        heartbeat: settings.engine.heartbeat.0,
        shutdown_grace: settings.engine.shutdown_grace.0,
        poll_interval: Duration::from_secs(1),
        ..EngineSettings::default()
    }
}

/// Whether start-up writes the configured job definitions to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definitions {
    /// Write them (docs/engine.md): `serve`, `jobs`, `run`.
    Sync,
    /// Leave the database untouched: a dry run writes nothing at all.
    ReadOnly,
}

/// A ready engine: pool, schema check, registry, and (unless read-only) definitions written to the database.
pub async fn engine(settings: &Settings, clock: Clock, definitions: Definitions) -> anyhow::Result<Arc<Engine>> {
    engine_with(settings, clock, definitions, engine_settings(settings)).await
}

/// [`engine`] with the engine's settings given (the demo's fast clock needs its own).
pub async fn engine_with(
    settings: &Settings,
    clock: Clock,
    definitions: Definitions,
    engine_settings: EngineSettings,
) -> anyhow::Result<Arc<Engine>> {
    let pool = pool(settings).await?;
    require_schema(&pool).await?;
    require_catalogue(&pool).await?;
    let engine = Engine::new(pool, clock, crate::registry::registry(settings)?, engine_settings);
    if definitions == Definitions::Sync {
        engine.sync_definitions().await.context("writing job definitions")?;
    }
    Ok(Arc::new(engine))
}
