//! hattrick's scheduling engine: what runs, when, and where, and the history of it. It knows nothing of badges
//! or pushes: jobs plug into it through [`Job`].
//!
//! - [`clock`]: the business clock (real, fixed or scaled), the "now" of every job.
//! - [`schedule`]: 5-field cron read in a time zone, DST handled as docs/engine.md says.
//! - [`store`]: job definitions and the run log in PostgreSQL; the claim protocol that gives each tick exactly one
//!   run across any number of instances.
//! - [`runner`]: one instance's [`Engine`]: the scheduler loop, heartbeats, timeouts, retries, shutdown.
//! - [`metrics`]: counters per job, trigger and outcome.
//! - [`events`]: event runs from the app's changes (the change table, looked at every `poll_interval`).

pub mod clock;
pub mod events;
pub mod job;
pub mod metrics;
pub mod policy;
pub mod runner;
pub mod schedule;
pub mod store;

pub use clock::Clock;
pub use job::{Job, JobContext, JobDefaults, JobDefinition, JobError, JobReport, RunArgs, RunFuture, Trigger};
pub use policy::MisfirePolicy;
pub use runner::{Engine, EngineSettings, Registry, RunResult};
pub use schedule::Schedule;
