//! The seed generator behind `hattrick seed` and `hattrick demo`: a realistic synthetic population, deterministic for a seed.
//!
//! The population is generated user by user ([`population`]) and streamed into PostgreSQL with one `COPY` per
//! table, each on its own connection, fed through bounded channels ([`copy`]): memory stays flat however many
//! users are asked for. Foreign keys and secondary indexes of the loaded tables are dropped for the load and
//! rebuilt afterwards ([`indexes`]), the migrator checks that the schema is whole again, and `ANALYZE` gives the
//! planner fresh statistics.
//!
//! Determinism: every row is derived from `(seed, user index)`, including every uuid, so the same `--users` and
//! `--seed` give the same rows. Timestamps are placed relative to one "now" read at the start; counts and amounts
//! never depend on it.

mod copy;
mod defaults;
mod indexes;
mod population;
mod rng;
mod text;

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use uuid::Uuid;

use copy::{CopyMsg, Table};
pub use defaults::{BadgeDefinition, default_badges, install_default_badges};
use population::{Rows, Scratch, World};

/// Whether unique constraints and indexes are dropped for the load too, not only foreign keys and plain
/// indexes. Measured at 1M users on 2 cores: keeping them made the load take 201 s instead of 111 s and write
/// 17.7 GB of WAL instead of 7.4 GB (random inserts into B-trees far larger than `shared_buffers`), while
/// rebuilding them afterwards costs about 30 s: 235 s against 177 s in all.
const DROP_UNIQUE: bool = true;

/// What to seed, for [`seed_database`].
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// How many users to create (at least 1).
    pub users: u64,
    /// Seed of the generator.
    pub seed: u64,
    /// Seed even if the database already holds users.
    pub force: bool,
    /// Draw progress bars on stderr (only ever when stderr is a terminal).
    pub progress: bool,
    /// The business zone: users without a zone of their own live in it.
    pub business_zone: Tz,
    /// The zone the app writes its dates in, when it uses one zone for everyone (`time.app_day_zone`).
    pub app_day_zone: Option<Tz>,
    /// Credits of daily-reward days 1 to 7.
    pub daily_reward_credits: [i64; 7],
    /// The instant the population is placed around; the current time when not set.
    pub now: Option<DateTime<Utc>>,
}

impl SeedOptions {
    /// `users` users from `seed`, with the default business zone and rewards, no progress bars.
    pub fn new(users: u64, seed: u64) -> Self {
        Self {
            users,
            seed,
            force: false,
            progress: false,
            business_zone: chrono_tz::Europe::Istanbul,
            app_day_zone: None,
            daily_reward_credits: [10, 15, 20, 25, 30, 40, 100],
            now: None,
        }
    }
}

/// Rows inserted into one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    /// The table.
    pub table: &'static str,
    /// Rows inserted.
    pub rows: u64,
}

/// What [`seed_database`] did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// Rows inserted per table.
    pub tables: Vec<TableRows>,
    /// Wall time of the whole seed.
    pub elapsed: Duration,
    /// Generating and copying the rows.
    pub load: Duration,
    /// Rebuilding indexes and constraints, and the migrator's check.
    pub restore: Duration,
    /// `ANALYZE`.
    pub analyze: Duration,
}

impl SeedReport {
    /// Rows inserted in all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Rows inserted into `table`.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables.iter().find(|t| t.table == table).map(|t| t.rows)
    }

    /// Rows per second over the whole run.
    pub fn rows_per_second(&self) -> f64 {
        self.total_rows() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(5).max(5);
        writeln!(f, "{:<width$}  {:>12}", "table", "rows")?;
        for table in &self.tables {
            writeln!(f, "{:<width$}  {:>12}", table.table, thousands(table.rows))?;
        }
        writeln!(f, "{:<width$}  {:>12}", "total", thousands(self.total_rows()))?;
        writeln!(
            f,
            "elapsed {:.1} s (load {:.1} s, indexes and constraints {:.1} s, analyze {:.1} s), {} rows/s",
            self.elapsed.as_secs_f64(),
            self.load.as_secs_f64(),
            self.restore.as_secs_f64(),
            self.analyze.as_secs_f64(),
            thousands(self.rows_per_second() as u64)
        )
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Fills the migrated database at `url` with a synthetic population (see the module documentation).
///
/// Fails without writing anything when `users` is 0, when the database is not migrated, or when it already
/// holds users and `force` is not set. The tables' COPYs commit together once all of them succeeded, so a failed
/// load leaves no partial population (only the default badges, plans and campaigns, which are inserted first and
/// idempotently); either way, what was dropped for the load is restored before returning.
pub async fn seed_database(url: &str, options: &SeedOptions) -> anyhow::Result<SeedReport> {
    anyhow::ensure!(options.users > 0, "--users must be at least 1");
    let started = Instant::now();
    let now = options.now.unwrap_or_else(|| engine::Clock::system().now());
    let world = Arc::new(World::new(
        options.seed,
        options.users,
        now,
        options.business_zone,
        options.app_day_zone,
        options.daily_reward_credits,
    ));

    let mut conn = db::connect_one(url, "hattrick seed")
        .await
        .with_context(|| format!("connecting to {}", db::redact_url(url)))?;
    // One transaction, so it works through a pooler in transaction mode too (every statement of the seed runs in
    // a transaction, or alone as one simple-protocol message).
    let mut tx = sqlx::Connection::begin(&mut conn).await.context("starting the seed's preparations")?;
    check_target(&mut tx, &world, options).await?;

    let mut fixed = Vec::new();
    fixed.push(("badges", install_default_badges(&mut tx, now).await?));
    fixed.push(("subscription_plans", defaults::install_plans(&mut tx).await?));
    fixed.push((
        "scheduled_notifications",
        defaults::install_campaigns(&mut tx, options.seed, options.users, now).await?,
    ));

    let bars = Bars::new(options.progress, options.users);
    let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let dropped = indexes::drop_for_load(&mut tx, &names, DROP_UNIQUE).await?;
    tx.commit().await.context("committing the seed's preparations")?;
    sqlx::Connection::close(conn).await.context("closing the preparations' connection")?;

    let load_started = Instant::now();
    let loaded = load(url, world, bars.load.clone()).await;
    let load = load_started.elapsed();
    bars.load.finish_and_clear();

    // Restore even after a failed load: the tables must not be left without their keys.
    let restore_started = Instant::now();
    let restore_bar = bars.step(indexes::restore_steps(&dropped), "rebuilding indexes and constraints");
    let order: Vec<&str> = match &loaded {
        Ok(counts) => {
            let mut by_size: Vec<(u64, &str)> = Table::ALL.iter().map(|t| (counts[*t as usize], t.name())).collect();
            by_size.sort_by(|a, b| b.cmp(a));
            by_size.into_iter().map(|(_, name)| name).collect()
        }
        Err(_) => names.clone(),
    };
    let tick = restore_bar.clone();
    let restored = indexes::restore(url, &dropped, &order, move || tick.inc(1)).await;
    restore_bar.finish_and_clear();
    let counts = match (loaded, restored) {
        (Ok(counts), Ok(())) => counts,
        (Err(load_error), Ok(())) => {
            return Err(load_error.context(
                "seeding failed and the load was rolled back (the default badges, plans and campaigns stay)",
            ));
        }
        (loaded, Err(restore_error)) => {
            let mut error = restore_error.context(
                "restoring the indexes and constraints dropped for the load failed; run `hattrick migrate` to \
                 re-create them",
            );
            if let Err(load_error) = loaded {
                error = error.context(format!("after the load failed: {load_error:#}"));
            }
            return Err(error);
        }
    };
    verify_schema(url).await?;
    let restore = restore_started.elapsed();

    let analyze_started = Instant::now();
    let analyze_bar = bars.step(1, "ANALYZE");
    analyze(url, &names).await?;
    analyze_bar.finish_and_clear();
    let analyze = analyze_started.elapsed();

    let mut tables: Vec<TableRows> =
        Table::ALL.iter().map(|t| TableRows { table: t.name(), rows: counts[*t as usize] }).collect();
    tables.extend(fixed.into_iter().map(|(table, rows)| TableRows { table, rows }));
    Ok(SeedReport { tables, elapsed: started.elapsed(), load, restore, analyze })
}

/// Refuses a database that is not migrated, or that holds users (unless forced), or that holds this very
/// population already.
async fn check_target(conn: &mut sqlx::PgConnection, world: &World, options: &SeedOptions) -> anyhow::Result<()> {
    let migrated: bool = sqlx::query_scalar!(r#"SELECT to_regclass('customer_users') IS NOT NULL AS "migrated!""#)
        .fetch_one(db::unnamed(&mut *conn))
        .await
        .context("looking for customer_users")?;
    anyhow::ensure!(migrated, "the database has no hattrick schema: run `hattrick migrate` first");
    let has_users: bool = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM customer_users) AS "users!""#)
        .fetch_one(db::unnamed(&mut *conn))
        .await
        .context("counting users")?;
    if has_users && !options.force {
        anyhow::bail!(
            "the database already holds users; refusing to mix a synthetic population into them. Seed an empty \
             database, or pass --force to add this population to the existing users"
        );
    }
    let same_seed: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM customer_users WHERE id = $1) AS "seeded!""#,
        Uuid::from_bytes(world.user_id(0)),
    )
    .fetch_one(db::unnamed(&mut *conn))
    .await
    .context("looking for an earlier population of this seed")?;
    anyhow::ensure!(
        !same_seed,
        "the population of seed {} is already loaded (its ids would collide); use another --seed",
        options.seed
    );
    Ok(())
}

/// Generates the population on a blocking thread and copies it with one task per table; returns the rows per
/// table (checked against what PostgreSQL reports).
async fn load(url: &str, world: Arc<World>, bar: ProgressBar) -> anyhow::Result<[u64; Table::ALL.len()]> {
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for table in Table::ALL {
        let (tx, rx) = mpsc::channel(copy::CHANNEL_DEPTH);
        senders.push(tx);
        tasks.push(tokio::spawn(copy::copy_task(url.to_owned(), table, rx)));
    }
    let generated = tokio::task::spawn_blocking(move || {
        let mut send = |table: Table, message: CopyMsg| {
            senders[table as usize]
                .blocking_send(message)
                .map_err(|_| anyhow::anyhow!("the COPY into {} stopped", table.name()))
        };
        generate(&world, &mut send, &bar)
    })
    .await
    .context("the generator panicked")?;

    let mut copied = [0u64; Table::ALL.len()];
    let mut open = Vec::new();
    let mut copy_error = None;
    for (table, task) in Table::ALL.iter().zip(tasks) {
        match task.await {
            Ok(Ok((conn, rows))) => {
                copied[*table as usize] = rows;
                open.push((*table, conn));
            }
            Ok(Err(e)) if e.is::<copy::GeneratorStopped>() => {}
            Ok(Err(e)) => {
                copy_error.get_or_insert(e);
            }
            Err(e) => {
                copy_error.get_or_insert(anyhow::anyhow!("the COPY task of {} panicked: {e}", table.name()));
            }
        }
    }
    // A failed COPY also stops the generator; its own error then only says so. Returning drops the open
    // connections, which rolls their transactions back.
    if let Some(error) = copy_error {
        return Err(error);
    }
    let generated = generated?;
    for table in Table::ALL {
        let (made, loaded) = (generated[table as usize], copied[table as usize]);
        anyhow::ensure!(made == loaded, "{}: generated {made} rows but PostgreSQL loaded {loaded}", table.name());
    }
    for (table, mut conn) in open {
        sqlx::raw_sql("COMMIT").execute(&mut conn).await.with_context(|| format!("committing {}", table.name()))?;
    }
    Ok(generated)
}

/// Generates every user's rows and hands full buffers to `send`; returns the rows per table.
fn generate(
    world: &World,
    send: &mut dyn FnMut(Table, CopyMsg) -> anyhow::Result<()>,
    bar: &ProgressBar,
) -> anyhow::Result<[u64; Table::ALL.len()]> {
    let mut rows = Rows::new();
    let mut scratch = Scratch::default();
    for i in 0..world.users() {
        population::generate_user(world, i, &mut rows, &mut scratch);
        for table in Table::ALL {
            let buffer = rows.buffer(table);
            if buffer.len() >= copy::FLUSH_BYTES {
                send(table, CopyMsg::Data(buffer.take()))?;
            }
        }
        if i % 1024 == 1023 {
            bar.set_position(i + 1);
        }
    }
    for table in Table::ALL {
        let buffer = rows.buffer(table);
        if buffer.len() > 0 {
            send(table, CopyMsg::Data(buffer.take()))?;
        }
        send(table, CopyMsg::Finish)?;
    }
    bar.set_position(world.users());
    Ok(rows.counts())
}

/// Runs the migrator: after the restore it should find nothing to do; if it does (say, the app changed an index
/// definition), it applies the schema file's version.
async fn verify_schema(url: &str) -> anyhow::Result<()> {
    let mut migrator = db::migrate::Migrator::connect(url).await.context("connecting the migrator")?;
    let plan = migrator.plan().await.context("checking the schema after the load")?;
    if !plan.is_empty() {
        tracing::info!(changes = plan.actions.len(), "the schema needed changes after the load:\n{plan}");
        migrator.apply(&plan).await.context("restoring the schema after the load")?;
    }
    migrator.close().await.context("releasing the migration lock")?;
    Ok(())
}

async fn analyze(url: &str, tables: &[&str]) -> anyhow::Result<()> {
    let mut conn = db::connect_one(url, "hattrick seed").await.context("connecting to ANALYZE")?;
    let sql = format!("ANALYZE {}, badges, subscription_plans, scheduled_notifications", tables.join(", "));
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.context("ANALYZE")?;
    sqlx::Connection::close(conn).await.context("closing the ANALYZE connection")?;
    Ok(())
}

/// The progress bars: drawn on stderr when asked for and stderr is a terminal, hidden otherwise.
struct Bars {
    multi: MultiProgress,
    load: ProgressBar,
}

impl Bars {
    fn new(wanted: bool, users: u64) -> Self {
        let target = if wanted && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let load = multi.add(ProgressBar::new(users));
        load.set_style(
            ProgressStyle::with_template(
                "{elapsed:>4} generating and copying [{bar:40}] {human_pos}/{human_len} users, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { multi, load }
    }

    fn step(&self, len: u64, message: &'static str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} {msg} [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_at(users: u64, seed: u64, now: &str) -> [u64; Table::ALL.len()] {
        let now = DateTime::parse_from_rfc3339(now).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let world = World::new(seed, users, now, chrono_tz::Europe::Istanbul, None, [10, 15, 20, 25, 30, 40, 100]);
        generate(&world, &mut |_, _| Ok(()), &ProgressBar::hidden()).unwrap_or_default()
    }

    fn counts(users: u64, seed: u64) -> [u64; Table::ALL.len()] {
        counts_at(users, seed, "2026-03-29T01:30:00Z")
    }

    #[test]
    fn counts_do_not_depend_on_now() {
        // Another season, another time of day (so local dates fall differently against "now").
        assert_eq!(counts(3_000, 9), counts_at(3_000, 9, "2026-07-10T17:45:13Z"));
    }

    #[test]
    fn counts_are_deterministic_and_depend_on_the_seed() {
        assert_eq!(counts(3_000, 5), counts(3_000, 5));
        assert_ne!(counts(3_000, 5), counts(3_000, 6));
    }

    #[test]
    fn one_user_makes_one_partner_and_no_likes() {
        let counts = counts(1, 1);
        assert_eq!(counts[Table::Users as usize], 1);
        assert_eq!(counts[Table::Partners as usize], 1);
        assert_eq!(counts[Table::Likes as usize], 0);
        assert_eq!(counts[Table::Referrals as usize], 0);
    }

    #[test]
    fn rows_per_user_stay_within_the_budget() {
        // About 25M rows at 1M users (the issue's budget), table by table.
        let users = 20_000;
        let counts = counts(users, 3);
        let budget = [
            (Table::Users, 1.0, 1.0),
            (Table::Identities, 1.6, 2.0),
            (Table::PushTokens, 1.6, 2.0),
            (Table::Xp, 1.0, 1.0),
            (Table::XpLedger, 2.5, 3.5),
            (Table::Credits, 1.0, 1.0),
            (Table::CreditLedger, 2.5, 3.8),
            (Table::DailyRewards, 1.5, 2.5),
            (Table::AdViews, 0.8, 1.2),
            (Table::Comments, 3.0, 5.0),
            (Table::Likes, 3.0, 5.0),
            (Table::Predictions, 2.5, 3.5),
            (Table::Referrals, 0.25, 0.35),
            (Table::Subscriptions, 0.1, 0.2),
            (Table::Partners, 0.0005, 0.0005),
        ];
        for (table, low, high) in budget {
            let per_user = counts[table as usize] as f64 / users as f64;
            assert!((low..=high).contains(&per_user), "{}: {per_user:.3} rows per user", table.name());
        }
        let total = counts.iter().sum::<u64>() as f64 / users as f64;
        assert!((24.0..=29.0).contains(&total), "{total:.2} rows per user in all");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(25_123_456), "25,123,456");
    }
}
