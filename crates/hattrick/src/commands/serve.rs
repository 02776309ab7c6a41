//! `hattrick serve`: the roles of an instance, until SIGTERM or SIGINT; `serve --shadow`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use engine::Clock;

use super::stop_on_signal;
use crate::application::{Application, Options, Roles};
use crate::config::{Settings, TransportKind};
use crate::startup;

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
    let clock = startup::clock_from_env()?;
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
    let shutdown = stop_on_signal();
    let roles = Roles {
        scheduler: has(Role::Scheduler),
        events: settings.events.enabled,
        dispatcher: dispatching,
        api: has(Role::Api).then(|| args.listen.clone().unwrap_or_else(|| settings.admin.listen.clone())),
    };
    let application = Application::build(settings, Options::new(clock, roles)).await?;
    application.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `serve --shadow`: dry runs at every tick, reported on stdout, until SIGTERM or SIGINT.
async fn shadow(settings: &Settings, clock: Clock) -> anyhow::Result<ExitCode> {
    let engine = startup::engine(settings, clock, startup::Definitions::ReadOnly).await?;
    let shutdown = stop_on_signal();
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
