//! Configuration: layering, overrides, redaction, and bad values rejected with the setting named.

use std::path::PathBuf;
use std::process::Command;

use hattrick::config::{Settings, Sources};

/// Writes `toml` to a file of its own under the temp directory.
fn config_file(name: &str, toml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("hattrick-config-test-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, toml).expect("write config file");
    path
}

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
    let file = config_file(&format!("{:x}", toml.len() * 31 + env.len()), toml);
    let sources = Sources {
        file: Some(file.clone()),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    };
    let result = Settings::load(&sources).map_err(|e| e.to_string());
    std::fs::remove_file(file).ok();
    result
}

fn rejected(toml: &str, env: &[(&str, &str)]) -> String {
    match load(toml, env) {
        Ok(settings) => panic!("accepted {toml:?} / {env:?} as {settings:?}"),
        Err(message) => message,
    }
}

#[test]
fn defaults_need_no_file() {
    let settings = Settings::load(&Sources::default()).expect("defaults are valid");
    assert_eq!(settings.time.business_zone, "Europe/Istanbul");
    assert_eq!(settings.rewards.daily_reward_credits, vec![10, 15, 20, 25, 30, 40, 100]);
    assert_eq!(settings.database_url(), "postgres://postgres@127.0.0.1:5432/postgres");
}

#[test]
fn the_example_file_is_valid_and_complete() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../hattrick.example.toml");
    let sources = Sources { file: Some(example), env: Vec::new() };
    let settings = Settings::load(&sources).expect("hattrick.example.toml loads");
    assert!(settings.jobs.contains_key("partner-analytics"));
}

#[test]
fn an_unknown_time_zone_is_named() {
    let message = rejected("[time]\nbusiness_zone = \"Europe/Istambul\"\n", &[]);
    assert!(message.contains("time.business_zone: unknown time zone \"Europe/Istambul\""), "{message}");
}

#[test]
fn a_bad_cron_is_named() {
    let message = rejected("[jobs.badge-auto-unlock]\nschedule = \"*/5 * *\"\n", &[]);
    assert!(message.contains("jobs.badge-auto-unlock.schedule: invalid cron expression \"*/5 * *\""), "{message}");
    let message = rejected("[jobs.streak-reset]\nschedule = \"61 0 * * *\"\n", &[]);
    assert!(message.contains("jobs.streak-reset.schedule"), "{message}");
}

#[test]
fn an_unknown_job_is_named_with_the_known_ones() {
    let message = rejected("[jobs.badge-autounlock]\nenabled = false\n", &[]);
    assert!(message.contains("jobs.badge-autounlock: unknown job (known jobs: badge-auto-unlock,"), "{message}");
}

#[test]
fn negative_amounts_are_named() {
    let message = rejected("[rewards]\ntier2_referrer_credits = -50\n", &[]);
    assert!(message.contains("rewards.tier2_referrer_credits: must not be negative (got -50)"), "{message}");
    let message = rejected("[jobs.referral-tier2]\nmax_grants = -1\n", &[]);
    assert!(message.contains("jobs.referral-tier2.max_grants: must not be negative"), "{message}");
    let message = rejected("[rewards]\ndaily_reward_credits = [10, 15, -20, 25, 30, 40, 100]\n", &[]);
    assert!(message.contains("rewards.daily_reward_credits[2]: must not be negative"), "{message}");
}

#[test]
fn chunks_at_once_is_named_where_it_cannot_apply() {
    let message = rejected("[jobs.referral-tier2]\nchunks_at_once = 2\n", &[]);
    assert!(
        message.contains("jobs.referral-tier2.chunks_at_once: only badge-auto-unlock grants in chunks"),
        "{message}"
    );
    let message = rejected("[jobs.badge-auto-unlock]\nchunks_at_once = 0\n", &[]);
    assert!(message.contains("jobs.badge-auto-unlock.chunks_at_once: must be at least 1"), "{message}");
    let message = rejected("[database]\nmax_connections = 4\n[jobs.badge-auto-unlock]\nchunks_at_once = 4\n", &[]);
    assert!(message.contains("less than database.max_connections (4)") && message.contains("(got 4)"), "{message}");
    let message = rejected("[jobs.streak-reset]\nunlocks_per_chunk = 500\n", &[]);
    assert!(
        message.contains("jobs.streak-reset.unlocks_per_chunk: only badge-auto-unlock grants in chunks"),
        "{message}"
    );
    let message = rejected("[jobs.badge-auto-unlock]\nunlocks_per_chunk = 0\n", &[]);
    assert!(message.contains("jobs.badge-auto-unlock.unlocks_per_chunk: must be at least 1 (got 0)"), "{message}");
    let message = rejected("[jobs.badge-auto-unlock]\nunlocks_per_chunk = -5\n", &[]);
    assert!(message.contains("unlocks_per_chunk"), "{message}");
}

#[test]
fn a_bad_duration_and_a_misspelt_key_are_named() {
    let message = rejected("[engine]\nlease = \"sixty seconds\"\n", &[]);
    assert!(message.contains("engine.lease") && message.contains("invalid duration"), "{message}");
    let message = rejected("[engine]\nleese = \"60s\"\n", &[]);
    assert!(message.contains("unknown field") && message.contains("leese"), "{message}");
    let message = rejected("[engine]\nlease = \"10s\"\nheartbeat = \"10s\"\n", &[]);
    assert!(message.contains("engine.heartbeat: must be at most half of engine.lease"), "{message}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let message = rejected(
        "[time]\nbusiness_zone = \"Mars/Olympus\"\n[jobs.nope]\nenabled = true\n[rewards]\ntier3_referrer_xp = -1\n",
        &[],
    );
    assert!(message.contains("time.business_zone"), "{message}");
    assert!(message.contains("jobs.nope"), "{message}");
    assert!(message.contains("rewards.tier3_referrer_xp"), "{message}");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let settings = load(
        "[time]\nbusiness_zone = \"Europe/Berlin\"\n[jobs.streak-reset]\nschedule = \"1 0 * * *\"\n",
        &[
            ("HATTRICK_TIME__BUSINESS_ZONE", "America/New_York"),
            ("HATTRICK_JOBS__STREAK_RESET__SCHEDULE", "2 0 * * *"),
            ("HATTRICK_JOBS__STREAK_RESET__MAX_GRANTS", "10"),
            ("HATTRICK_CONFIG", "ignored: not a setting"),
            ("DATABASE_URL", "postgres://app:s3cret@db.internal:5432/goalgpt"),
        ],
    )
    .expect("valid");
    assert_eq!(settings.time.business_zone, "America/New_York");
    assert_eq!(settings.jobs["streak-reset"].schedule.as_deref(), Some("2 0 * * *"));
    assert_eq!(settings.jobs["streak-reset"].max_grants, Some(10));
    assert_eq!(settings.database_url(), "postgres://app:s3cret@db.internal:5432/goalgpt");
    let bad = rejected("", &[("HATTRICK_JOBS__STREAK_RESET__SCHEDULE", "whenever")]);
    assert!(bad.contains("jobs.streak-reset.schedule: invalid cron expression \"whenever\""), "{bad}");
}

#[test]
fn printed_configuration_hides_the_database_password() {
    let settings = load("", &[("DATABASE_URL", "postgres://app:s3cret@db.internal:5432/goalgpt")]).unwrap();
    let printed = settings.to_redacted_toml();
    assert!(printed.contains("postgres://app:***@db.internal:5432/goalgpt"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(!format!("{settings:?}").contains("s3cret"));
}

#[test]
fn the_binary_refuses_to_start_on_bad_configuration() {
    let file = config_file("binary", "[jobs.referral-tier3]\ntimezone = \"Nowhere/Special\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["--config", file.to_str().unwrap(), "config"])
        .output()
        .expect("run hattrick");
    std::fs::remove_file(&file).ok();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("jobs.referral-tier3.timezone: unknown time zone \"Nowhere/Special\""), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "the message names the file: {stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["--config", "/nonexistent/hattrick.toml", "config"])
        .output()
        .expect("run hattrick");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("config file /nonexistent/hattrick.toml does not exist"));
}

#[test]
fn settings_that_no_longer_do_anything_load_with_a_warning() {
    // Event runs once listened on a direct connection and waited `debounce` after a notification; they now look
    // at the change table every `poll_interval`. A configuration written for that still starts.
    let file = config_file("deprecated", "[events]\ndebounce = \"250ms\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["--config", file.to_str().unwrap(), "config"])
        .env("DATABASE_DIRECT_URL", "postgres://app:s3cret@db.internal:5432/goalgpt")
        .output()
        .expect("run hattrick");
    std::fs::remove_file(&file).ok();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("database.direct_url (DATABASE_DIRECT_URL): no longer used"), "{stderr}");
    assert!(stderr.contains("events.debounce: no longer used"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("poll_interval = \"100ms\""), "{printed}");

    let settings = load("", &[]).unwrap();
    assert!(settings.deprecations().is_empty(), "{:?}", settings.deprecations());
    assert!(rejected("[events]\npoll_interval = \"5ms\"\n", &[]).contains("events.poll_interval: at least 10ms"));
}

#[test]
fn push_settings_are_checked_and_the_firebase_variable_is_read() {
    let message = rejected(
        "[push]\nquiet_hours_start = \"23h\"\nbatch = 0\nfcm_endpoint = \"fcm.googleapis.com\"\ntransport = \"fcm\"\n",
        &[],
    );
    for expected in [
        "push.quiet_hours_start: expected HH:MM or off, got \"23h\"",
        "push.batch: must be at least 1 (got 0)",
        "push.fcm_endpoint: must be an http:// or https:// URL",
        "push.transport: fcm needs credentials: push.service_account (FIREBASE_SERVICE_ACCOUNT_PATH or \
         GOOGLE_APPLICATION_CREDENTIALS), push.service_account_json (FIREBASE_SERVICE_ACCOUNT_JSON), or \
         push.metadata_server = true",
    ] {
        assert!(message.contains(expected), "{expected} in {message}");
    }
    let settings = load("", &[("FIREBASE_SERVICE_ACCOUNT_PATH", "/keys/firebase.json")]).unwrap();
    assert_eq!(settings.push.service_account, Some(PathBuf::from("/keys/firebase.json")));
    // Application Default Credentials' variable, which the first version's overrides.
    let adc = [("GOOGLE_APPLICATION_CREDENTIALS", "/var/run/secrets/adc.json")];
    let settings = load("", &adc).unwrap();
    assert_eq!(settings.push.service_account, Some(PathBuf::from("/var/run/secrets/adc.json")));
    let both = [adc[0], ("FIREBASE_SERVICE_ACCOUNT_PATH", "/keys/firebase.json")];
    assert_eq!(load("", &both).unwrap().push.service_account, Some(PathBuf::from("/keys/firebase.json")));
    let settings =
        load("", &[("GCE_METADATA_HOST", "169.254.169.254"), ("HATTRICK_PUSH__METADATA_SERVER", "true")]).unwrap();
    assert!(settings.push.metadata_server && settings.push.metadata_host == "169.254.169.254");
    let settings = load("", &[("FIREBASE_SERVICE_ACCOUNT_JSON", "{\"private_key\": \"secret\"}")]).unwrap();
    assert!(!settings.to_redacted_toml().contains("secret"), "the key's JSON is a secret");
    // The OAuth bearer never travels in clear off this machine.
    let message = rejected("[push]\nfcm_endpoint = \"http://fcm.example.com\"\n", &[]);
    assert!(message.contains("push.fcm_endpoint: plain http:// is accepted only to this machine"), "{message}");
    for local in ["http://127.0.0.1:9090", "http://localhost:9090/", "http://[::1]:9090"] {
        assert!(load(&format!("[push]\nfcm_endpoint = \"{local}\"\n"), &[]).is_ok(), "{local}");
    }
    let settings = load("[push]\nquiet_hours_start = \"off\"\n", &[]).unwrap();
    assert_eq!(settings.push.quiet_hours(), Ok(None));
}

#[test]
fn engagement_and_cleanup_mistakes_are_named() {
    let message = rejected(
        "[engagement]\nstreak_warning_at = \"25:00\"\ndeadline = \"0s\"\n[cleanup]\nkeep_ledgers = \"12h\"\nbatch = 0\n",
        &[],
    );
    assert!(message.contains("engagement.streak_warning_at: expected a local time HH:MM, got \"25:00\""), "{message}");
    assert!(message.contains("engagement.deadline: must be more than zero"), "{message}");
    assert!(message.contains("cleanup.keep_ledgers: must be at least one day"), "{message}");
    assert!(message.contains("cleanup.batch: must be at least 1 (got 0)"), "{message}");
    let message = rejected("", &[("HATTRICK_CLEANUP__KEEP_OUTBOX", "12h")]);
    assert!(message.contains("cleanup.keep_outbox: must be at least one day"), "{message}");
    let message = rejected("[cleanup]\nwal_mb_per_second = -1\n", &[]);
    assert!(message.contains("cleanup.wal_mb_per_second: must be 0 (no cap) to 100000 (got -1)"), "{message}");
    let settings = load("", &[("HATTRICK_CLEANUP__WAL_MB_PER_SECOND", "0")]).unwrap();
    assert_eq!(settings.cleanup.wal_mb_per_second, 0.0, "0 turns the cap off");
}

#[test]
fn admin_tokens_come_from_the_environment_and_never_print() {
    let settings = load(
        "[admin]\nlisten = \"0.0.0.0:9000\"\n[admin.tokens]\nalice = \"alice-secret-0123456789\"\n",
        &[("HATTRICK_ADMIN_TOKEN", "env-secret-0123456789")],
    )
    .unwrap();
    let mut tokens = settings.admin.named_tokens();
    tokens.sort();
    assert_eq!(
        tokens,
        [
            ("admin".to_owned(), "env-secret-0123456789".to_owned()),
            ("alice".to_owned(), "alice-secret-0123456789".to_owned())
        ]
    );
    let printed = format!("{}\n{:?}", settings.to_redacted_toml(), settings);
    assert!(!printed.contains("secret-0123456789"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[test]
fn admin_mistakes_are_named() {
    let message = rejected(
        "[admin]\nlisten = \"localhost\"\ntoken = \"short\"\nsession_ttl = \"5s\"\n[admin.tokens]\n\"bad name\" = \"a-long-enough-secret-1\"\nbob = \"a-long-enough-secret-1\"\n",
        &[],
    );
    assert!(
        message.contains("admin.listen: expected an address such as 127.0.0.1:8080 (got \"localhost\")"),
        "{message}"
    );
    assert!(message.contains("admin.token: at least 16 characters"), "{message}");
    assert!(message.contains("admin.tokens.bad name: a token name is letters"), "{message}");
    assert!(message.contains("the same secret as another token"), "{message}");
    assert!(message.contains("admin.session_ttl: at least one minute"), "{message}");
    assert!(!message.contains("a-long-enough-secret-1"), "secrets never appear in errors: {message}");
}

#[test]
fn security_settings_are_checked() {
    let message = rejected(
        "[admin]\nallowed_hosts = [\"https://admin.example.com\"]\nmax_connections = 0\nheader_timeout = \"0s\"\n\
         metrics_token = \"short\"\n[push]\ndeep_link_schemes = [\"javascript\", \"Goal:GPT\"]\n",
        &[],
    );
    for expected in [
        "admin.allowed_hosts: \"https://admin.example.com\" is not a host name",
        "admin.max_connections: at least 1",
        "admin.header_timeout: must be more than zero",
        "admin.metrics_token: at least 16 characters",
        "push.deep_link_schemes: \"javascript\" can run code",
        "push.deep_link_schemes: \"Goal:GPT\" is not a lower-case URL scheme",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    assert!(!message.contains("short\""), "secrets never appear in errors: {message}");
    let settings = load("", &[("HATTRICK_METRICS_TOKEN", "metrics-secret-0123456789")]).unwrap();
    assert_eq!(
        settings.admin.metrics_token.map(|t| t.expose().to_owned()).as_deref(),
        Some("metrics-secret-0123456789")
    );
}
