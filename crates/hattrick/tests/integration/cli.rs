//! The command line as a user runs it: the built binary against a real database.

use std::process::{Command, Output};

use testkit::TestDb;

fn hattrick(args: &[&str], database_url: Option<&str>) -> Output {
    hattrick_with(args, database_url, &[])
}

/// Runs the binary with `env` set besides `DATABASE_URL`.
fn hattrick_with(args: &[&str], database_url: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hattrick"));
    command.args(args).env_remove("HATTRICK_CONFIG").envs(env.iter().copied());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("run hattrick")
}

/// `serve` without FCM credentials needs the log transport said out loud.
const LOG_TRANSPORT: (&str, &str) = ("HATTRICK_PUSH__TRANSPORT", "log");

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["seed", "--help"],
        vec!["config", "--help"],
        vec!["serve", "--help"],
        vec!["jobs", "--help"],
        vec!["run", "--help"],
        vec!["ledger", "check", "--help"],
        vec!["ledger", "open", "--help"],
        vec!["push", "test", "--help"],
        vec!["redrive", "pushes", "--help"],
        vec!["redrive", "runs", "--help"],
        vec!["messages", "import", "--help"],
        vec!["messages", "export", "--help"],
        vec!["fake-fcm", "--help"],
    ] {
        let output = hattrick(&args, None);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout(&output).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn an_unknown_argument_is_a_usage_error() {
    let output = hattrick(&["migrate", "--chekc"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--chekc"));
}

#[tokio::test]
async fn migrate_check_changes_nothing_and_migrate_is_idempotent() {
    let db = TestDb::empty().await;
    let check = hattrick(&["migrate", "--check"], Some(db.url()));
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout(&check).contains("create table customer_users"), "{}", stdout(&check));
    let tables: i64 = db::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(tables, 0, "--check must not create anything");

    let first = hattrick(&["migrate"], Some(db.url()));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout(&first).contains("applied"), "{}", stdout(&first));
    let second = hattrick(&["migrate"], Some(db.url()));
    assert!(second.status.success());
    assert!(stdout(&second).starts_with("schema is up to date"), "{}", stdout(&second));
    assert!(stdout(&second).contains("applied 0 step(s)"), "{}", stdout(&second));
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let output = hattrick(&["migrate"], Some("postgres://nobody:secret@127.0.0.1:1/none"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting to postgres://nobody:***@127.0.0.1:1/none"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

async fn migrated() -> TestDb {
    TestDb::new().await
}

#[tokio::test]
async fn jobs_lists_each_job_with_its_next_fire_times_in_local_time_and_utc() {
    let db = migrated().await;
    let output = hattrick(&["jobs"], Some(db.url()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    assert!(text.contains("streak-reset  [active]  1 0 * * *  (Europe/Istanbul, misfire latest)"), "{text}");
    assert!(text.contains("referral-tier2  [active]  * * * * *  (Europe/Istanbul, misfire run_once)"), "{text}");
    assert_eq!(text.matches("    next  ").count() % 3, 0, "{text}");
    assert!(text.contains("+03 ") && text.contains(" UTC"), "{text}");

    let json = hattrick(&["jobs", "--json"], Some(db.url()));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let job = parsed.as_array().unwrap().iter().find(|j| j["name"] == "streak-reset").expect("streak-reset listed");
    assert_eq!(job["next_runs"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn run_reports_and_uses_the_documented_exit_codes() {
    let db = migrated().await;
    let unknown = hattrick(&["run", "streak-rest"], Some(db.url()));
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains(
            "unknown job \"streak-rest\"; valid jobs: badge-auto-unlock, daily-reward-reminders, dead-token-cleanup, \
             old-logs-cleanup, partner-analytics, referral-tier2, referral-tier3, scheduled-notifications, \
             streak-break-warnings, streak-reset, subscription-expiry-alerts"
        ),
        "{stderr}"
    );

    let far = hattrick(&["run", "streak-reset", "--at", "2020-01-01T00:00:00Z"], Some(db.url()));
    assert_eq!(far.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&far.stderr).contains("more than a day from now; add --force"));

    let dry = hattrick(&["run", "streak-reset", "--dry-run", "--json"], Some(db.url()));
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["dry_run"], true);
    let rows: i64 =
        db::query_scalar("SELECT (SELECT count(*) FROM job_execution_logs) + (SELECT count(*) FROM hattrick_jobs)")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(rows, 0, "a dry run writes nothing, not even the job's definition");

    let run = hattrick(&["run", "streak-reset", "--at", "2020-01-01T00:00:00Z", "--force"], Some(db.url()));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout(&run).starts_with("streak-reset success"), "{}", stdout(&run));
    let (trigger, started): (String, chrono::DateTime<chrono::Utc>) =
        db::query_as("SELECT trigger, started_at FROM job_execution_logs").fetch_one(db.pool()).await.unwrap();
    assert_eq!(trigger, "manual");
    assert_eq!(started.to_rfc3339(), "2020-01-01T00:00:00+00:00", "--at is the job's now");

    // Another run of the job is in progress (fresh heartbeat): refused with exit code 3.
    db::query(
        "INSERT INTO job_execution_logs (job_name, started_at, status, trigger, instance, attempt, heartbeat_at)
         VALUES ('streak-reset', now(), 'running', 'manual', 'elsewhere', 1, clock_timestamp())",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let busy = hattrick(&["run", "streak-reset"], Some(db.url()));
    assert_eq!(busy.status.code(), Some(3), "{}", String::from_utf8_lossy(&busy.stderr));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("streak-reset is already running"));
}

#[tokio::test]
async fn serve_refuses_a_database_without_the_schema() {
    let db = TestDb::empty().await;
    let output = hattrick_with(&["serve"], Some(db.url()), &[LOG_TRANSPORT]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("run `hattrick migrate` first"));
}

#[tokio::test]
async fn serve_refuses_to_expose_the_admin_api_without_a_token() {
    let db = migrated().await;
    let output = hattrick_with(&["serve", "--listen", "0.0.0.0:0"], Some(db.url()), &[LOG_TRANSPORT]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin.listen: 0.0.0.0:0 is reachable from other machines and no admin token is set"),
        "{stderr}"
    );
    let output = hattrick(&["serve", "--roles", "scheduler,mailer"], Some(db.url()));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'mailer'"));
}

#[tokio::test]
async fn serve_with_the_dispatcher_and_no_fcm_credentials_refuses_to_start() {
    let db = migrated().await;
    let output = hattrick(&["serve", "--listen", "127.0.0.1:0"], Some(db.url()));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in ["push.service_account", "FIREBASE_SERVICE_ACCOUNT_PATH", "push.transport = \"log\""] {
        assert!(stderr.contains(setting), "{setting} is named: {stderr}");
    }
    let registered: i64 = db::query_scalar("SELECT count(*) FROM hattrick_jobs").fetch_one(db.pool()).await.unwrap();
    assert_eq!(registered, 0, "nothing was started");
}

#[tokio::test]
async fn serve_stops_gracefully_on_sigterm() {
    let db = migrated().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", db.url())
        .env(LOG_TRANSPORT.0, LOG_TRANSPORT.1)
        .env_remove("HATTRICK_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it registered its jobs, then stop it.
    for _ in 0..100 {
        let registered: i64 =
            db::query_scalar("SELECT count(*) FROM hattrick_jobs").fetch_one(db.pool()).await.unwrap();
        if registered > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve exits 0 on SIGTERM");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn redrive_sends_failed_pushes_again_and_runs_failed_jobs_again_with_an_audit_record() {
    let db = migrated().await;
    sqlx::raw_sql(
        "INSERT INTO customer_users (id, email) VALUES ('00000000-0000-4000-8000-00000000000b', 'b@example.com');
         INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id)
         VALUES ('00000000-0000-4000-8000-00000000000b', 'tok-b', 'android', 'd-b');
         INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, not_before, created_at, status,
                                  last_error)
         VALUES ('00000000-0000-4000-8000-00000000000b', 'reward', 'k1', 'T', 'B', now(), now(), 'failed', 'INTERNAL'),
                ('00000000-0000-4000-8000-00000000000b', 'reward', 'k2', 'T', 'B', now(), now(), 'failed', 'UNAVAILABLE');
         INSERT INTO job_execution_logs (id, job_name, status, trigger, started_at, error_message)
         VALUES (gen_random_uuid(), 'dead-token-cleanup', 'failed', 'schedule', now() - interval '1 hour', 'boom');",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let bare = hattrick(&["redrive", "pushes"], Some(db.url()));
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("give at least one of"), "{bare:?}");
    let backwards = hattrick(
        &["redrive", "runs", "--from", "2026-12-05T10:00:00Z", "--to", "2026-12-05T09:00:00Z"],
        Some(db.url()),
    );
    assert_eq!(backwards.status.code(), Some(2));

    let pushes = hattrick_with(&["redrive", "pushes", "--error", "INTERNAL"], Some(db.url()), &[("USER", "deniz")]);
    assert!(pushes.status.success(), "{}", String::from_utf8_lossy(&pushes.stderr));
    assert!(stdout(&pushes).starts_with("1 failed push(es) queued again"), "{}", stdout(&pushes));
    let pending: Vec<String> = db::query_scalar("SELECT dedupe_key FROM push_outbox WHERE status = 'pending'")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(pending, ["k1"]);

    let runs = hattrick(&["redrive", "runs", "--job", "dead-token-cleanup"], Some(db.url()));
    assert!(runs.status.success(), "{}{}", stdout(&runs), String::from_utf8_lossy(&runs.stderr));
    assert!(stdout(&runs).contains("dead-token-cleanup (failed run "), "{}", stdout(&runs));
    assert!(stdout(&runs).contains(": success"), "{}", stdout(&runs));
    let audit: Vec<(String, String)> =
        db::query_as("SELECT actor, action FROM hattrick_audit_log ORDER BY id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(audit[0], ("cli:deniz".to_owned(), "push.redrive".to_owned()));
    assert_eq!(audit[1].1, "run.redrive");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_locale_file_is_imported_rendered_exported_and_a_bad_text_stops_start_up_until_removed() {
    let db = migrated().await;
    let url = Some(db.url());
    let german = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/messages/de.toml");
    let imported = hattrick_with(&["messages", "import", german], url, &[("USER", "deniz")]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(stdout(&imported), "9 text(s) stored (9 new, 0 replaced)\n");
    let again = hattrick(&["messages", "import", german], url);
    assert_eq!(stdout(&again), "9 text(s) stored (0 new, 9 replaced)\n");

    // A file with a mistake writes nothing, and says where.
    let dir = std::env::temp_dir().join(format!("hattrick-cli-messages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("it.toml");
    std::fs::write(&bad, "[welcome_vip]\ntitle = \"Benvenuto\"\nbody = \"ok\"\n[streak_warning]\ntitle = \"Serie\"\nbody = \"{giorni}\"\n").unwrap();
    let refused = hattrick(&["messages", "import", bad.to_str().unwrap()], url);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("it.toml: streak_warning.body: {giorni} is not a placeholder"),
        "{}",
        stderr(&refused)
    );
    let italian: i64 = db::query_scalar("SELECT count(*) FROM hattrick_messages WHERE locale = 'it'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(italian, 0, "nothing of the file was written");

    let listed = hattrick(&["messages", "list", "--locale", "de"], url);
    assert!(listed.status.success());
    assert_eq!(stdout(&listed).lines().count(), 9);
    assert!(stdout(&listed).contains("streak_warning/de: Serien-Alarm 🔥 | "), "{}", stdout(&listed));

    // Rendered for an Austrian user through the fallbacks, without sending anything.
    let rendered = hattrick(&["push", "test", "--message", "streak_warning", "--locale", "de_AT"], url);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    assert_eq!(
        stdout(&rendered),
        "streak_warning in de-at (the de text): Serien-Alarm 🔥 | Verliere deine 7-Tage-Serie nicht! Noch 2 Stunden \
         bis Mitternacht.\n"
    );
    let unknown = hattrick(&["push", "test", "--message", "streak", "--locale", "de"], url);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("\"streak\" is not a push kind"), "{}", stderr(&unknown));

    // The export for a language nobody translated yet is the English text, marked, and reads back in.
    let exported = hattrick(&["messages", "export", "--locale", "pt-BR"], url);
    assert!(stdout(&exported).contains("# not translated yet: the en text\n[streak_warning]"), "{}", stdout(&exported));
    let template = dir.join("template.toml");
    std::fs::write(&template, stdout(&exported)).unwrap();
    let back = hattrick(&["messages", "import", template.to_str().unwrap()], url);
    assert!(back.status.success(), "{}", stderr(&back));

    // A text written around hattrick, with a placeholder its kind does not carry, stops start-up with the reason;
    // `hattrick messages remove` mends it.
    db::query("INSERT INTO hattrick_messages (kind, locale, title, body) VALUES ('streak_warning', 'it', 'Serie', '{giorni}')")
        .execute(db.pool())
        .await
        .unwrap();
    let stopped = hattrick(&["run", "dead-token-cleanup"], url);
    assert!(!stopped.status.success());
    assert!(
        stderr(&stopped).contains("streak_warning/it: body: {giorni} is not a placeholder"),
        "{}",
        stderr(&stopped)
    );
    let removed = hattrick(&["messages", "remove", "--locale", "it"], url);
    assert_eq!(stdout(&removed), "1 text(s) removed\n");
    let ran = hattrick(&["run", "dead-token-cleanup"], url);
    assert!(ran.status.success(), "{}", stderr(&ran));

    let audit: Vec<(String, String)> =
        db::query_as("SELECT actor, action FROM hattrick_audit_log ORDER BY id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(audit[0], ("cli:deniz".to_owned(), "message.put".to_owned()));
    assert_eq!(audit.iter().filter(|a| a.1 == "message.put").count(), 3);
    assert_eq!(audit.last().map(|a| a.1.as_str()), Some("message.remove"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn ledger_check_reports_drift_and_ledger_open_repairs_it_once_approved() {
    let db = migrated().await;
    sqlx::raw_sql(
        "INSERT INTO customer_users (id, email) VALUES ('00000000-0000-4000-8000-00000000000a', 'a@example.com');
         SELECT hattrick_grant_credits('00000000-0000-4000-8000-00000000000a', 40, 'ad_reward', 'k1');
         -- The app's own write, without a ledger row:
         UPDATE customer_credits SET balance = balance + 60, lifetime_earned = lifetime_earned + 60;
         INSERT INTO customer_xp (customer_user_id, xp_points, total_earned, level)
         VALUES ('00000000-0000-4000-8000-00000000000a', 700, 700, 'silver');",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let check = hattrick(&["ledger", "check"], Some(db.url()));
    assert_eq!(check.status.code(), Some(1));
    let text = stdout(&check);
    assert!(text.contains("credits: 1 user(s) drift, balances exceed their ledgers by 60 in total"), "{text}");
    assert!(text.contains("xp: 1 user(s) drift, XP exceeds the ledgers by 700 in total"), "{text}");

    let unapproved = hattrick(&["ledger", "open"], Some(db.url()));
    assert_eq!(unapproved.status.code(), Some(1));
    assert!(stdout(&unapproved).contains("nothing written: add --yes"));
    let open = hattrick(&["ledger", "open", "--yes"], Some(db.url()));
    assert!(open.status.success(), "{}", String::from_utf8_lossy(&open.stderr));
    assert!(stdout(&open).contains("wrote 1 credit and 1 XP opening-balance row(s)"), "{}", stdout(&open));
    let check = hattrick(&["ledger", "check"], Some(db.url()));
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    testkit::assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn two_processes_running_the_referral_jobs_at_once_pay_each_referral_once() {
    let db = migrated().await;
    sqlx::raw_sql(
        "WITH referrer AS (INSERT INTO customer_users (email) VALUES ('referrer@example.com') RETURNING id),
              referred AS (INSERT INTO customer_users (email, last_login_at)
                           SELECT 'r' || g || '@example.com', now() - interval '1 day'
                           FROM generate_series(1, 2000) g RETURNING id)
         INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
         SELECT referrer.id, referred.id, 'TWO', now() - interval '2 days', now() + interval '28 days'
         FROM referrer, referred",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_hattrick"))
            .args(["run", "referral-tier2"])
            .env("DATABASE_URL", db.url())
            .env_remove("HATTRICK_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let codes = [first.wait_with_output().unwrap().status.code(), second.wait_with_output().unwrap().status.code()];
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert!(codes.iter().all(|c| matches!(c, Some(0) | Some(3))), "each either ran or was refused: {codes:?}");
    let (grants, balance): (i64, i32) = db::query_as(
        "SELECT (SELECT count(*) FROM customer_credit_transactions),
                (SELECT balance FROM customer_credits c JOIN customer_users u ON u.id = c.customer_user_id
                 WHERE u.email = 'referrer@example.com')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((grants, balance), (4000, 100_000));
    testkit::assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn serve_shadow_reports_what_each_tick_would_do_and_writes_nothing() {
    let db = migrated().await;
    let user = db.user().await;
    db::query(
        "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition)
         VALUES ('first-words', 'İlk Söz', 'First Words', 'https://example.com/b.png', 'social', '{\"type\": \"comments\", \"count\": 1}')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db::query("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'hello there')")
        .bind(user)
        .execute(db.pool())
        .await
        .unwrap();
    let writes_before: i64 = db::query_scalar(
        "SELECT (SELECT count(*) FROM job_execution_logs) + (SELECT count(*) FROM hattrick_jobs)
              + (SELECT count(*) FROM customer_badges) + (SELECT count(*) FROM push_outbox)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    // A clock 300 times faster: the 5-minute badge sweep comes around within seconds.
    let start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let child = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["serve", "--shadow"])
        .env("DATABASE_URL", db.url())
        .env("HATTRICK_CLOCK", format!("scaled:2026-11-29T10:00:30Z,300,{start_ms}"))
        .env_remove("HATTRICK_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().unwrap();
    let text = stdout(&output);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    let sweep =
        lines.iter().find(|l| l["job"] == "badge-auto-unlock").unwrap_or_else(|| panic!("no badge sweep in {text}"));
    assert_eq!(sweep["outcome"], "success", "{sweep}");
    assert_eq!(sweep["would"]["details"]["would_unlock"]["first-words"], 1, "{sweep}");
    assert!(lines.iter().any(|l| l["job"] == "referral-tier2"), "{text}");
    let writes_after: i64 = db::query_scalar(
        "SELECT (SELECT count(*) FROM job_execution_logs) + (SELECT count(*) FROM hattrick_jobs)
              + (SELECT count(*) FROM customer_badges) + (SELECT count(*) FROM push_outbox)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(writes_before, writes_after, "shadow mode wrote something");
}

/// A database error other than a missing table (here: a role that may not read hattrick's tables) is reported as
/// itself, never as "run `hattrick migrate` first".
#[tokio::test]
async fn a_database_error_is_reported_as_itself_not_as_a_missing_schema() {
    let db = TestDb::new().await;
    let role = format!("ht_reader_{}", std::process::id());
    for sql in [format!("DROP ROLE IF EXISTS {role}"), format!("CREATE ROLE {role} LOGIN")] {
        db::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    }
    let url = db.direct_url().replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.direct_url(), "the test server's URL names the postgres user");
    let output = hattrick(&["jobs"], Some(&url));
    db::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}"))).execute(db.pool()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!stderr.contains("hattrick migrate"), "{stderr}");
}

/// On a database shaped like the app's (ids without defaults, `timestamp without time zone`, `fcm_token`, columns
/// and constraints hattrick does not know), `migrate` makes room for hattrick's writes and every job then runs,
/// twice, without an error: the first badge sweep's promotional VIP days included.
#[tokio::test]
async fn every_job_runs_repeatedly_on_the_apps_legacy_schema() {
    let db = TestDb::empty().await;
    sqlx::raw_sql(testkit::LEGACY_SCHEMA).execute(db.pool()).await.expect("load the legacy schema");
    let migrate = hattrick(&["migrate"], Some(db.url()));
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let mut options = seed::SeedOptions::new(300, 11);
    options.force = true; // the legacy rows stay
    seed::seed_database(db.url(), &options).await.expect("seed on the legacy schema");
    // Every user reaches bronze: each unlock grants a promotional VIP day, a row the app's table has no id for.
    db::query(
        "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition, reward_vip_days)
         VALUES ('legacy_vip', 'Eski VIP', 'Legacy VIP', 'https://example.com/vip.png', 'level',
                 '{\"type\": \"xp_level\", \"level\": \"bronze\"}', 1)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    for round in 1..=2 {
        for job in hattrick::registry::JOBS {
            let output = hattrick_with(&["run", job.defaults.name], Some(db.url()), &[LOG_TRANSPORT]);
            assert!(
                output.status.success(),
                "round {round}, {}: {}{}",
                job.defaults.name,
                stdout(&output),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let promotional: i64 =
        db::query_scalar("SELECT count(*) FROM customer_subscriptions WHERE platform = 'promo' AND id IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(promotional >= 300, "every seeded user got the VIP day: {promotional}");
    testkit::assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_run_stopped_by_sigterm_is_recorded_interrupted_and_can_run_again_at_once() {
    let db = migrated().await;
    // 3,000 dead tokens over many pages, one page a batch, each batch followed by a rest of 100 times its length:
    // the run takes many seconds.
    db.users_with_dead_tokens(3_000).await;
    let child = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["run", "dead-token-cleanup"])
        .env_remove("HATTRICK_CONFIG")
        .env("DATABASE_URL", db.url())
        .env("HATTRICK_CLEANUP__BATCH", "1")
        .env("HATTRICK_CLEANUP__REST", "100")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run hattrick");
    let status_of_run = || async {
        db::query_scalar::<String>("SELECT status FROM job_execution_logs WHERE job_name = 'dead-token-cleanup'")
            .fetch_optional(db.pool())
            .await
            .unwrap()
    };
    let started = std::time::Instant::now();
    while status_of_run().await.as_deref() != Some("running") {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the run never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "an interrupted run is not a success: {}", stdout(&output));
    assert!(stdout(&output).contains("dead-token-cleanup interrupted"), "{}", stdout(&output));
    assert_eq!(status_of_run().await.as_deref(), Some("interrupted"), "recorded, not left running");
    let left = db::query_scalar::<i64>("SELECT count(*) FROM customer_push_tokens").fetch_one(db.pool()).await.unwrap();
    assert!(left > 0, "stopped part-way");

    let again = hattrick(&["run", "dead-token-cleanup"], Some(db.url()));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let left = db::query_scalar::<i64>("SELECT count(*) FROM customer_push_tokens").fetch_one(db.pool()).await.unwrap();
    assert_eq!(left, 0);
}
