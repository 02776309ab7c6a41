//! Per-run budgets (docs/jobs/README.md): a run stops with a clear error before it would grant or push more than its
//! limit, so the first production run on a database full of old eligibility cannot pay out a fortune by surprise.

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

impl Budget {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_grants.is_some() || self.max_pushes.is_some()
    }

    /// Fails (before anything of the batch is written) if the batch's pending grants would take the run past
    /// `max_grants`; `so_far` is what the run already granted.
    pub async fn check_grants(&self, conn: &mut PgConnection, so_far: i64) -> Result<(), JobError> {
        let Some(max) = self.max_grants else { return Ok(()) };
        let pending = ledger::pending(conn).await?;
        if so_far + pending > max {
            return Err(JobError::Failed(format!(
                "budget: this run would write {} grants, more than max_grants = {max}; nothing of this batch was \
                 written (raise jobs.<name>.max_grants, or back-fill with --silent after review)",
                so_far + pending
            )));
        }
        Ok(())
    }

    /// Fails if the pushes of `source` not in the outbox yet would take the run past `max_pushes`; `so_far` is what
    /// the run already enqueued.
    pub async fn check_pushes(
        &self,
        conn: &mut PgConnection,
        source: outbox::Source,
        so_far: i64,
    ) -> Result<(), JobError> {
        let Some(max) = self.max_pushes else { return Ok(()) };
        let pending = outbox::pending(conn, source).await?;
        if so_far + pending > max {
            return Err(JobError::Failed(format!(
                "budget: this run would enqueue {} pushes, more than max_pushes = {max}; nothing of this batch was \
                 written (raise jobs.<name>.max_pushes, or run with --silent)",
                so_far + pending
            )));
        }
        Ok(())
    }
}
