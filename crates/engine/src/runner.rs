//! The engine of one instance: the job registry, the scheduler loop and the execution of claimed runs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use db::Pool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::Clock;
use crate::job::{Job, JobContext, JobDefinition, JobError, JobReport, RunArgs, Trigger};
use crate::metrics::{Outcome, RunStats};
use crate::store::{self, Claim, ClaimSettings, DefinitionChange, ManualRunError, RunEnd, StoredJob};

/// Timing settings of an instance.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// This instance's name in the run log.
    pub instance: String,
    /// A run silent for this long (by the database clock) is abandoned.
    pub lease: Duration,
    /// How often a running job's heartbeat is written.
    pub heartbeat: Duration,
    /// On shutdown, how long running work may take to finish.
    pub shutdown_grace: Duration,
    /// A tick reached later than this (real time) was missed, and falls under the misfire policy.
    pub misfire_grace: Duration,
    /// Longest sleep between two looks at the database (pause, resume and retries are seen this fast).
    pub poll_interval: Duration,
    /// Most runs this instance carries out at once; the rest is left to other instances.
    pub max_concurrent_runs: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            instance: default_instance_name(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            misfire_grace: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_concurrent_runs: 4,
        }
    }
}

/// `host:pid:random`, unique enough to tell instances apart in the run log.
pub fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..6])
}

/// A registered job: its code and its configured definition.
struct Registered {
    job: Arc<dyn Job>,
    definition: JobDefinition,
    enabled: Option<bool>,
}

/// The jobs an instance can run.
#[derive(Default)]
pub struct Registry {
    jobs: BTreeMap<String, Registered>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job. `enabled` is `Some` only when configuration sets it explicitly (see
    /// [`store::sync_definitions`]).
    pub fn register(&mut self, definition: JobDefinition, enabled: Option<bool>, job: Arc<dyn Job>) {
        self.jobs.insert(definition.name.clone(), Registered { job, definition, enabled });
    }

    /// The definition `name` was registered with.
    pub fn definition(&self, name: &str) -> Option<JobDefinition> {
        self.jobs.get(name).map(|r| r.definition.clone())
    }

    /// The names of every registered job, sorted.
    pub fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// The job registered as `name`.
    pub fn job(&self, name: &str) -> Option<Arc<dyn Job>> {
        self.jobs.get(name).map(|r| Arc::clone(&r.job))
    }
}

/// The result of one run, as `hattrick run` reports it.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run-log row (for a dry run, an id that was never stored).
    pub run_id: Uuid,
    /// The job.
    pub job: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The job's report when it succeeded.
    pub report: Option<JobReport>,
    /// The error when it failed.
    pub error: Option<String>,
    /// Real time taken.
    pub duration: Duration,
}

/// Why [`Engine::run_manual`] did not run.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// No job of that name is registered in this binary.
    #[error("unknown job {0}")]
    Unknown(String),
    /// The job is running already.
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// One instance's engine. Cheap to share (`Arc`); many may run on one database.
pub struct Engine {
    pool: Pool,
    clock: Clock,
    registry: Registry,
    settings: EngineSettings,
    stats: Arc<RunStats>,
}

impl Engine {
    /// An engine on `pool`, reading business time from `clock`.
    pub fn new(pool: Pool, clock: Clock, registry: Registry, settings: EngineSettings) -> Self {
        Self { pool, clock, registry, settings, stats: Arc::new(RunStats::default()) }
    }

    /// The run statistics of this instance.
    pub fn stats(&self) -> Arc<RunStats> {
        Arc::clone(&self.stats)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The business clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Writes the registry's definitions to the database (docs/engine.md) and logs what changed.
    pub async fn sync_definitions(&self) -> Result<Vec<DefinitionChange>, sqlx::Error> {
        let definitions: Vec<(JobDefinition, Option<bool>)> =
            self.registry.jobs.values().map(|r| (r.definition.clone(), r.enabled)).collect();
        let changes =
            store::sync_definitions(&self.pool, &definitions, self.clock.now(), &self.settings.instance).await?;
        for change in &changes {
            tracing::info!(job = change.job, change = change.change, "job definition updated from configuration");
        }
        Ok(changes)
    }

    /// Runs `job` once now by hand (trigger `manual`). A dry run writes nothing, not even a run-log row.
    pub async fn run_manual(&self, job: &str, args: RunArgs) -> Result<RunResult, ManualError> {
        self.run_manual_until(job, args, CancellationToken::new()).await
    }

    /// [`Engine::run_manual`], stopped by `stop` (the command line's SIGTERM or SIGINT): the run ends
    /// `interrupted`, its SQL is cancelled, and the job can be run again at once.
    pub async fn run_manual_until(
        &self,
        job: &str,
        args: RunArgs,
        stop: CancellationToken,
    ) -> Result<RunResult, ManualError> {
        let (claim, definition) = self.claim_manual(job, args.dry_run, None).await?;
        Ok(self.execute(&claim, &definition, args, stop).await)
    }

    /// Starts `job` by hand and returns its run id as soon as the run is claimed; the run goes on in the
    /// background (the admin API's "run now"), cancelled by `shutdown`. A dry run writes nothing, so it is never
    /// started this way: use [`Engine::run_manual`] for it.
    ///
    /// `with_claim` writes what must be committed with the claim (the audit row of the request that started it),
    /// in the claim's transaction: both are stored or neither.
    pub async fn start_manual(
        self: &Arc<Self>,
        job: &str,
        args: RunArgs,
        shutdown: CancellationToken,
        with_claim: Option<store::ClaimHook<'_>>,
    ) -> Result<(Uuid, tokio::task::JoinHandle<RunResult>), ManualError> {
        let (claim, definition) = self.claim_manual(job, false, with_claim).await?;
        let run_id = claim.run_id;
        let engine = Arc::clone(self);
        let args = RunArgs { dry_run: false, ..args };
        let handle = tokio::spawn(async move { engine.execute(&claim, &definition, args, shutdown).await });
        Ok((run_id, handle))
    }

    /// The definition every instance follows for `job`: the stored one, else (never stored yet) this binary's.
    pub(crate) async fn current_definition(&self, job: &str) -> Result<Option<JobDefinition>, sqlx::Error> {
        Ok(store::load_jobs(&self.pool)
            .await?
            .into_iter()
            .find(|s| s.definition.name == job)
            .map(|s| s.definition)
            .or_else(|| self.registry.definition(job)))
    }

    /// Claims a manual run of `job` (a dry run claims nothing: its id is never stored).
    async fn claim_manual(
        &self,
        job: &str,
        dry_run: bool,
        with_claim: Option<store::ClaimHook<'_>>,
    ) -> Result<(Claim, JobDefinition), ManualError> {
        if !self.registry.contains(job) {
            return Err(ManualError::Unknown(job.to_owned()));
        }
        let definition = self.current_definition(job).await?.ok_or_else(|| ManualError::Unknown(job.to_owned()))?;
        if dry_run {
            let claim =
                Claim { run_id: Uuid::new_v4(), job: job.to_owned(), tick: None, attempt: 1, trigger: Trigger::Manual };
            return Ok((claim, definition));
        }
        let now = self.clock.now();
        let claim = store::claim_manual(&self.pool, job, now, &self.settings.instance, with_claim).await.map_err(
            |e| match e {
                ManualRunError::AlreadyRunning(job) => ManualError::AlreadyRunning(job),
                ManualRunError::UnknownJob(job) => ManualError::Unknown(job),
                ManualRunError::Sql(e) => ManualError::Sql(e),
            },
        )?;
        Ok((claim, definition))
    }

    /// Carries out a claimed run: heartbeats while it works, cancels it at its timeout (its SQL too), records
    /// how it ended and when to retry. What the run logs carries its `run` span (job, run id, trigger).
    pub async fn execute(
        &self,
        claim: &Claim,
        definition: &JobDefinition,
        args: RunArgs,
        shutdown: CancellationToken,
    ) -> RunResult {
        // Instrumented, not entered: a guard held across an await would leave the span entered on whatever the
        // thread polls next, and other runs' lines would carry this run's span.
        let span = tracing::info_span!("run", job = %claim.job, run_id = %claim.run_id, trigger = %claim.trigger);
        self.execute_in_span(claim, definition, args, shutdown).instrument(span).await
    }

    async fn execute_in_span(
        &self,
        claim: &Claim,
        definition: &JobDefinition,
        args: RunArgs,
        shutdown: CancellationToken,
    ) -> RunResult {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + definition.timeout;
        let dry_run = args.dry_run;
        let ctx = JobContext {
            run_id: claim.run_id,
            job: claim.job.clone(),
            tick: claim.tick,
            trigger: claim.trigger,
            now: self.clock.now(),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            args,
            cancel: shutdown.child_token(),
            deadline,
        };
        let Some(job) = self.registry.job(&claim.job) else {
            return self
                .finish(claim, definition, Err(JobError::Failed("job is not registered".into())), started, dry_run)
                .await;
        };

        // Stopped when the run ends, and also when the run itself is dropped unfinished (a shutdown past its grace
        // aborts it): a heartbeat outliving its run would keep a handed-over row looking alive.
        let heartbeat = (!dry_run)
            .then(|| {
                let pool = self.pool.clone();
                let cancel = ctx.cancel.clone();
                let every = self.settings.heartbeat;
                let run_id = claim.run_id;
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        match store::heartbeat(&pool, run_id).await {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!(%run_id, "run lost its lease (declared abandoned); cancelling it");
                                cancel.cancel();
                                return;
                            }
                            Err(e) => tracing::warn!(%run_id, error = %e, "heartbeat failed"),
                        }
                    }
                })
            })
            .map(AbortOnDrop);

        let result = tokio::select! {
            result = job.run(&ctx) => result,
            () = tokio::time::sleep_until(deadline) => Err(JobError::TimedOut(definition.timeout)),
            () = ctx.cancel.cancelled() => Err(JobError::Cancelled),
        };
        drop(heartbeat);
        // The run's statement_timeout is the time it had left: the server cancelling a statement for it
        // (SQLSTATE 57014) is the same timeout, seen first by the database.
        let result = match result {
            Err(JobError::Sql(sqlx::Error::Database(e))) if e.code().as_deref() == Some("57014") => {
                Err(JobError::TimedOut(definition.timeout))
            }
            other => other,
        };
        // Cancelled because this instance is stopping (a deploy), not because the run went wrong.
        let result = match result {
            Err(JobError::Cancelled) if shutdown.is_cancelled() => Err(JobError::Interrupted),
            other => other,
        };
        // A statement still in flight when the run stopped waiting for it would go on without anyone to read it.
        if matches!(result, Err(JobError::TimedOut(_) | JobError::Interrupted)) {
            ctx.cancel.cancel();
            self.cancel_sql(&claim.job, claim.run_id).await;
        }
        self.finish(claim, definition, result, started, dry_run).await
    }

    /// Cancels whatever SQL the run still has in flight ([`crate::job::cancel_run_sql`]).
    async fn cancel_sql(&self, job: &str, run_id: Uuid) {
        if let Err(e) = crate::job::cancel_run_sql(&self.pool, &crate::job::application_name(job, run_id)).await {
            tracing::warn!(error = %e, "could not cancel the timed-out run's queries");
        }
    }

    async fn finish(
        &self,
        claim: &Claim,
        definition: &JobDefinition,
        result: Result<JobReport, JobError>,
        started: Instant,
        dry_run: bool,
    ) -> RunResult {
        let duration = started.elapsed();
        let now = self.clock.now();
        let (outcome, end) = match result {
            Ok(report) => (Outcome::Success, RunEnd::Success(report)),
            Err(JobError::Interrupted) => {
                // Not a failure: the tick goes to the next attempt at once, on whichever instance claims it.
                tracing::info!("run interrupted by shutdown; its tick is handed over");
                (Outcome::Interrupted, RunEnd::Interrupted { retry_at: claim.tick.map(|_| now) })
            }
            Err(error) => {
                let timeout = matches!(error, JobError::TimedOut(_));
                let retry_at = (claim.tick.is_some()
                    && u32::try_from(claim.attempt).unwrap_or(u32::MAX) <= definition.retries)
                    .then(|| {
                        now + chrono::TimeDelta::from_std(definition.backoff_before(claim.attempt + 1))
                            .unwrap_or_default()
                    });
                let reason = if timeout { "timeout" } else { "error" };
                tracing::warn!(error = %error, ?retry_at, "run failed");
                (
                    if timeout { Outcome::Timeout } else { Outcome::Error },
                    RunEnd::Failure { reason, message: error.to_string(), retry_at },
                )
            }
        };
        if !dry_run {
            // The database may be restarting as the run ends: try again for a while, so the run's end is recorded
            // instead of being left `running` until its lease runs out.
            let mut pause = Duration::from_millis(100);
            loop {
                match bounded(store::complete(&self.pool, claim.run_id, &end, now, duration)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("run finished after it was declared abandoned; its end is not recorded")
                    }
                    Err(e) if is_transient(&e) && pause < self.settings.lease / 4 => {
                        tracing::warn!(error = %e, "could not record the end of the run yet; retrying");
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                        continue;
                    }
                    Err(e) => tracing::error!(error = %e, "could not record the end of the run"),
                }
                break;
            }
        }
        let (report, error) = match end {
            RunEnd::Success(report) => (Some(report), None),
            RunEnd::Failure { message, .. } => (None, Some(message)),
            RunEnd::Interrupted { .. } => (None, Some(INTERRUPTED.to_owned())),
        };
        let items = report.as_ref().map_or(0, |r| r.items);
        self.stats.record(&claim.job, claim.trigger.as_str(), outcome, duration, items, 1);
        RunResult { run_id: claim.run_id, job: claim.job.clone(), outcome, report, error, duration }
    }

    /// One pass of the scheduler: declares dead runs abandoned, claims due ticks and due retries while this
    /// instance has room, and says how long to sleep before the next pass. Spawns claimed runs on `tasks`.
    pub async fn tick(
        self: &Arc<Self>,
        tasks: &mut JoinSet<RunResult>,
        permits: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) -> Result<Duration, sqlx::Error> {
        let now = self.clock.now();
        for abandoned in store::reap_abandoned(&self.pool, self.settings.lease, now).await? {
            tracing::warn!(job = abandoned.job, run_id = %abandoned.run_id, instance = ?abandoned.instance, "run abandoned");
            self.stats.record(&abandoned.job, "schedule", Outcome::Abandoned, Duration::ZERO, 0, 1);
        }
        let mut jobs = store::load_jobs(&self.pool).await?;
        // Instances walk the due jobs in different orders, so they spread over them instead of queueing on the
        // same row lock one job after another.
        let salt = Uuid::new_v4().as_u128();
        jobs.sort_by_key(|j| {
            let mut hash = salt;
            for byte in j.definition.name.bytes() {
                hash = hash.wrapping_mul(0x100_0000_01b3).wrapping_add(u128::from(byte));
            }
            hash
        });
        let claim_settings =
            ClaimSettings { instance: self.settings.instance.clone(), misfire_grace: self.settings.misfire_grace };
        let mut stalled = HashSet::new();
        for stored in &jobs {
            let definition = &stored.definition;
            if !definition.enabled || !self.registry.contains(&definition.name) || !is_due(stored, now) {
                continue;
            }
            let Ok(permit) = Arc::clone(permits).try_acquire_owned() else { break };
            let outcome = store::claim_due(&self.pool, &definition.name, &self.clock, now, &claim_settings).await?;
            if outcome.skipped > 0 {
                self.stats.record(
                    &definition.name,
                    "schedule",
                    Outcome::Skipped,
                    Duration::ZERO,
                    0,
                    outcome.skipped as u64,
                );
            }
            match outcome.claim {
                Some(claim) => self.spawn(tasks, claim, definition.clone(), permit, shutdown),
                None if outcome.busy || outcome.skipped == 0 => {
                    stalled.insert(definition.name.clone());
                }
                None => {}
            }
        }
        let room = i64::try_from(permits.available_permits()).unwrap_or(0);
        if room > 0 {
            for claim in store::claim_retries(&self.pool, now, &self.settings.instance, room).await? {
                let Some(definition) =
                    jobs.iter().find(|j| j.definition.name == claim.job).map(|j| j.definition.clone())
                else {
                    continue;
                };
                let Ok(permit) = Arc::clone(permits).try_acquire_owned() else { break };
                self.spawn(tasks, claim, definition, permit, shutdown);
            }
        }
        // Sleep until the next fire time of a job that is not waiting on something else, within the poll interval.
        let next = jobs
            .iter()
            .filter(|j| {
                j.definition.enabled
                    && !stalled.contains(&j.definition.name)
                    && self.registry.contains(&j.definition.name)
            })
            .filter_map(|j| j.definition.schedule.next_after(j.cursor.unwrap_or(now)))
            .min();
        let sleep = next
            .map(|at| self.clock.real_duration((at - self.clock.now()).to_std().unwrap_or_default()))
            .unwrap_or(self.settings.poll_interval)
            .min(self.settings.poll_interval);
        Ok(sleep)
    }

    fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<RunResult>,
        claim: Claim,
        definition: JobDefinition,
        permit: tokio::sync::OwnedSemaphorePermit,
        shutdown: &CancellationToken,
    ) {
        let engine = Arc::clone(self);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let result = engine.execute(&claim, &definition, RunArgs::default(), shutdown).await;
            drop(permit);
            result
        });
    }

    /// Shadow mode (`hattrick serve --shadow`, docs/schema.md): follows every enabled job's schedule from now on and,
    /// at each tick, runs the job as a dry run, handing its report to `report`. Nothing is written: no claim, no
    /// run-log row, no cursor, nothing in the app's tables. Ticks reached while a dry run of the same job is still
    /// going are skipped (a shadow instance only shows what one run would do). Stops at `shutdown`.
    pub async fn run_shadow(
        self: Arc<Self>,
        shutdown: CancellationToken,
        report: impl Fn(&str, DateTime<Utc>, &RunResult) + Send + Sync + 'static,
    ) {
        let report = Arc::new(report);
        let mut next: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut running: JoinSet<String> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        tracing::info!("shadow mode: every job runs as a dry run at its ticks; nothing is written");
        while !shutdown.is_cancelled() {
            let now = self.clock.now();
            // The stored definitions when there are (what the live instances follow), else this binary's.
            let stored: BTreeMap<String, JobDefinition> = match store::load_jobs(&self.pool).await {
                Ok(jobs) => jobs.into_iter().map(|s| (s.definition.name.clone(), s.definition)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "shadow: cannot read the job definitions; retrying");
                    BTreeMap::new()
                }
            };
            let definitions: Vec<JobDefinition> = self
                .registry
                .names()
                .iter()
                .filter_map(|name| stored.get(name).cloned().or_else(|| self.registry.definition(name)))
                .collect();
            for definition in definitions {
                if !definition.enabled || definition.paused {
                    continue;
                }
                let due = *next
                    .entry(definition.name.clone())
                    .or_insert_with(|| definition.schedule.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC));
                if due > now {
                    continue;
                }
                next.insert(
                    definition.name.clone(),
                    definition.schedule.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC),
                );
                if !busy.insert(definition.name.clone()) {
                    continue;
                }
                let (engine, report, stop) = (Arc::clone(&self), Arc::clone(&report), shutdown.clone());
                running.spawn(async move {
                    let claim = Claim {
                        run_id: Uuid::new_v4(),
                        job: definition.name.clone(),
                        tick: Some(due),
                        attempt: 1,
                        trigger: Trigger::Schedule,
                    };
                    let args = RunArgs { dry_run: true, ..RunArgs::default() };
                    let result = engine.execute(&claim, &definition, args, stop).await;
                    report(&definition.name, due, &result);
                    definition.name
                });
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                Some(Ok(job)) = running.join_next(), if !running.is_empty() => { busy.remove(&job); }
                () = shutdown.cancelled() => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// The scheduler loop of `hattrick serve`: runs until `shutdown` is cancelled, then stops claiming, lets
    /// running work finish within the grace period, and hands what is left to other instances.
    pub async fn run_until_stopped(self: Arc<Self>, shutdown: CancellationToken) {
        self.run_until(shutdown.clone(), shutdown).await;
    }

    /// [`Engine::run_until_stopped`] that stops claiming at `stop` and cancels running work at `cancel_runs` (the
    /// same token in `serve`; the demo lets its last runs finish, so its day ends without interrupted runs).
    pub async fn run_until(self: Arc<Self>, stop: CancellationToken, cancel_runs: CancellationToken) {
        let shutdown = stop;
        let permits = Arc::new(Semaphore::new(self.settings.max_concurrent_runs));
        let mut tasks = JoinSet::new();
        tracing::info!(instance = self.settings.instance, "scheduler started");
        while !shutdown.is_cancelled() {
            let sleep = match self.tick(&mut tasks, &permits, &cancel_runs).await {
                Ok(sleep) => sleep,
                Err(e) => {
                    // The database may be restarting: keep the loop alive and try again.
                    tracing::warn!(error = %e, "scheduler pass failed; retrying");
                    self.settings.poll_interval
                }
            };
            tokio::select! {
                () = tokio::time::sleep(sleep.max(Duration::from_millis(5))) => {}
                () = shutdown.cancelled() => {}
                // A run that ends may unblock a queued tick (policy `all`) or a retry: look again at once.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            // Runs that ended meanwhile are let go of here, so the set holds only running work.
            while tasks.try_join_next().is_some() {}
        }
        tracing::info!(runs = tasks.len(), "shutting down: waiting for running work");
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = &mut grace => {
                    let left = self.own_running_runs().await;
                    tasks.abort_all();
                    match store::abandon_own(&self.pool, &left, self.clock.now()).await {
                        Ok(n) => tracing::warn!(runs = n, "grace period over: unfinished runs handed to other instances"),
                        Err(e) => tracing::error!(error = %e, "could not hand unfinished runs over; their lease will expire"),
                    }
                    break;
                }
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn own_running_runs(&self) -> Vec<Uuid> {
        sqlx::query_scalar!(
            "SELECT id FROM job_execution_logs WHERE status = 'running' AND instance = $1",
            self.settings.instance
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long the engine waits for one of its own bookkeeping statements (a claim, a run's end) before giving up on
/// that connection and trying again: a connection a database crash left waiting for an answer that never comes
/// must not hold a job's lane for the run's whole timeout.
pub(crate) const BOOKKEEPING_TIMEOUT: Duration = Duration::from_secs(10);

/// `future`, or a transient I/O error after [`BOOKKEEPING_TIMEOUT`].
pub(crate) async fn bounded<T>(future: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(BOOKKEEPING_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the database within {} s", BOOKKEEPING_TIMEOUT.as_secs()),
        ))),
    }
}

/// The run log's message for a run cut off by its instance's shutdown.
pub(crate) const INTERRUPTED: &str =
    "interrupted: the instance shut down before the run finished; the tick was handed over";

/// Whether `error` may go away by itself (the connection or the server), as opposed to a failing statement.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now; and class 08, connection exceptions, which is how a
        // pooler reports a server it lost or cannot reach yet (PgBouncer: 08P01 "server conn crashed?",
        // "server_login_retry").
        sqlx::Error::Database(e) => {
            e.code().is_some_and(|code| matches!(code.as_ref(), "57P01" | "57P02" | "57P03") || code.starts_with("08"))
        }
        _ => false,
    }
}

/// Whether a stored job has a tick due at `now` (or has never been scheduled and needs its baseline).
fn is_due(stored: &StoredJob, now: DateTime<Utc>) -> bool {
    match stored.cursor {
        None => true,
        Some(cursor) => stored.definition.schedule.next_after(cursor).is_some_and(|next| next <= now),
    }
}
