//! `hattrick demo` as a newcomer runs it: the built binary, one simulated day, a summary in which every job did
//! real work, and nothing left behind. It runs on the test server (the demo creates and drops a database of its
//! own there); the throwaway-cluster path is the one `db::cluster`'s test covers.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_day_through_every_job_and_cleans_up() {
    let server = testkit::server_url().await;
    let output = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["demo", "--users", "400", "--seconds", "15"])
        .env("DATABASE_URL", &server)
        .env_remove("HATTRICK_CONFIG")
        .output()
        .expect("run hattrick demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // Every job ran and did something (items > 0) during the day.
    for job in [
        "badge-auto-unlock",
        "referral-tier2",
        "referral-tier3",
        "scheduled-notifications",
        "daily-reward-reminders",
        "streak-break-warnings",
        "subscription-expiry-alerts",
        "partner-analytics",
        "streak-reset",
        "dead-token-cleanup",
        "old-logs-cleanup",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("{job} missing:\n{stdout}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        let items: i64 = columns[columns.len() - 1].parse().unwrap();
        assert!(items > 0, "{job} did nothing: {line}\n{stdout}");
        // The day ends by letting running work finish: no run is cut off.
        assert_eq!(columns[columns.len() - 2], "0", "{job} has interrupted runs: {line}\n{stdout}");
    }
    assert!(stdout.contains("Badges: "), "{stdout}");
    assert!(stdout.contains("by event runs"), "{stdout}");
    assert!(stdout.contains("Campaign \"Derby tonight!\""), "{stdout}");
    // The evening campaign is an experiment at local time: its read-out has the holdout and both variants.
    assert!(stdout.contains("out at 19:00 local: ") && stdout.contains("Europe/Istanbul 16:00 UTC"), "{stdout}");
    for group in ["holdout", "variant 1", "variant 2"] {
        assert!(stdout.lines().any(|l| l.trim_start().starts_with(group) && l.contains("% to ")), "{group}: {stdout}");
    }
    assert!(stdout.contains("the demo database is gone"), "{stdout}");

    // Nothing left behind on the server.
    let pool = db::connect(&server, &db::PoolSettings::default()).await.unwrap();
    let left: i64 = db::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'hattrick_demo_%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the demo database was dropped");
}
