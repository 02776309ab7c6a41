//! Per-run budgets (docs/jobs/README.md): a run stops with a clear error before it would grant or push more than its
//! limit, so the first production run on a database full of old eligibility cannot pay out a fortune by surprise.
//!
//! A batch (one transaction) counts what it wrote against its run's budget before it commits: past the limit it
//! fails, its transaction rolls back, and nothing of it stays. The batches of one run share one [`Spending`], and
//! each holds what it wrote there until it commits, so batches under way at once (a badge sweep's
//! `chunks_at_once`) can never pass a limit together, whatever their interleaving.

use std::sync::{Mutex, MutexGuard, PoisonError};

use engine::JobError;

/// Limits of one run; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most ledger grants (XP and credit rows) one run may write.
    pub max_grants: Option<i64>,
    /// Most pushes one run may enqueue.
    pub max_pushes: Option<i64>,
}

/// One run's budget in use: its limits, and what its batches have written, committed or still under way.
#[derive(Debug)]
pub struct Spending {
    limits: Budget,
    /// Written by committed batches, plus held by batches under way.
    spent: Mutex<Amounts>,
}

/// Grants and pushes, counted.
#[derive(Debug, Clone, Copy, Default)]
struct Amounts {
    grants: i64,
    pushes: i64,
}

impl Spending {
    /// A run's budget, nothing spent yet.
    pub fn new(limits: Budget) -> Self {
        Self { limits, spent: Mutex::default() }
    }

    /// A budget that never stops anything (an operator's grant).
    pub fn unlimited() -> Self {
        Self::new(Budget::default())
    }

    /// The share of the next batch, one transaction.
    pub fn batch(&self) -> Batch<'_> {
        Batch { spending: self, held: Amounts::default(), kept: false }
    }

    fn spent(&self) -> MutexGuard<'_, Amounts> {
        self.spent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One batch's share of its run's [`Spending`]: what the batch wrote in its open transaction, counted against the
/// run's limits as it writes. [`Batch::keep`] once the transaction's commit was tried keeps it in the run's total;
/// a batch dropped without it (it failed, its transaction rolled back) gives it back.
#[derive(Debug)]
pub struct Batch<'a> {
    spending: &'a Spending,
    held: Amounts,
    kept: bool,
}

impl Batch<'_> {
    /// The batch has just written `rows` ledger rows (XP and credits, level-up bonuses included) in its open
    /// transaction. Fails if they take the run past `max_grants`; the caller then returns the error and its
    /// transaction rolls back, so nothing of the batch stays.
    pub fn granted(&mut self, rows: i64) -> Result<(), JobError> {
        self.count(
            rows,
            self.spending.limits.max_grants,
            |amounts| &mut amounts.grants,
            |total, max| {
                format!(
                    "budget: this run would write {total} grants, more than max_grants = {max}; nothing of this batch \
                     was written (raise jobs.<name>.max_grants, or back-fill with --silent after review)"
                )
            },
        )
    }

    /// The batch has just enqueued `rows` pushes in its open transaction. Fails if they take the run past
    /// `max_pushes`, as [`Batch::granted`] does.
    pub fn pushed(&mut self, rows: i64) -> Result<(), JobError> {
        self.count(rows, self.spending.limits.max_pushes, |amounts| &mut amounts.pushes, |total, max| {
            format!(
                "budget: this run would enqueue {total} pushes, more than max_pushes = {max}; nothing of this batch \
                 was written (raise jobs.<name>.max_pushes, or run with --silent)"
            )
        })
    }

    /// Adds `rows` to the run's total of one kind (`amount`) and holds them, unless that would pass `limit`.
    fn count(
        &mut self,
        rows: i64,
        limit: Option<i64>,
        amount: fn(&mut Amounts) -> &mut i64,
        refusal: fn(i64, i64) -> String,
    ) -> Result<(), JobError> {
        let mut spent = self.spending.spent();
        let total = *amount(&mut spent) + rows;
        if let Some(max) = limit.filter(|max| total > *max) {
            return Err(JobError::Failed(refusal(total, max)));
        }
        *amount(&mut spent) = total;
        *amount(&mut self.held) += rows;
        Ok(())
    }

    /// The batch's transaction has committed, or its commit was tried: what it wrote stays in the run's total. Call
    /// it after a commit that reported an error too, since the server may have committed all the same (the
    /// connection lost after COMMIT was sent); the run fails on that error anyway.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let mut spent = self.spending.spent();
            spent.grants -= self.held.grants;
            spent.pushes -= self.held.pushes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(run: &Spending) -> (i64, i64) {
        let spent = *run.spent();
        (spent.grants, spent.pushes)
    }

    #[test]
    fn a_batch_kept_stays_in_the_run_and_a_batch_dropped_gives_back_what_it_held() {
        let run = Spending::unlimited();
        let mut kept = run.batch();
        kept.granted(5).unwrap();
        kept.pushed(2).unwrap();
        kept.keep();
        let mut failed = run.batch();
        failed.granted(7).unwrap();
        failed.pushed(3).unwrap();
        assert_eq!(spent(&run), (12, 5), "a batch under way counts until it ends");
        drop(failed);
        assert_eq!(spent(&run), (5, 2));
    }

    #[test]
    fn batches_under_way_share_the_limit_and_the_one_past_it_fails_without_counting() {
        let run = Spending::new(Budget { max_grants: Some(25), max_pushes: Some(10) });
        let (mut a, mut b, mut c) = (run.batch(), run.batch(), run.batch());
        a.granted(10).unwrap();
        b.granted(10).unwrap();
        let error = c.granted(10).unwrap_err().to_string();
        assert!(error.contains("would write 30 grants, more than max_grants = 25"), "{error}");
        assert_eq!(spent(&run), (20, 0));
        // A batch that failed and rolled back frees its share for the next one.
        drop(b);
        c.granted(10).unwrap();
        c.pushed(10).unwrap();
        let error = a.pushed(1).unwrap_err().to_string();
        assert!(error.contains("would enqueue 11 pushes, more than max_pushes = 10"), "{error}");
        drop(a);
        c.keep();
        assert_eq!(spent(&run), (10, 10));
        // Exactly at the limit is allowed.
        let mut d = run.batch();
        d.granted(15).unwrap();
        d.keep();
        assert_eq!(spent(&run), (25, 10));
    }
}
