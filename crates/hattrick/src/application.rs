//! One running hattrick instance, built from settings: what `hattrick serve`, `hattrick demo` and the integration
//! tests start, so all three run the same wiring (the admin server's body limit, timeouts, sessions and Host rules
//! come from configuration in every one of them).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use engine::events::EventSettings;
use engine::{Clock, Engine, EngineSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::startup::{self, Definitions};

/// What an instance does.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Claim due ticks and run jobs.
    pub scheduler: bool,
    /// Start event runs on the app's changes (with the scheduler, when `events.enabled`).
    pub events: bool,
    /// Send the outbox.
    pub dispatcher: bool,
    /// Serve health, metrics, the admin API and page on this address (port 0 picks a free one).
    pub api: Option<String>,
}

/// How the instance is built, beyond configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// The business clock.
    pub clock: Clock,
    /// What it does.
    pub roles: Roles,
    /// Whether start-up writes the configured job definitions to the database.
    pub definitions: Definitions,
    /// The engine's settings; from configuration when not set (the demo's fast clock needs its own).
    pub engine: Option<EngineSettings>,
    /// How event runs find changes; from configuration when not set.
    pub events: Option<EventSettings>,
}

impl Options {
    /// An instance with `roles` on `clock`, writing its job definitions, otherwise configured by settings.
    pub fn new(clock: Clock, roles: Roles) -> Self {
        Self { clock, roles, definitions: Definitions::Sync, engine: None, events: None }
    }
}

/// A built instance: connected, schema checked, definitions written, the admin address bound; nothing runs until
/// [`Application::run`].
pub struct Application {
    clock: Clock,
    engine: Arc<Engine>,
    scheduler: bool,
    events: Option<EventSettings>,
    dispatcher: Option<Arc<push::Dispatcher>>,
    api: Option<(TcpListener, Arc<admin::Admin>)>,
    shutdown_grace: std::time::Duration,
    roles: Roles,
}

impl Application {
    /// Builds the instance `options` describe from `settings`.
    pub async fn build(settings: &Settings, options: Options) -> anyhow::Result<Self> {
        let engine_settings = options.engine.unwrap_or_else(|| startup::engine_settings(settings));
        let shutdown_grace = engine_settings.shutdown_grace;
        let engine =
            startup::engine_with(settings, options.clock.clone(), options.definitions, engine_settings).await?;
        let roles = options.roles;
        let events = (roles.scheduler && roles.events)
            .then(|| options.events.unwrap_or(EventSettings { poll_interval: settings.events.poll_interval.0 }));
        let dispatcher = if roles.dispatcher {
            let transport = startup::transport(settings).await?;
            tracing::info!(transport = transport.name(), "outbox dispatcher on");
            Some(Arc::new(push::Dispatcher::new(
                engine.pool().clone(),
                transport,
                startup::dispatcher_settings_on(settings, &options.clock)?,
            )))
        } else {
            None
        };
        let api = match &roles.api {
            Some(listen) => Some(bind_admin(settings, &engine, dispatcher.clone(), listen).await?),
            None => None,
        };
        Ok(Self {
            clock: options.clock,
            engine,
            scheduler: roles.scheduler,
            events,
            dispatcher,
            api,
            shutdown_grace,
            roles,
        })
    }

    /// The instance's engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The admin server's state, when the instance serves the API.
    pub fn admin(&self) -> Option<&Arc<admin::Admin>> {
        self.api.as_ref().map(|(_, admin)| admin)
    }

    /// The address the admin server listens on (a port 0 resolved), when the instance serves the API.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Runs every role until `stop`; running work is cancelled at `stop` too. Returns when everything stopped.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        self.run(stop.clone(), stop).await
    }

    /// Runs every role until `stop`. The scheduler and the event lane stop claiming at `stop`; their running work is
    /// cancelled at `cancel_runs`, which is cancelled at the latest once they have stopped (`serve` passes one token;
    /// the demo lets its last runs finish). Then the dispatcher and the admin server are awaited.
    pub async fn run(self, stop: CancellationToken, cancel_runs: CancellationToken) -> anyhow::Result<()> {
        let mut claimers = tokio::task::JoinSet::new();
        if self.scheduler {
            claimers.spawn(Arc::clone(&self.engine).run_until(stop.clone(), cancel_runs.clone()));
        }
        if let Some(events) = self.events {
            claimers.spawn(Arc::clone(&self.engine).run_events_until(events, stop.clone(), cancel_runs.clone()));
        }
        let dispatching = self.dispatcher.map(|dispatcher| {
            let (stop, clock) = (stop.clone(), self.clock.clone());
            tokio::spawn(async move { dispatcher.run(stop, move || clock.now()).await })
        });
        let api = self
            .api
            .map(|(listener, admin)| tokio::spawn(admin::serve(listener, admin, stop.clone(), self.shutdown_grace)));
        tracing::info!(
            instance = self.engine.settings().instance,
            roles = ?self.roles,
            jobs = ?self.engine.registry().names(),
            "hattrick serving"
        );
        stop.cancelled().await;
        while claimers.join_next().await.is_some() {}
        cancel_runs.cancel();
        if let Some(dispatching) = dispatching {
            let _ = dispatching.await;
        }
        if let Some(api) = api {
            match api.await {
                Ok(Err(error)) => tracing::error!(error = %error, "admin server failed"),
                Err(error) => tracing::error!(error = %error, "admin server panicked"),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    }
}

/// Binds the admin server's address, refusing a non-loopback address without a token.
async fn bind_admin(
    settings: &Settings,
    engine: &Arc<Engine>,
    dispatcher: Option<Arc<push::Dispatcher>>,
    listen: &str,
) -> anyhow::Result<(TcpListener, Arc<admin::Admin>)> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen: expected an address such as 127.0.0.1:8080, got {listen:?}"))?;
    let admin_settings = settings.admin.to_admin(startup::day_zones(settings)?, &settings.push);
    admin::check_exposure(addr, &admin_settings.tokens)?;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
    let test_sender = match &dispatcher {
        Some(dispatcher) => Arc::clone(dispatcher),
        None => Arc::new(push::Dispatcher::new(
            engine.pool().clone(),
            startup::transport(settings).await?,
            startup::dispatcher_settings(settings)?,
        )),
    };
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "admin API, page and metrics listening on http://{bound}/admin/ui");
    let admin = Arc::new(admin::Admin::new(Arc::clone(engine), dispatcher, test_sender, admin_settings));
    Ok((listener, admin))
}
