//! Counters and durations per job, trigger and outcome, kept in memory for the `/metrics` endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How a run ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// It finished.
    Success,
    /// It failed with an error.
    Error,
    /// It ran out of time.
    Timeout,
    /// It was declared abandoned (its instance stopped heartbeating).
    Abandoned,
    /// A tick was recorded without running (missed, overlap, paused).
    Skipped,
    /// Its instance shut down before it finished (a deploy): the tick went to the next attempt. Not a failure.
    Interrupted,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Abandoned => "abandoned",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// Totals for one (job, trigger, outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunTotals {
    /// Runs (or skipped ticks) counted.
    pub count: u64,
    /// Sum of run durations.
    pub duration: Duration,
    /// Sum of items processed.
    pub items: i64,
}

/// Key of a series: job, trigger, outcome.
pub type SeriesKey = (String, String, Outcome);

/// Thread-safe run statistics of one instance.
#[derive(Debug, Default)]
pub struct RunStats {
    series: Mutex<BTreeMap<SeriesKey, RunTotals>>,
}

impl RunStats {
    /// Counts `count` runs of `job` by `trigger` that ended in `outcome`.
    pub fn record(&self, job: &str, trigger: &str, outcome: Outcome, duration: Duration, items: i64, count: u64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let totals = series.entry((job.to_owned(), trigger.to_owned(), outcome)).or_default();
        totals.count += count;
        totals.duration += duration;
        totals.items += items;
    }

    /// A copy of every series.
    pub fn snapshot(&self) -> BTreeMap<SeriesKey, RunTotals> {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
