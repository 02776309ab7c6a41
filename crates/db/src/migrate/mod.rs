//! The migrator: brings a database, fresh or legacy, to the desired schema by adding only what is missing.
//!
//! The desired schema is one SQL file of `CREATE TABLE` and `CREATE INDEX` statements
//! (`migrations/schema.sql`). [`plan`] loads it into a scratch schema inside a transaction that is always rolled
//! back, reads both catalogs and lists the [`Action`]s that would make the live schema match; [`apply`] carries
//! them out. A second run plans nothing. An ordered list of deltas could not do this: the app's database was
//! created by another program and may be in any of several shapes (docs/schema.md, "Operating on a live database").
//!
//! Rules that keep a live database safe (docs/schema.md):
//! - nothing is retyped, and nothing is dropped except a check constraint we replace on the same column, a
//!   ledger's old key unique across users once the per-user index exists, and an index of hattrick's own tables it
//!   retired once its replacement is built (`fixups::RETIRED_INDEXES`);
//! - a column added to an existing table is nullable unless it has a default;
//! - checks and foreign keys are added `NOT VALID` and validated only when no row violates them; violations are
//!   reported, not fatal;
//! - indexes on existing tables are built `CONCURRENTLY`, and an equivalent index of another name is reused;
//! - every DDL statement runs under `lock_timeout` and is retried when it times out;
//! - one migrator at a time, by a transaction-scoped advisory lock held on a connection of its own.

mod catalog;
mod fixups;

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::{Error, Result};
pub use catalog::Catalog;
use catalog::{Constraint, Table};
use fixups::Fixup;

/// The desired schema, embedded in the binary.
pub const SCHEMA_SQL: &str = include_str!("../../../../migrations/schema.sql");

const SCRATCH_SCHEMA: &str = "hattrick_desired";
const MIGRATE_LOCK_KEY: i64 = 0x6861_7474_7269_636b; // "hattrick"
const LOCK_TIMEOUT: &str = "5s";
const LOCK_RETRIES: u32 = 20;

/// Tables that may already exist in another shape, but whose every column hattrick relies on: a mismatch stops
/// the migration instead of being worked around.
const STRICT_TABLES: &[&str] = &["customer_predictions"];

/// hattrick's SQL functions, embedded in the binary: applied as a whole whenever they change.
pub const ROUTINES_SQL: &str = include_str!("../../../../migrations/routines.sql");

/// hattrick's built-in push texts (Turkish and English), embedded in the binary: written into `hattrick_messages`
/// with the functions, replacing the previous built-in rows and leaving a deployment's own texts alone.
pub const MESSAGES_SQL: &str = include_str!("../../../../migrations/messages.sql");

/// The checksum of the embedded schema and functions, stored after a successful migration so `serve` and
/// `/readyz` can tell whether this binary's schema is applied.
pub fn schema_checksum() -> String {
    let digest = Sha256::digest([SCHEMA_SQL.as_bytes(), ROUTINES_SQL.as_bytes(), MESSAGES_SQL.as_bytes()].concat());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The change-capture triggers on the app's tables (docs/events.md), applied when events are on and removed when off.
pub const EVENTS_SQL: &str = include_str!("../../../../migrations/events.sql");

/// The `(trigger, table)` pairs `events.sql` creates, read from the file.
pub fn event_triggers() -> Vec<(String, String)> {
    EVENTS_SQL
        .split("CREATE OR REPLACE TRIGGER ")
        .skip(1)
        .filter_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().take(5).collect();
            // name AFTER <event> ON <table>
            (words.len() == 5 && words[1] == "AFTER" && words[3] == "ON")
                .then(|| (words[0].to_owned(), words[4].to_owned()))
        })
        .collect()
}

/// What the `events` key of `hattrick_schema_state` holds when the triggers are as wanted.
fn events_state(on: bool) -> String {
    if on {
        let digest = Sha256::digest(EVENTS_SQL.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        "off".to_owned()
    }
}

fn routines_checksum() -> String {
    let digest = Sha256::digest([ROUTINES_SQL.as_bytes(), MESSAGES_SQL.as_bytes()].concat());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a missing table exactly as the schema file writes it.
    CreateTable {
        /// Table name.
        table: String,
        /// The `CREATE TABLE` statement.
        sql: String,
    },
    /// Add a missing column to an existing table.
    AddColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// The `ALTER TABLE ... ADD COLUMN` statement.
        sql: String,
    },
    /// Add a missing check or foreign key `NOT VALID`, then validate it if the data allows.
    AddConstraint {
        /// Table name.
        table: String,
        /// Constraint name.
        name: String,
        /// Its definition (`CHECK (...)`, `FOREIGN KEY ...`).
        definition: String,
        /// Check constraints on the same column that this one replaces (e.g. the first version's status check).
        replaces: Vec<String>,
    },
    /// Validate a constraint that exists `NOT VALID`.
    ValidateConstraint {
        /// Table name.
        table: String,
        /// Constraint name.
        name: String,
    },
    /// Build a missing index.
    CreateIndex {
        /// Table name.
        table: String,
        /// Index name.
        name: String,
        /// The `CREATE INDEX` statement, without `CONCURRENTLY`.
        sql: String,
        /// Build it `CONCURRENTLY` (the table already existed).
        concurrently: bool,
        /// An invalid index of this name, left by an interrupted concurrent build, is dropped first.
        drop_invalid: bool,
    },
    /// A data or trigger change for a legacy database.
    Fixup(Fixup),
    /// (Re)create hattrick's SQL functions (`migrations/routines.sql`) and built-in push texts
    /// (`migrations/messages.sql`), which changed.
    Routines,
    /// Install (true) or remove (false) the change-capture triggers (`migrations/events.sql`).
    Events(bool),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateTable { table, .. } => write!(f, "create table {table}"),
            Action::AddColumn { table, column, .. } => write!(f, "add column {table}.{column}"),
            Action::AddConstraint { table, name, definition, replaces } if replaces.is_empty() => {
                write!(f, "add constraint {table}.{name}: {definition}")
            }
            Action::AddConstraint { table, name, definition, replaces } => {
                write!(f, "replace constraint {} on {table} by {name}: {definition}", replaces.join(", "))
            }
            Action::ValidateConstraint { table, name } => write!(f, "validate constraint {table}.{name}"),
            Action::CreateIndex { name, sql, concurrently, .. } => {
                let how = if *concurrently { " (concurrently)" } else { "" };
                write!(f, "create index {name}{how}: {sql}")
            }
            Action::Fixup(fixup) => write!(f, "{fixup}"),
            Action::Routines => write!(
                f,
                "create or replace hattrick's SQL functions and built-in push texts (migrations/routines.sql, \
                 migrations/messages.sql)"
            ),
            Action::Events(true) => {
                write!(f, "install the change-capture triggers on the app's tables (migrations/events.sql)")
            }
            Action::Events(false) => write!(f, "remove the change-capture triggers (events are off)"),
        }
    }
}

/// Rows that violate a constraint hattrick wants: the constraint stays `NOT VALID` (or the unique index unbuilt)
/// until they are fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Table name.
    pub table: String,
    /// Constraint or index name.
    pub constraint: String,
    /// How many rows (for a unique key: how many duplicated values) violate it.
    pub rows: i64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {} row(s) violate it", self.table, self.constraint, self.rows)
    }
}

/// What a migration would do to one database.
#[derive(Debug, Default)]
pub struct Plan {
    /// The steps, in the order they run.
    pub actions: Vec<Action>,
    /// Rows that keep a constraint from being validated.
    pub violations: Vec<Violation>,
    /// Differences hattrick tolerates and leaves alone (e.g. a legacy `timestamp without time zone` column).
    pub notes: Vec<String>,
    /// Differences hattrick cannot work with; [`apply`] refuses to run while there are any.
    pub blockers: Vec<String>,
    /// Whether the database has never been migrated by hattrick.
    pub first_adoption: bool,
}

impl Plan {
    /// True when the database already matches the desired schema.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() && self.blockers.is_empty() {
            writeln!(f, "schema is up to date")?;
        }
        if !self.actions.is_empty() {
            writeln!(f, "{} change(s) to apply:", self.actions.len())?;
            for action in &self.actions {
                writeln!(f, "  - {action}")?;
            }
        }
        if !self.violations.is_empty() {
            writeln!(f, "rows that violate a constraint (it stays NOT VALID until they are fixed):")?;
            for violation in &self.violations {
                writeln!(f, "  - {violation}")?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "left as they are:")?;
            for note in &self.notes {
                writeln!(f, "  - {note}")?;
            }
        }
        if !self.blockers.is_empty() {
            writeln!(f, "cannot migrate until these are resolved:")?;
            for blocker in &self.blockers {
                writeln!(f, "  - {blocker}")?;
            }
        }
        Ok(())
    }
}

/// A statement of the schema file.
#[derive(Debug, Clone)]
struct Statement {
    kind: StatementKind,
    sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StatementKind {
    Table(String),
    Index { name: String, table: String },
}

fn statements() -> Result<Vec<Statement>> {
    let without_comments: String = SCHEMA_SQL
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|sql| {
            let words: Vec<&str> = sql.split_whitespace().collect();
            let kind = match words.as_slice() {
                ["CREATE", "TABLE", name, ..] | ["CREATE", "UNLOGGED", "TABLE", name, ..] => {
                    StatementKind::Table((*name).to_owned())
                }
                ["CREATE", "INDEX", name, "ON", table, ..] | ["CREATE", "UNIQUE", "INDEX", name, "ON", table, ..] => {
                    StatementKind::Index { name: (*name).to_owned(), table: (*table).to_owned() }
                }
                _ => {
                    return Err(Error::Migration(format!(
                        "schema.sql: unsupported statement (only CREATE TABLE and CREATE INDEX): {}",
                        sql.lines().next().unwrap_or_default()
                    )));
                }
            };
            Ok(Statement { kind, sql: sql.to_owned() })
        })
        .collect()
}

/// The constraint clauses of the `CREATE TABLE` statements as written, by (table, constraint name).
///
/// A constraint is added from its source text, never from PostgreSQL's deparsed definition: deparsing is not a
/// fixed point (`x IN (...)` comes back as `x = ANY (ARRAY[...])` and again differently), so only the same source
/// gives the same definition in the scratch schema and in the live one.
fn constraint_sources(statements: &[Statement]) -> Vec<((String, String), String)> {
    let mut sources = Vec::new();
    for statement in statements {
        let StatementKind::Table(table) = &statement.kind else { continue };
        let (Some(open), Some(close)) = (statement.sql.find('('), statement.sql.rfind(')')) else { continue };
        let mut depth = 0;
        let mut start = open + 1;
        let body = &statement.sql[..close];
        let mut items = Vec::new();
        for (i, c) in body.char_indices().skip(open + 1) {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&body[start..]);
        for item in items {
            let words: Vec<&str> = item.split_whitespace().collect();
            if let ["CONSTRAINT", name, ..] = words.as_slice() {
                let definition = words[2..].join(" ");
                sources.push(((table.clone(), (*name).to_owned()), definition));
            }
        }
    }
    sources
}

/// Holds the migration lock; [`plan`] and [`apply`] take one.
///
/// Works directly and through a pooler in transaction mode: the lock is a transaction-scoped advisory lock held
/// by a transaction left open on a connection of its own (a pooler keeps a server connection for an open
/// transaction, and releases the lock with it if hattrick dies), and every statement of the migration runs in a
/// transaction of its own or alone (`CREATE INDEX CONCURRENTLY`), so no session state is relied on.
pub struct Migrator {
    /// The open transaction holding the lock.
    _lock: PgConnection,
    /// The migration's statements, one after the other.
    conn: crate::Pool,
    schema: String,
    events: bool,
}

impl Migrator {
    /// Opens a connection on `url` and waits for the migration lock, so that two `hattrick migrate` never
    /// interleave.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut lock = crate::connect_one(url, "hattrick migrate").await?;
        // Simple protocol, one message: the transaction and its lock stay on one server connection.
        sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")))
            .execute(&mut lock)
            .await?;
        let settings = crate::PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(60),
            application_name: "hattrick migrate".to_owned(),
        };
        let conn = crate::connect(url, &settings).await?;
        let schema: String = crate::query_scalar("SELECT current_schema()::text").fetch_one(&conn).await?;
        Ok(Self { _lock: lock, conn, schema, events: true })
    }

    /// Releases the migration lock and closes the connections, telling the server so. Dropping a migrator releases
    /// the lock too (its transaction ends with its connection), but the server then logs a client that vanished in
    /// an open transaction.
    pub async fn close(self) -> Result<()> {
        let Self { _lock: mut lock, conn, .. } = self;
        conn.close().await;
        sqlx::raw_sql("ROLLBACK").execute(&mut lock).await?;
        sqlx::Connection::close(lock).await?;
        Ok(())
    }

    /// Whether the change-capture triggers should be installed (the default) or removed (`events.enabled = false`,
    /// for databases where triggers are not allowed).
    pub fn with_events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// Compares the live schema with the desired one and lists what would change.
    pub async fn plan(&mut self) -> Result<Plan> {
        let statements = statements()?;
        let mut tx = self.conn.begin().await?;
        let live = catalog::read(&mut tx, &self.schema).await?;
        tx.commit().await?;
        let desired = self.desired_catalog(&statements).await?;
        let mut plan = diff(&statements, &desired, &live);
        let sources = constraint_sources(&statements);
        for action in &mut plan.actions {
            if let Action::AddConstraint { table, name, definition, .. } = action
                && let Some((_, source)) = sources.iter().find(|((t, n), _)| t == table && n == name)
            {
                definition.clone_from(source);
            }
        }
        for violation in self.count_violations(&plan, &desired, &live).await? {
            plan.violations.push(violation);
        }
        plan.first_adoption = !live.tables.contains_key("hattrick_schema_state")
            || crate::query_scalar::<bool>(
                "SELECT NOT EXISTS (SELECT 1 FROM hattrick_schema_state WHERE key = 'schema_checksum')",
            )
            .fetch_one(&self.conn)
            .await?;
        let mut tx = self.conn.begin().await?;
        let fixups = fixups::detect(&mut tx, &live, plan.first_adoption).await?;
        tx.commit().await?;
        for fixup in fixups {
            plan.actions.push(Action::Fixup(fixup));
        }
        let routines_applied = live.tables.contains_key("hattrick_schema_state")
            && crate::query_scalar::<bool>(
                "SELECT EXISTS (SELECT 1 FROM hattrick_schema_state WHERE key = 'routines_checksum' AND value = $1)",
            )
            .bind(routines_checksum())
            .fetch_one(&self.conn)
            .await?;
        if !routines_applied {
            plan.actions.push(Action::Routines);
        }
        let events_applied = live.tables.contains_key("hattrick_schema_state")
            && crate::query_scalar::<bool>(
                "SELECT EXISTS (SELECT 1 FROM hattrick_schema_state WHERE key = 'events' AND value = $1)",
            )
            .bind(events_state(self.events))
            .fetch_one(&self.conn)
            .await?;
        // A database that never had them needs no removal.
        let never_installed = !self.events
            && crate::query_scalar::<bool>(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'hattrick\\_changes\\_%' AND NOT tgisinternal)",
            )
            .fetch_one(&self.conn)
            .await?;
        if !events_applied && !never_installed {
            plan.actions.push(Action::Events(self.events));
        }
        Ok(plan)
    }

    /// Applies `plan` (from [`Migrator::plan`] on this migrator) and records the schema checksum.
    pub async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport> {
        if !plan.blockers.is_empty() {
            return Err(Error::Migration(format!("refusing to migrate: {}", plan.blockers.join("; "))));
        }
        let mut report = ApplyReport::default();
        let creates: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CreateTable { .. } | Action::CreateIndex { concurrently: false, .. }))
            .collect();
        if !creates.is_empty() {
            // New tables and their indexes appear together or not at all.
            let mut tx = self.conn.begin().await?;
            crate::query(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
            for action in &creates {
                if let Action::CreateTable { sql, .. } | Action::CreateIndex { sql, .. } = action {
                    crate::query(AssertSqlSafe(sql.clone())).execute(&mut *tx).await?;
                }
                report.applied.push(action.to_string());
            }
            tx.commit().await?;
        }
        for action in &plan.actions {
            match action {
                Action::CreateTable { .. } | Action::CreateIndex { concurrently: false, .. } => {}
                Action::AddColumn { sql, .. } => {
                    self.ddl(sql).await?;
                    report.applied.push(action.to_string());
                }
                Action::AddConstraint { table, name, definition, replaces } => {
                    let mut sql = format!("ALTER TABLE {table} ");
                    for old in replaces {
                        sql.push_str(&format!("DROP CONSTRAINT {old}, "));
                    }
                    sql.push_str(&format!("ADD CONSTRAINT {name} {definition} NOT VALID"));
                    self.ddl(&sql).await?;
                    report.applied.push(action.to_string());
                    self.validate(table, name, &mut report).await?;
                }
                Action::ValidateConstraint { table, name } => self.validate(table, name, &mut report).await?,
                Action::CreateIndex { table, name, .. } if plan.violations.iter().any(|v| &v.constraint == name) => {
                    // A concurrent unique build over duplicates would fail and leave an invalid index behind.
                    report.left_not_valid.push(format!("{table}.{name} (not built: duplicate values)"));
                }
                Action::CreateIndex { name, sql, drop_invalid, .. } => {
                    if *drop_invalid {
                        self.ddl(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")).await?;
                    }
                    let concurrent = sql.replacen(" INDEX ", " INDEX CONCURRENTLY ", 1);
                    self.ddl(&concurrent).await?;
                    report.applied.push(action.to_string());
                }
                Action::Fixup(fixup) => match fixup.waiting_drop(&self.conn).await? {
                    Some(fixups::WaitingDrop { sql, ready: true, .. }) => {
                        self.ddl(&sql).await?;
                        report.applied.push(action.to_string());
                    }
                    Some(fixups::WaitingDrop { kept, .. }) => {
                        tracing::warn!(step = %action, "{kept}");
                        report.left_not_valid.push(kept);
                    }
                    None => {
                        fixups::apply(&self.conn, fixup).await?;
                        report.applied.push(action.to_string());
                    }
                },
                Action::Routines => {
                    let mut tx = self.conn.begin().await?;
                    sqlx::raw_sql(ROUTINES_SQL)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| Error::Migration(format!("routines.sql: {e}")))?;
                    sqlx::raw_sql(MESSAGES_SQL)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| Error::Migration(format!("messages.sql: {e}")))?;
                    crate::query(
                        "INSERT INTO hattrick_schema_state (key, value, updated_at) VALUES ('routines_checksum', $1, now())
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
                    )
                    .bind(routines_checksum())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    report.applied.push(action.to_string());
                }
                Action::Events(on) => {
                    self.events_change(*on).await?;
                    report.applied.push(action.to_string());
                }
            }
        }
        crate::query(
            "INSERT INTO hattrick_schema_state (key, value, updated_at) VALUES ('schema_checksum', $1, now())
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        )
        .bind(schema_checksum())
        .execute(&self.conn)
        .await?;
        Ok(report)
    }

    /// Installs or removes the change-capture triggers in one transaction under `lock_timeout` (a trigger change
    /// locks its table briefly), retried while a lock is busy, and records the state.
    async fn events_change(&mut self, on: bool) -> Result<()> {
        let script = if on {
            EVENTS_SQL.to_owned()
        } else {
            event_triggers()
                .iter()
                .map(|(name, table)| format!("DROP TRIGGER IF EXISTS {name} ON {table};\n"))
                .collect()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.conn.begin().await?;
            crate::query(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
            match sqlx::raw_sql(AssertSqlSafe(script.clone())).execute(&mut *tx).await {
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") && attempt < LOCK_RETRIES => {
                    tx.rollback().await?;
                    tracing::warn!(attempt, "lock not available for the change-capture triggers, retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(6)))).await;
                    continue;
                }
                Err(e) => return Err(Error::Migration(format!("events.sql: {e}"))),
                Ok(_) => {}
            }
            crate::query(
                "INSERT INTO hattrick_schema_state (key, value, updated_at) VALUES ('events', $1, now())
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
            )
            .bind(events_state(on))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        }
    }

    /// Runs one DDL statement under `lock_timeout` (`SET LOCAL`, in a transaction of its own), retrying while the
    /// lock is busy: a migration on a live database waits its turn instead of queueing every other query behind
    /// it. `CONCURRENTLY` statements cannot run in a transaction: they run alone, and wait as long as they need
    /// (they take no lock that queues the app's reads and writes).
    async fn ddl(&mut self, sql: &str) -> Result<()> {
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let result = if sql.contains(" CONCURRENTLY ") {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&self.conn).await.map(|_| ())
            } else {
                self.ddl_in_transaction(sql).await
            };
            match result {
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") && attempt < LOCK_RETRIES => {
                    tracing::warn!(attempt, statement = sql, "lock not available, retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(6)))).await;
                }
                other => break other,
            }
        };
        outcome.map_err(|e| Error::Migration(format!("{sql}: {e}")))
    }

    async fn ddl_in_transaction(&self, sql: &str) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *tx).await?;
        tx.commit().await
    }

    /// Validates a `NOT VALID` constraint, leaving it unvalidated (and saying so) when rows violate it.
    async fn validate(&mut self, table: &str, name: &str, report: &mut ApplyReport) -> Result<()> {
        let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}");
        match crate::query(AssertSqlSafe(sql)).execute(&self.conn).await {
            Ok(_) => {
                report.applied.push(format!("validate constraint {table}.{name}"));
                Ok(())
            }
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23514" | "23503")) => {
                tracing::warn!(table, constraint = name, "constraint left NOT VALID: existing rows violate it");
                report.left_not_valid.push(format!("{table}.{name}"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Loads the schema file into a scratch schema in a transaction that is rolled back, and reads it.
    async fn desired_catalog(&mut self, statements: &[Statement]) -> Result<Catalog> {
        let mut tx = self.conn.begin().await?;
        crate::query(AssertSqlSafe(format!("CREATE SCHEMA {SCRATCH_SCHEMA}"))).execute(&mut *tx).await?;
        crate::query(AssertSqlSafe(format!("SET LOCAL search_path = {SCRATCH_SCHEMA}"))).execute(&mut *tx).await?;
        for statement in statements {
            crate::query(AssertSqlSafe(statement.sql.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::Migration(format!("schema.sql does not load: {e}")))?;
        }
        let desired = catalog::read(&mut tx, SCRATCH_SCHEMA).await?;
        tx.rollback().await?;
        Ok(desired)
    }

    async fn count_violations(&mut self, plan: &Plan, desired: &Catalog, live: &Catalog) -> Result<Vec<Violation>> {
        let mut violations = Vec::new();
        // A column that does not exist yet will be added empty: nothing in it can violate anything.
        let all_exist = |table: &str, columns: &[String]| {
            live.tables.get(table).is_some_and(|t| columns.iter().all(|c| t.column(c).is_some()))
        };
        for action in &plan.actions {
            let (table, name, sql) = match action {
                Action::AddConstraint { table, name, .. } | Action::ValidateConstraint { table, name } => {
                    let Some(constraint) =
                        desired.tables.get(table).and_then(|t| t.constraints.iter().find(|c| &c.name == name))
                    else {
                        continue;
                    };
                    if !all_exist(table, &constraint.columns) {
                        continue;
                    }
                    match violation_query(table, constraint) {
                        Some(sql) => (table, name, sql),
                        None => continue,
                    }
                }
                Action::CreateIndex { table, name, concurrently: true, .. } => {
                    let Some(index) =
                        desired.tables.get(table).and_then(|t| t.indexes.iter().find(|i| &i.name == name && i.unique))
                    else {
                        continue;
                    };
                    if !all_exist(table, &index.columns()) {
                        continue;
                    }
                    let columns = index.columns().join(", ");
                    let not_null = index.columns().iter().map(|c| format!("{c} IS NOT NULL")).collect::<Vec<_>>();
                    let sql = format!(
                        "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {} GROUP BY {columns} HAVING count(*) > 1) d",
                        not_null.join(" AND ")
                    );
                    (table, name, sql)
                }
                _ => continue,
            };
            let rows: i64 = crate::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.conn).await?;
            if rows > 0 {
                violations.push(Violation { table: table.clone(), constraint: name.clone(), rows });
            }
        }
        Ok(violations)
    }
}

/// What [`Migrator::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Every step carried out.
    pub applied: Vec<String>,
    /// Constraints added but left `NOT VALID` because rows violate them, and what a step kept because what it
    /// waits for is not there yet (an old key or index whose replacement is not built).
    pub left_not_valid: Vec<String>,
}

/// Counts the rows of `table` that violate a check or single-column foreign key.
fn violation_query(table: &str, constraint: &Constraint) -> Option<String> {
    match constraint.kind {
        'c' => {
            let expression = constraint.definition.strip_prefix("CHECK ")?;
            Some(format!("SELECT count(*) FROM {table} WHERE NOT {expression}"))
        }
        'f' => {
            // FOREIGN KEY (col) REFERENCES other(id) ...
            let column = constraint.columns.first()?;
            let references = constraint.references.as_deref()?;
            let after = constraint.definition.split("REFERENCES").nth(1)?;
            let target = after.split('(').nth(1)?.split(')').next()?.trim();
            Some(format!(
                "SELECT count(*) FROM {table} t WHERE t.{column} IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM {references} r WHERE r.{target} = t.{column})"
            ))
        }
        _ => None,
    }
}

/// The pure comparison of two catalogs; everything that needs the database is done by the caller.
fn diff(statements: &[Statement], desired: &Catalog, live: &Catalog) -> Plan {
    let mut plan = Plan::default();
    let mut created = Vec::new();
    for statement in statements {
        match &statement.kind {
            StatementKind::Table(name) if !live.tables.contains_key(name) => {
                created.push(name.clone());
                plan.actions.push(Action::CreateTable { table: name.clone(), sql: statement.sql.clone() });
            }
            StatementKind::Table(name) => {
                if let (Some(want), Some(have)) = (desired.tables.get(name), live.tables.get(name)) {
                    diff_table(name, want, have, &mut plan);
                }
            }
            StatementKind::Index { name, table } if created.contains(table) => {
                plan.actions.push(Action::CreateIndex {
                    table: table.clone(),
                    name: name.clone(),
                    sql: statement.sql.clone(),
                    concurrently: false,
                    drop_invalid: false,
                });
            }
            StatementKind::Index { name, table } => {
                let (Some(want), Some(have)) = (desired.tables.get(table), live.tables.get(table)) else {
                    continue;
                };
                let Some(index) = want.indexes.iter().find(|i| &i.name == name) else { continue };
                let equivalent = have
                    .indexes
                    .iter()
                    .any(|i| i.valid && i.unique == index.unique && i.definition == index.definition);
                if !equivalent {
                    let drop_invalid = have.indexes.iter().any(|i| &i.name == name && !i.valid);
                    plan.actions.push(Action::CreateIndex {
                        table: table.clone(),
                        name: name.clone(),
                        sql: statement.sql.clone(),
                        concurrently: true,
                        drop_invalid,
                    });
                }
            }
        }
    }
    // Constraint steps and index builds run after every column exists.
    plan.actions.sort_by_key(|a| match a {
        Action::CreateTable { .. } => 0,
        Action::CreateIndex { concurrently: false, .. } => 1,
        Action::AddColumn { .. } => 2,
        Action::AddConstraint { .. } | Action::ValidateConstraint { .. } => 3,
        Action::CreateIndex { .. } => 4,
        Action::Fixup(_) => 5,
        Action::Routines => 6,
        Action::Events(_) => 7,
    });
    plan
}

/// Whether two deparsed checks say the same thing. The text of a check depends on its column's type (`varchar`
/// columns gain `::text` casts that `text` columns do not), and a legacy column may be either: string casts and
/// grouping are ignored.
fn same_check(a: &str, b: &str) -> bool {
    fn normal(definition: &str) -> String {
        let mut text = definition.to_owned();
        for cast in ["::character varying[]", "::character varying", "::text[]", "::text"] {
            text = text.replace(cast, "");
        }
        text.chars().filter(|c| !c.is_whitespace() && *c != '(' && *c != ')').collect()
    }
    normal(a) == normal(b)
}

fn diff_table(name: &str, want: &Table, have: &Table, plan: &mut Plan) {
    let strict = STRICT_TABLES.contains(&name);
    for column in &want.columns {
        match have.column(&column.name) {
            None if strict => plan.blockers.push(format!(
                "{name} exists with another shape: column {} is missing (hattrick needs {} {})",
                column.name, column.name, column.data_type
            )),
            None => {
                let mut sql =
                    format!("ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}", column.name, column.data_type);
                if let Some(default) = &column.default {
                    sql.push_str(&format!(" DEFAULT {default}"));
                    if column.not_null {
                        sql.push_str(" NOT NULL");
                    }
                }
                plan.actions.push(Action::AddColumn { table: name.to_owned(), column: column.name.clone(), sql });
            }
            Some(existing) if existing.data_type != column.data_type => {
                let message = format!(
                    "{name}.{} is {} (hattrick's schema says {})",
                    column.name, existing.data_type, column.data_type
                );
                if strict {
                    plan.blockers.push(message);
                } else {
                    plan.notes.push(message);
                }
            }
            Some(_) => {}
        }
    }

    for constraint in want.constraints.iter().filter(|c| matches!(c.kind, 'c' | 'f')) {
        let by_name = have.constraints.iter().find(|c| c.name == constraint.name);
        let equivalent = have.constraints.iter().find(|c| match constraint.kind {
            'c' => c.kind == 'c' && same_check(&c.definition, &constraint.definition),
            // A foreign key on the same columns to the same table is the same relation, whatever its actions.
            _ => c.kind == 'f' && c.columns == constraint.columns && c.references == constraint.references,
        });
        match (by_name, equivalent) {
            (_, Some(existing)) => {
                if !existing.validated {
                    plan.actions
                        .push(Action::ValidateConstraint { table: name.to_owned(), name: existing.name.clone() });
                }
            }
            (by_name, None) => {
                // A check on exactly the same columns is an older version of ours (e.g. the first version's
                // status list without `skipped`): replace it.
                let replaces: Vec<String> = have
                    .constraints
                    .iter()
                    .filter(|c| {
                        constraint.kind == 'c'
                            && c.kind == 'c'
                            && (c.columns == constraint.columns || by_name.is_some_and(|b| b.name == c.name))
                    })
                    .map(|c| c.name.clone())
                    .collect();
                plan.actions.push(Action::AddConstraint {
                    table: name.to_owned(),
                    name: constraint.name.clone(),
                    definition: constraint.definition.clone(),
                    replaces,
                });
            }
        }
    }

    for index in want.indexes.iter().filter(|i| i.constraint.is_some()) {
        let equivalent =
            have.indexes.iter().any(|i| i.valid && i.unique == index.unique && i.definition == index.definition);
        if equivalent {
            continue;
        }
        if index.primary {
            plan.notes.push(format!("{name} has no primary key on {}", index.definition));
            continue;
        }
        let columns = index.columns().join(", ");
        plan.actions.push(Action::CreateIndex {
            table: name.to_owned(),
            name: index.name.clone(),
            sql: format!("CREATE UNIQUE INDEX {} ON {name} ({columns})", index.name),
            concurrently: true,
            drop_invalid: have.indexes.iter().any(|i| i.name == index.name && !i.valid),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_parses_into_tables_and_indexes() {
        let statements = statements().expect("schema.sql parses");
        let tables = statements.iter().filter(|s| matches!(s.kind, StatementKind::Table(_))).count();
        assert!(tables >= 22, "expected every table of docs/schema.md, found {tables}");
        for statement in &statements {
            if let StatementKind::Index { table, .. } = &statement.kind {
                let position = statements.iter().position(|s| s.kind == StatementKind::Table(table.clone()));
                assert!(position.is_some(), "index on unknown table {table}");
            }
        }
    }

    #[test]
    fn checks_on_text_and_varchar_columns_compare_equal() {
        let varchar =
            "CHECK (((status)::text = ANY ((ARRAY['a'::character varying, 'b'::character varying])::text[])))";
        let text = "CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))";
        assert!(same_check(varchar, text));
        assert!(!same_check(varchar, "CHECK ((status = ANY (ARRAY['a'::text, 'c'::text])))"));
    }

    #[test]
    fn constraint_sources_are_taken_verbatim() {
        let sources = constraint_sources(&statements().unwrap());
        let find = |table: &str, name: &str| {
            sources.iter().find(|((t, n), _)| t == table && n == name).map(|(_, d)| d.clone())
        };
        assert_eq!(
            find("customer_push_tokens", "customer_push_tokens_platform_check").as_deref(),
            Some("CHECK (platform IN ('ios', 'android', 'web'))")
        );
        assert_eq!(
            find("customer_xp", "customer_xp_user_fkey").as_deref(),
            Some("FOREIGN KEY (customer_user_id) REFERENCES customer_users (id) ON DELETE CASCADE")
        );
    }

    #[test]
    fn index_columns_are_read_from_the_definition() {
        let index = catalog::Index {
            name: "i".into(),
            unique: true,
            primary: false,
            valid: true,
            definition: "btree (job_name, started_at DESC) WHERE (x IS NOT NULL)".into(),
            constraint: None,
        };
        assert_eq!(index.columns(), vec!["job_name", "started_at"]);
    }
}
