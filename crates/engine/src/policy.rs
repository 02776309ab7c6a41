//! What a job does about ticks it missed or that arrive while it runs (docs/engine.md).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happens to ticks that were due while no instance ran the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Record the missed ticks and run once now (the every-minute and every-five-minute jobs).
    RunOnce,
    /// Record the missed ticks and wait for the next one (the local-time jobs: the next tick serves everyone
    /// still due).
    Skip,
    /// Run every missed tick, oldest first, up to a limit (partner analytics: each tick is one day).
    All,
    /// Run only the latest missed tick (weekly and monthly housekeeping).
    Latest,
}

impl fmt::Display for MisfirePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MisfirePolicy::RunOnce => "run_once",
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::All => "all",
            MisfirePolicy::Latest => "latest",
        })
    }
}
