//! Secondary indexes and foreign keys are dropped before the bulk load and rebuilt after it.
//!
//! Maintaining a B-tree row by row while millions of rows arrive in random key order costs several times what
//! one sorted build costs at the end, and a foreign key checks every row with a query of its own. Primary keys
//! stay (the migrator does not create them, and COPY needs no help with them).
//!
//! The definitions are read from the catalog before dropping, and restored exactly (unique constraints as
//! constraints), two statements at a time because the machine this runs on has two cores. The migrator then runs
//! as the safety net: it re-creates anything of `migrations/schema.sql` that is still missing, so a seed killed
//! half-way is repaired by `hattrick migrate`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, PgConnection};

/// What was dropped and how to restore it.
#[derive(Debug, Clone)]
pub(crate) struct Dropped {
    kind: Kind,
    /// The table, quoted as needed.
    table: String,
    /// The constraint or index, quoted as needed.
    name: String,
    /// `pg_get_constraintdef` of a constraint, `pg_get_indexdef` of an index.
    definition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ForeignKey,
    Unique,
    Index,
}

/// Drops the foreign keys and the secondary indexes of `tables` (unique ones too when `unique`), in one
/// transaction, and returns what it dropped.
pub(crate) async fn drop_for_load(
    conn: &mut PgConnection,
    tables: &[&str],
    unique: bool,
) -> anyhow::Result<Vec<Dropped>> {
    let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let constraints = sqlx::query!(
        r#"SELECT c.contype::text AS "kind!", quote_ident(t.relname) AS "table!", quote_ident(c.conname) AS "name!",
                  pg_get_constraintdef(c.oid) AS "definition!"
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname = ANY($1)
           AND (c.contype = 'f'
                OR (c.contype = 'u' AND $2
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)))
         ORDER BY t.relname, c.conname"#,
        &tables,
        unique,
    )
    .fetch_all(db::unnamed(&mut *conn))
    .await
    .context("reading the constraints of the tables to load")?;
    let indexes = sqlx::query!(
        r#"SELECT quote_ident(t.relname) AS "table!", quote_ident(i.relname) AS "name!",
                  pg_get_indexdef(x.indexrelid) AS "definition!"
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname = ANY($1) AND x.indisvalid AND NOT x.indisprimary
           AND ($2 OR NOT x.indisunique)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
         ORDER BY t.relname, i.relname"#,
        &tables,
        unique,
    )
    .fetch_all(db::unnamed(&mut *conn))
    .await
    .context("reading the indexes of the tables to load")?;

    let mut dropped: Vec<Dropped> = constraints
        .into_iter()
        .map(|c| Dropped {
            kind: if c.kind == "f" { Kind::ForeignKey } else { Kind::Unique },
            table: c.table,
            name: c.name,
            definition: c.definition,
        })
        .collect();
    dropped.extend(indexes.into_iter().map(|i| Dropped {
        kind: Kind::Index,
        table: i.table,
        name: i.name,
        definition: i.definition,
    }));
    // Foreign keys first: a unique constraint cannot go while a key still depends on it.
    dropped.sort_by_key(|d| d.kind != Kind::ForeignKey);

    let mut tx = sqlx::Connection::begin(&mut *conn).await.context("starting to drop indexes")?;
    // The database should be idle; do not queue behind (and in front of) someone else's long transaction.
    sqlx::query!("SET LOCAL lock_timeout = '10s'").execute(db::unnamed(&mut tx)).await?;
    for item in &dropped {
        let sql = match item.kind {
            Kind::ForeignKey | Kind::Unique => format!("ALTER TABLE {} DROP CONSTRAINT {}", item.table, item.name),
            Kind::Index => format!("DROP INDEX {}", item.name),
        };
        db::query(AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("{sql} (is another session using the database?)"))?;
    }
    tx.commit().await.context("committing the dropped indexes")?;
    Ok(dropped)
}

/// Re-creates what [`drop_for_load`] dropped: indexes and unique constraints (two builds at a time, largest
/// tables first as `order` gives them), then the foreign keys, added `NOT VALID` and validated two at a time.
/// `done` is called after each statement.
pub(crate) async fn restore(
    url: &str,
    dropped: &[Dropped],
    order: &[&str],
    done: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let rank = |table: &str| order.iter().position(|t| *t == table).unwrap_or(order.len());
    let mut builds: Vec<&Dropped> = dropped.iter().filter(|d| d.kind != Kind::ForeignKey).collect();
    builds.sort_by_key(|d| rank(&d.table));
    let statements = builds
        .iter()
        .map(|d| match d.kind {
            Kind::Index => d.definition.clone(),
            _ => format!("ALTER TABLE {} ADD CONSTRAINT {} {}", d.table, d.name, d.definition),
        })
        .collect();
    let done = Arc::new(done);
    run_two_at_a_time(url, statements, done.clone()).await?;

    let keys: Vec<&Dropped> = dropped.iter().filter(|d| d.kind == Kind::ForeignKey).collect();
    if keys.is_empty() {
        return Ok(());
    }
    let mut conn = db::connect_one(url, "hattrick seed").await.context("connecting to restore foreign keys")?;
    for key in &keys {
        let sql = format!("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID", key.table, key.name, key.definition);
        sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut conn).await.with_context(|| sql.clone())?;
    }
    let mut validations: Vec<&Dropped> = keys;
    validations.sort_by_key(|d| rank(&d.table));
    let statements =
        validations.iter().map(|d| format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", d.table, d.name)).collect();
    run_two_at_a_time(url, statements, done).await
}

/// Runs `statements` on two connections, each taking the next statement when it is free.
async fn run_two_at_a_time(
    url: &str,
    statements: VecDeque<String>,
    done: Arc<impl Fn() + Send + Sync + 'static>,
) -> anyhow::Result<()> {
    let queue = Arc::new(Mutex::new(statements));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let queue = queue.clone();
        let url = url.to_owned();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = db::connect_one(&url, "hattrick seed").await.context("connecting to rebuild indexes")?;
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("index queue poisoned"))?.pop_front();
                let Some(sql) = next else { return anyhow::Ok(()) };
                let started = std::time::Instant::now();
                // Sorting a few million keys in memory instead of in temporary files; one message, one transaction,
                // so no setting outlives it (a pooler hands the session on).
                let script = format!("BEGIN; SET LOCAL maintenance_work_mem = '256MB'; {sql}; COMMIT");
                sqlx::raw_sql(AssertSqlSafe(script)).execute(&mut conn).await.with_context(|| sql.clone())?;
                tracing::debug!(seconds = started.elapsed().as_secs_f64(), statement = sql, "restored");
                done();
            }
        }));
    }
    for worker in workers {
        worker.await.context("an index rebuild task panicked")??;
    }
    Ok(())
}

/// How many statements [`restore`] runs for `dropped`.
pub(crate) fn restore_steps(dropped: &[Dropped]) -> u64 {
    dropped.len() as u64
}
