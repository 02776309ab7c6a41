//! Test support for every hattrick crate (dev-only).
//!
//! [`TestDb::new`] gives each test its own freshly migrated database on the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), cloned from a migrated template so it costs a `CREATE DATABASE`,
//! and drops it when the test ends. When no server answers there, a throwaway cluster is started from the machine's
//! PostgreSQL binaries under the temp directory and reused by later tests (stop it with
//! `pg_ctl -D $TMPDIR/hattrick-testkit-pg/data stop`).

mod database;
mod ledger;
pub mod webdriver;

pub use database::{TestDb, server_url};
pub use engine::Clock;
pub use ledger::assert_ledger_invariants;
