//! The per-transaction scratch tables a batch is staged in before it is written to the ledgers and the outbox
//! (`scratch.sql`): `hattrick_credit_grants`, `hattrick_xp_grants`, `hattrick_push_batch`, `hattrick_unlocks` and
//! `hattrick_referral_batch`.

use sqlx::PgConnection;

/// The tables' definitions; `.ci/sqlx.sh` creates them as ordinary tables where statements are described.
pub const DEFINITIONS: &str = include_str!("scratch.sql");

/// Creates the scratch tables in the caller's transaction if this server session has none yet. Call it at the
/// start of every batch transaction: behind a transaction pooler each transaction may run on another session.
pub async fn prepare(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(DEFINITIONS).execute(conn).await?;
    Ok(())
}
