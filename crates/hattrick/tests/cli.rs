//! The command line as a user runs it: the built binary against a real database.

use std::process::{Command, Output};

use testkit::TestDb;

fn hattrick(args: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hattrick"));
    command.args(args).env_remove("HATTRICK_CONFIG");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("run hattrick")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [vec!["--help"], vec!["migrate", "--help"], vec!["seed", "--help"], vec!["config", "--help"]] {
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
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
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
