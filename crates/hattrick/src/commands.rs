//! `hattrick serve`, `hattrick jobs` and `hattrick run`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{Settings, TransportKind};
use engine::metrics::Outcome;
use engine::runner::ManualError;
use engine::{Clock, RunArgs};

/// Exit code of `hattrick run` for an unknown job (and of usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `hattrick run` when the job is already running.
pub const EXIT_RUNNING: u8 = 3;

/// Options of `hattrick serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this instance does, comma-separated: `scheduler` (claims ticks and runs jobs), `dispatcher` (sends
    /// the outbox), `api` (health, metrics, the admin API and page on admin.listen).
    #[arg(long, value_delimiter = ',', default_value = "scheduler,dispatcher,api")]
    pub roles: Vec<Role>,
    /// Address of the api role (overrides admin.listen); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Do not run the outbox dispatcher in this instance (as if `dispatcher` were not among the roles).
    #[arg(long)]
    pub no_dispatcher: bool,
    /// Shadow mode, for cut-over: every job runs as a dry run at its ticks and prints what it would do (one JSON
    /// line per run on stdout); nothing is written, nothing is sent. Other roles are off.
    #[arg(long, conflicts_with_all = ["roles", "no_dispatcher"])]
    pub shadow: bool,
}

/// A role of a `serve` instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Claims due ticks and runs jobs.
    Scheduler,
    /// Sends the outbox.
    Dispatcher,
    /// Health, metrics, the admin API and page.
    Api,
}

/// Runs the roles asked for until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let clock = app::clock_from_env()?;
    if args.shadow {
        return shadow(settings, clock).await;
    }
    let has = |role: Role| args.roles.contains(&role);
    let dispatching = has(Role::Dispatcher) && settings.push.dispatcher && !args.no_dispatcher;
    if dispatching && settings.push.transport == TransportKind::Auto && !settings.push.has_credentials() {
        // Without credentials the automatic transport would print pushes instead of sending them: a deployment
        // that forgot its key must not look healthy while no user gets anything.
        eprintln!(
            "error: the dispatcher has no FCM credentials: set {}, or push.transport = \"log\" \
             (HATTRICK_PUSH__TRANSPORT=log) to print pushes instead of sending them, or run without the dispatcher \
             role (--roles scheduler,api)",
            crate::config::CREDENTIAL_SETTINGS
        );
        return Ok(ExitCode::from(2));
    }
    // Signals are caught before anything starts: a SIGTERM while the engine registers its jobs stops it cleanly.
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let signalled = signals();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("signal received: stopping");
        on_signal.cancel();
    });
    let engine = app::engine(settings, clock.clone(), app::Definitions::Sync).await?;
    let dispatcher = if dispatching {
        let transport = app::transport(settings).await?;
        tracing::info!(transport = transport.name(), "outbox dispatcher on");
        Some(Arc::new(push::Dispatcher::new(
            engine.pool().clone(),
            transport,
            app::dispatcher_settings_on(settings, &clock)?,
        )))
    } else {
        None
    };
    let api = if has(Role::Api) {
        let listen = args.listen.as_deref().unwrap_or(&settings.admin.listen);
        Some(admin_server(settings, &engine, dispatcher.clone(), listen, shutdown.clone()).await?.1)
    } else {
        None
    };
    let dispatching = dispatcher.map(|dispatcher| {
        let stop = shutdown.clone();
        let clock = clock.clone();
        tokio::spawn(async move { dispatcher.run(stop, move || clock.now()).await })
    });
    let events = (has(Role::Scheduler) && settings.events.enabled).then(|| {
        let events = engine::events::EventSettings {
            listen_url: settings.direct_url(),
            debounce: settings.events.debounce.0,
            poll_interval: settings.events.poll_interval.0,
        };
        tokio::spawn(Arc::clone(&engine).run_events(events, shutdown.clone()))
    });
    let roles: Vec<String> = args.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
    tracing::info!(instance = engine.settings().instance, roles = ?roles, jobs = ?engine.registry().names(), "hattrick serving");
    if has(Role::Scheduler) {
        Arc::clone(&engine).run_until_stopped(shutdown.clone()).await;
    } else {
        shutdown.cancelled().await;
    }
    if let Some(dispatching) = dispatching {
        let _ = dispatching.await;
    }
    if let Some(events) = events {
        let _ = events.await;
    }
    if let Some(api) = api {
        match api.await {
            Ok(Err(error)) => tracing::error!(error = %error, "admin server failed"),
            Err(error) => tracing::error!(error = %error, "admin server panicked"),
            Ok(Ok(())) => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve --shadow`: dry runs at every tick, reported on stdout, until SIGTERM or SIGINT.
async fn shadow(settings: &Settings, clock: Clock) -> anyhow::Result<ExitCode> {
    let engine = app::engine(settings, clock, app::Definitions::ReadOnly).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    Arc::clone(&engine)
        .run_shadow(shutdown, |job, tick, result| {
            let line = serde_json::json!({
                "job": job,
                "tick": tick,
                "outcome": result.outcome.as_str(),
                "duration_ms": result.duration.as_millis(),
                "would": result.report.as_ref().map(|r| serde_json::json!({"items": r.items, "details": r.details})),
                "error": result.error,
            });
            crate::outln!("{line}");
        })
        .await;
    Ok(ExitCode::SUCCESS)
}

/// Binds the admin server (refusing a non-loopback address without a token) and serves it in the background;
/// returns the address it listens on (a port 0 picked) and its task.
pub(crate) async fn admin_server(
    settings: &Settings,
    engine: &Arc<engine::Engine>,
    dispatcher: Option<Arc<push::Dispatcher>>,
    listen: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen: expected an address such as 127.0.0.1:8080, got {listen:?}"))?;
    let tokens: Vec<admin::AdminToken> =
        settings.admin.named_tokens().into_iter().map(|(name, secret)| admin::AdminToken { name, secret }).collect();
    admin::check_exposure(addr, &tokens).map_err(anyhow::Error::msg)?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let test_sender = match &dispatcher {
        Some(dispatcher) => Arc::clone(dispatcher),
        None => Arc::new(push::Dispatcher::new(
            engine.pool().clone(),
            app::transport(settings).await?,
            app::dispatcher_settings(settings)?,
        )),
    };
    let mut admin_settings = admin::AdminSettings::new(tokens, app::day_zones(settings)?);
    admin_settings.build = crate::build_info();
    admin_settings.body_limit = settings.admin.body_limit;
    admin_settings.request_timeout = settings.admin.request_timeout.0;
    admin_settings.session_ttl = settings.admin.session_ttl.0;
    admin_settings.allowed_hosts = settings.admin.allowed_hosts.clone();
    admin_settings.secure_cookies = settings.admin.secure_cookies;
    admin_settings.header_timeout = settings.admin.header_timeout.0;
    admin_settings.max_connections = settings.admin.max_connections;
    admin_settings.metrics_token = settings.admin.metrics_token.as_ref().map(|t| t.expose().to_owned());
    admin_settings.metrics_cache = settings.admin.metrics_cache.0;
    admin_settings.statement_timeout = settings.admin.statement_timeout.0;
    admin_settings.sign_in_attempts = settings.admin.sign_in_attempts;
    admin_settings.content = push::ContentRules { deep_link_schemes: settings.push.deep_link_schemes.clone() };
    let server = Arc::new(admin::Admin::new(Arc::clone(engine), dispatcher, test_sender, admin_settings));
    tracing::info!(addr = %bound, "admin API, page and metrics listening on http://{bound}/admin/ui");
    let grace = settings.engine.shutdown_grace.0;
    Ok((bound, tokio::spawn(admin::serve(listener, server, shutdown, grace))))
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    signals().await;
}

/// Registers for SIGTERM and SIGINT now, and returns a future that completes at the first of them: a signal that
/// arrives before the future is first polled is not lost.
pub fn signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let registered = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match registered {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Options of `hattrick jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists every job: schedule, zone, state, next three fire times in local time and UTC, last run (the same
/// view as `GET /admin/jobs`).
pub async fn jobs(settings: &Settings, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let clock = app::clock_from_env()?;
    let engine = app::engine(settings, clock.clone(), app::Definitions::Sync).await?;
    let lines = admin::data::jobs(&engine, engine.pool(), clock.now()).await?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(ExitCode::SUCCESS);
    }
    for line in &lines {
        crate::outln!(
            "{}  [{}]  {}  ({}, misfire {})",
            line.name,
            line.state,
            line.schedule,
            line.timezone,
            line.misfire
        );
        for (local, utc) in line.next_runs_local.iter().zip(&line.next_runs) {
            crate::outln!("    next  {local}  =  {}", utc.format("%Y-%m-%d %H:%M UTC"));
        }
        match &line.last_run {
            Some(run) => crate::outln!(
                "    last  {} {} at {} ({} ms, {} items)",
                run.status,
                run.trigger.as_deref().unwrap_or("-"),
                run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                run.duration_ms.unwrap_or(0),
                run.items_processed.unwrap_or(0)
            ),
            None => crate::outln!("    last  never"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `hattrick run`.
#[derive(Debug, Args)]
pub struct RunCommandArgs {
    /// The job to run (see `hattrick jobs`).
    pub job: String,
    /// Run as if now were this RFC 3339 instant (e.g. 2026-03-10T22:00:00+03:00).
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
    /// Compute and report what the job would do; write nothing at all.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Grant without enqueueing any push: a back-fill of old eligibility (SPEC 10.12).
    #[arg(long)]
    pub silent: bool,
    /// Allow --at more than a day away from now.
    #[arg(long)]
    pub force: bool,
    /// First day of a backfill (jobs that work by day).
    #[arg(long, value_name = "DATE", requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last day of a backfill, inclusive.
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<NaiveDate>,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 instant such as 2026-03-10T22:00:00+03:00"))
}

#[derive(Debug, Serialize)]
struct RunLine<'a> {
    job: &'a str,
    run_id: String,
    outcome: &'static str,
    duration_ms: u128,
    dry_run: bool,
    items: Option<i64>,
    details: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
}

/// Runs one job once now (trigger `manual`) and prints its report. Exit codes: 0 success, 1 the job failed,
/// 2 unknown job, 3 already running.
pub async fn run(settings: &Settings, args: RunCommandArgs) -> anyhow::Result<ExitCode> {
    let clock = match args.at {
        Some(at) => {
            let real_now = Clock::system().now();
            if (at - real_now).abs() > TimeDelta::days(1) && !args.force {
                anyhow::bail!("--at {at} is more than a day from now; add --force if you mean it");
            }
            Clock::fixed(at)
        }
        None => app::clock_from_env()?,
    };
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        eprintln!("error: --from {from} is after --to {to}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let registry_names = app::registry(settings)?.names();
    if !registry_names.contains(&args.job) {
        eprintln!("error: unknown job {:?}; valid jobs: {}", args.job, registry_names.join(", "));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let definitions = if args.dry_run { app::Definitions::ReadOnly } else { app::Definitions::Sync };
    let engine = app::engine(settings, clock, definitions).await?;
    let run_args = RunArgs { dry_run: args.dry_run, silent: args.silent, from: args.from, to: args.to };
    let result = match engine.run_manual(&args.job, run_args).await {
        Ok(result) => result,
        Err(ManualError::AlreadyRunning(job)) => {
            eprintln!("error: {job} is already running; try again when it has finished");
            return Ok(ExitCode::from(EXIT_RUNNING));
        }
        Err(ManualError::Unknown(job)) => {
            eprintln!("error: unknown job {job:?}; valid jobs: {}", registry_names.join(", "));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(ManualError::Sql(e)) => return Err(e.into()),
    };
    let line = RunLine {
        job: &result.job,
        run_id: result.run_id.to_string(),
        outcome: result.outcome.as_str(),
        duration_ms: result.duration.as_millis(),
        dry_run: args.dry_run,
        items: result.report.as_ref().map(|r| r.items),
        details: result.report.as_ref().map(|r| &r.details),
        error: result.error.as_deref(),
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&line)?);
    } else {
        crate::outln!(
            "{} {}{} in {:.1} s",
            line.job,
            line.outcome,
            if args.dry_run { " (dry run: nothing written)" } else { "" },
            Duration::from_millis(u64::try_from(line.duration_ms).unwrap_or(u64::MAX)).as_secs_f64()
        );
        if let Some(items) = line.items {
            crate::outln!("items: {items}");
        }
        if let Some(details) = line.details {
            crate::outln!("details: {}", serde_json::to_string_pretty(details)?);
        }
        if let Some(error) = line.error {
            crate::outln!("error: {error}");
        }
    }
    Ok(if result.outcome == Outcome::Success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `hattrick ledger ...`
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Report users whose balances differ from their ledgers (the app wrote a balance without a ledger row).
    ///
    /// Exit code 0 when every balance matches its ledger, 1 when some drift.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many drifted users to list.
        #[arg(long, default_value_t = 20)]
        sample: i64,
    },
    /// Write one opening-balance row per drifted user so every balance equals its ledger (run once at cut-over,
    /// after `ledger check`). Without --yes it only says what it would write.
    Open {
        /// Write the rows.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `hattrick ledger check` or `hattrick ledger open`.
pub async fn ledger(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let pool = app::pool(settings).await?;
    app::require_schema(&pool).await?;
    match command {
        LedgerCommand::Check { json, sample } => {
            let drift = rewards::ledger::drift(&pool, sample).await?;
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&drift)?);
            } else {
                crate::outln!(
                    "credits: {} user(s) drift, balances exceed their ledgers by {} in total",
                    drift.credit_users,
                    drift.credit_difference
                );
                crate::outln!(
                    "xp: {} user(s) drift, XP exceeds the ledgers by {} in total",
                    drift.xp_users,
                    drift.xp_difference
                );
                for (user, ledger, balance, total) in &drift.sample {
                    crate::outln!("  {user}  {ledger}: balance {balance}, ledger {total}");
                }
            }
            Ok(if drift.credit_users + drift.xp_users == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        LedgerCommand::Open { yes } => {
            let drift = rewards::ledger::drift(&pool, 0).await?;
            if !yes {
                crate::outln!(
                    "would write {} credit and {} XP opening-balance row(s); nothing written: add --yes to write them",
                    drift.credit_users,
                    drift.xp_users
                );
                return Ok(ExitCode::FAILURE);
            }
            let (credits, xp) = rewards::ledger::open_balances(&pool, app::clock_from_env()?.now()).await?;
            crate::outln!("wrote {credits} credit and {xp} XP opening-balance row(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
