//! Per-run budgets (docs/jobs/README.md): a run stops with a clear error before it would grant or push more than its
//! limit, so the first production run on a database full of old eligibility cannot pay out a fortune by surprise.
//! A run's batches written at once share one [`Spending`]: each holds its share before it writes, so a limit holds
//! for the run however many of its transactions are under way.

use std::sync::Mutex;

use engine::JobError;
use sqlx::PgConnection;

use crate::{ledger, outbox};

/// Limits of one run; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most ledger grants (XP and credit rows) one run may write.
    pub max_grants: Option<i64>,
    /// Most pushes one run may enqueue.
    pub max_pushes: Option<i64>,
}

/// One run's budget in use: its limits, and what its batches have written or hold. Batches written at once (a
/// badge sweep's `chunks_at_once`) share it, so together they can never pass a limit: each holds what it is about
/// to write before it writes ([`Batch`]).
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

    /// The share of the next batch, one transaction: empty until it checks what it is about to write.
    pub fn batch(&self) -> Batch<'_> {
        Batch { spending: self, held: Amounts::default(), unwritten: Amounts::default(), kept: false }
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, Amounts> {
        self.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One batch's share of its run's [`Spending`]. Before the batch writes its grants (or its pushes), the check
/// holds what it would write, against the limit and what the run has written or holds elsewhere; once written,
/// the held amount becomes what was actually written. [`Batch::keep`] after the transaction commits keeps it in
/// the run's total; a batch dropped without it (its transaction failed or was rolled back) gives it all back.
#[derive(Debug)]
pub struct Batch<'a> {
    spending: &'a Spending,
    /// Counted in the run's total for this batch: held, then written.
    held: Amounts,
    /// Held by the last check and not yet replaced by what was written.
    unwritten: Amounts,
    kept: bool,
}

impl Batch<'_> {
    /// Fails (before anything of the batch is written) if the batch's pending grants would take the run past
    /// `max_grants`; otherwise holds them until [`Batch::granted`].
    pub async fn check_grants(&mut self, conn: &mut PgConnection) -> Result<(), JobError> {
        let Some(max) = self.spending.limits.max_grants else { return Ok(()) };
        let pending = ledger::pending(conn).await?;
        let mut spent = self.spending.spent();
        if spent.grants + pending > max {
            return Err(JobError::Failed(format!(
                "budget: this run would write {} grants, more than max_grants = {max}; nothing of this batch was \
                 written (raise jobs.<name>.max_grants, or back-fill with --silent after review)",
                spent.grants + pending
            )));
        }
        spent.grants += pending;
        self.held.grants += pending;
        self.unwritten.grants += pending;
        Ok(())
    }

    /// The batch wrote `rows` ledger rows (level-up bonuses included): they replace what its check held.
    pub fn granted(&mut self, rows: i64) {
        let change = rows - std::mem::take(&mut self.unwritten.grants);
        self.spending.spent().grants += change;
        self.held.grants += change;
    }

    /// Fails if the pushes of `source` not in the outbox yet would take the run past `max_pushes`; otherwise
    /// holds them until [`Batch::pushed`].
    pub async fn check_pushes(&mut self, conn: &mut PgConnection, source: outbox::Source) -> Result<(), JobError> {
        let Some(max) = self.spending.limits.max_pushes else { return Ok(()) };
        let pending = outbox::pending(conn, source).await?;
        let mut spent = self.spending.spent();
        if spent.pushes + pending > max {
            return Err(JobError::Failed(format!(
                "budget: this run would enqueue {} pushes, more than max_pushes = {max}; nothing of this batch was \
                 written (raise jobs.<name>.max_pushes, or run with --silent)",
                spent.pushes + pending
            )));
        }
        spent.pushes += pending;
        self.held.pushes += pending;
        self.unwritten.pushes += pending;
        Ok(())
    }

    /// The batch enqueued `rows` pushes: they replace what its last push check held.
    pub fn pushed(&mut self, rows: i64) {
        let change = rows - std::mem::take(&mut self.unwritten.pushes);
        self.spending.spent().pushes += change;
        self.held.pushes += change;
    }

    /// The batch's transaction committed: what it wrote stays in the run's total.
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

    #[test]
    fn a_batch_kept_stays_in_the_run_and_a_batch_dropped_gives_back_everything() {
        let run = Spending::unlimited();
        let mut kept = run.batch();
        kept.granted(5);
        kept.pushed(2);
        kept.keep();
        let mut failed = run.batch();
        failed.granted(7);
        failed.pushed(3);
        let spent = *run.spent();
        assert_eq!((spent.grants, spent.pushes), (12, 5), "a batch under way counts until it ends");
        drop(failed);
        let spent = *run.spent();
        assert_eq!((spent.grants, spent.pushes), (5, 2));
    }

    #[test]
    fn what_a_batch_wrote_replaces_what_its_check_held() {
        let run = Spending::unlimited();
        let mut batch = run.batch();
        // As a check would have held them: 10 grants pending, of which 8 were written (2 keys already used).
        batch.held.grants = 10;
        batch.unwritten.grants = 10;
        run.spent().grants = 10;
        batch.granted(8);
        batch.pushed(4);
        batch.pushed(1);
        batch.keep();
        let spent = *run.spent();
        assert_eq!((spent.grants, spent.pushes), (8, 5));
    }
}
