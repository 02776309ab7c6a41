//! One throwaway database per test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db::Pool;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

use db::cluster::TempCluster;

/// Test databases are named `ht_<unix seconds>_<pid>_<n>`; ones older than this are left-overs of killed runs.
const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);
const TEMPLATE_LOCK_KEY: i64 = 0x6874_7465_6d70; // "httemp"

static SERVER: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The maintenance URL of the server tests run against: `DATABASE_URL` (or the default) when it answers, else a
/// throwaway cluster started from the machine's binaries.
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| db::DEFAULT_DATABASE_URL.to_owned());
            let reachable = tokio::time::timeout(Duration::from_secs(3), db::connect_one(&url, "hattrick-testkit"))
                .await
                .is_ok_and(|c| c.is_ok());
            if reachable {
                return url;
            }
            eprintln!("testkit: no PostgreSQL at {}; starting a throwaway cluster", db::redact_url(&url));
            let root = std::env::temp_dir().join("hattrick-testkit-pg");
            let cluster = tokio::task::spawn_blocking(move || TempCluster::start(&root, 5432))
                .await
                .expect("cluster start task")
                .unwrap_or_else(|e| panic!("no PostgreSQL reachable and none could be started: {e}"));
            cluster.url("postgres")
        })
        .await
        .clone()
}

/// The URL of a pooler in front of the test server (`HATTRICK_TEST_POOLER_URL`, for example PgBouncer in
/// transaction mode, `.ci/pgbouncer.sh`), when the suite runs through one.
fn pooler_url() -> Option<String> {
    std::env::var("HATTRICK_TEST_POOLER_URL").ok().filter(|url| !url.is_empty())
}

/// A database that exists for one test and is dropped when the value is.
///
/// With `HATTRICK_TEST_POOLER_URL` set, [`TestDb::url`] and [`TestDb::pool`] go through that pooler, the way a
/// deployment reaches the app's database; [`TestDb::direct_url`] always reaches the server itself (for sessions a
/// pooler would not keep).
pub struct TestDb {
    name: String,
    url: String,
    direct_url: String,
    admin_url: String,
    pool: Pool,
}

impl TestDb {
    /// A fresh database with hattrick's schema applied.
    pub async fn new() -> Self {
        let admin_url = server_url().await;
        let template = ensure_template(&admin_url).await;
        Self::create(admin_url, Some(&template)).await
    }

    /// A fresh, empty database (no schema): for tests of the migrator itself.
    pub async fn empty() -> Self {
        Self::create(server_url().await, None).await
    }

    async fn create(admin_url: String, template: Option<&str>) -> Self {
        let epoch = engine::Clock::system().now().timestamp();
        let name = format!("ht_{epoch}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut admin = db::connect_one(&admin_url, "hattrick-testkit").await.expect("connect to the test server");
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        // Two CREATE DATABASE from one template at the same instant can collide; a retry settles it.
        for attempt in 1..=20u64 {
            match db::query(AssertSqlSafe(sql.clone())).execute(&mut admin).await {
                Ok(_) => break,
                Err(e) if attempt == 20 => panic!("creating test database {name}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * attempt)).await,
            }
        }
        admin.close().await.ok();
        let direct_url = db::with_database(&admin_url, &name);
        let url = pooler_url().map_or_else(|| direct_url.clone(), |pooler| db::with_database(&pooler, &name));
        // Named like the app, not like hattrick: the change-capture triggers record what this pool writes.
        let settings =
            db::PoolSettings { max_connections: 8, application_name: "app (testkit)".to_owned(), ..Default::default() };
        let pool = db::connect(&url, &settings).await.expect("connect to the test database");
        Self { name, url, direct_url, admin_url, pool }
    }

    /// The test database's URL (through the pooler when the suite runs through one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test database's URL on the server itself, never through a pooler.
    pub fn direct_url(&self) -> &str {
        &self.direct_url
    }

    /// Whether this suite runs through a pooler (`HATTRICK_TEST_POOLER_URL`).
    pub fn pooled(&self) -> bool {
        self.url != self.direct_url
    }

    /// A pool on the test database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The test database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A context for running `job` directly (no engine, no run log row) at the business time `now`, with two
    /// minutes before its deadline.
    pub fn context(&self, job: &str, now: chrono::DateTime<chrono::Utc>, args: engine::RunArgs) -> engine::JobContext {
        engine::JobContext {
            run_id: uuid::Uuid::new_v4(),
            job: job.to_owned(),
            tick: None,
            trigger: engine::Trigger::Manual,
            now,
            clock: engine::Clock::fixed(now),
            pool: self.pool.clone(),
            args,
            cancel: tokio_util::sync::CancellationToken::new(),
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(120),
        }
    }

    /// Inserts a user with the schema's defaults (active, pushes allowed, locale `tr`) and returns its id.
    pub async fn user(&self) -> uuid::Uuid {
        crate::NewUser::new().insert(&self.pool).await
    }

    /// Inserts `n` users with the schema's defaults in one statement (fixtures that need many rows).
    pub async fn users(&self, n: i64) {
        db::query(
            "INSERT INTO customer_users (email) SELECT gen_random_uuid() || '@example.com' FROM generate_series(1, $1)",
        )
        .bind(n)
        .execute(&self.pool)
        .await
        .expect("insert users");
    }

    /// Inserts `n` users, each with one inactive device token: `n` tokens for `dead-token-cleanup` to delete.
    pub async fn users_with_dead_tokens(&self, n: i64) {
        db::query(
            "WITH u AS (INSERT INTO customer_users (email)
                        SELECT gen_random_uuid() || '@example.com' FROM generate_series(1, $1) RETURNING id)
             INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id, is_active)
             SELECT id, id::text, 'android', 'phone', false FROM u",
        )
        .bind(n)
        .execute(&self.pool)
        .await
        .expect("insert users with dead tokens");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: drop the database from a thread with
        // a runtime of its own. FORCE ends the test's remaining sessions.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = db::connect_one(&admin_url, "hattrick-testkit").await.ok()?;
                db::query(AssertSqlSafe(sql)).execute(&mut admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("testkit: could not drop test database {}", self.name);
        }
    }
}

/// Creates (once per schema version, across processes) a migrated template database and returns its name.
async fn ensure_template(admin_url: &str) -> String {
    let checksum = db::migrate::schema_checksum();
    let template = format!("hattrick_tpl_{}", &checksum[..16]);
    let mut admin = db::connect_one(admin_url, "hattrick-testkit").await.expect("connect to the test server");
    db::query("SELECT pg_advisory_lock($1)").bind(TEMPLATE_LOCK_KEY).execute(&mut admin).await.expect("lock");
    let exists: bool = db::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .expect("look up the template");
    if !exists {
        drop_stale_databases(&mut admin).await;
        // Build under a temporary name and rename: a build killed half-way never leaves a broken template.
        let building = format!("{template}_building");
        for sql in [format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"), format!("CREATE DATABASE {building}")] {
            db::query(AssertSqlSafe(sql)).execute(&mut admin).await.expect("create the template database");
        }
        let mut migrator = db::migrate::Migrator::connect(&db::with_database(admin_url, &building))
            .await
            .expect("connect to the template database");
        let plan = migrator.plan().await.expect("plan the template's migration");
        migrator.apply(&plan).await.expect("migrate the template");
        migrator.close().await.expect("release the migration lock");
        db::query(AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {template}")))
            .execute(&mut admin)
            .await
            .expect("publish the template");
    }
    db::query("SELECT pg_advisory_unlock($1)").bind(TEMPLATE_LOCK_KEY).execute(&mut admin).await.ok();
    admin.close().await.ok();
    template
}

/// Drops test databases left behind by killed runs, and templates of older schema versions.
async fn drop_stale_databases(admin: &mut PgConnection) {
    let now = engine::Clock::system().now().timestamp();
    let names: Vec<String> = db::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'ht\\_%' OR datname LIKE 'hattrick\\_tpl\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let stale = match name.strip_prefix("ht_").and_then(|rest| rest.split('_').next()?.parse::<i64>().ok()) {
            Some(created) => now.saturating_sub(created) > i64::try_from(STALE_AFTER.as_secs()).unwrap_or(i64::MAX),
            None => name.starts_with("hattrick_tpl_"),
        };
        if stale {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            db::query(AssertSqlSafe(sql)).execute(&mut *admin).await.ok();
        }
    }
}
