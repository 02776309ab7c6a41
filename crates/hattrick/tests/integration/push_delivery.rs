//! Push delivery through the built binary: `hattrick fake-fcm`, `hattrick push test`, and a 100,000-user campaign
//! whose dispatcher is killed with SIGKILL half-way and restarted.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::TestDb;
use uuid::Uuid;

/// A running `hattrick fake-fcm` and the settings it printed.
struct Fake {
    child: Child,
    env: Vec<(String, String)>,
    _dir: TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fake(extra: &[&str]) -> Fake {
    let dir = std::env::temp_dir().join(format!("hattrick-fake-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("service-account.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hattrick"))
        .args(["fake-fcm", "--listen", "127.0.0.1:0", "--write-service-account"])
        .arg(&key)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let (key, value) = line.split_once('=').expect("KEY=VALUE lines");
        env.push((key.to_owned(), value.to_owned()));
        if key == "HATTRICK_PUSH__TRANSPORT" {
            break;
        }
    }
    assert_eq!(
        env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["FIREBASE_SERVICE_ACCOUNT_PATH", "HATTRICK_PUSH__FCM_ENDPOINT", "HATTRICK_PUSH__TRANSPORT"]
    );
    Fake { child, env, _dir: TempDir(dir) }
}

impl Fake {
    fn endpoint(&self) -> &str {
        &self.env[1].1["http://".len()..]
    }

    /// `GET /_fake/stats` over a plain HTTP/1.1 socket.
    fn stats(&self) -> serde_json::Value {
        let mut stream = TcpStream::connect(self.endpoint()).unwrap();
        write!(stream, "GET /_fake/stats HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn command(&self, db: &TestDb, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hattrick"));
        command.args(args).env_remove("HATTRICK_CONFIG").env("DATABASE_URL", db.url()).envs(self.env.clone());
        command
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn push_test_delivers_through_the_fake_and_reports_each_user() {
    let db = TestDb::new().await;
    let fake = fake(&["--unregistered-prefix", "dead-"]);
    let (alive, dead) = (Uuid::new_v4(), Uuid::new_v4());
    for (user, token) in [(alive, "tok-alive"), (dead, "dead-1")] {
        testkit::NewUser::new().id(user).push_allowed(false).insert(db.pool()).await;
        db::query("INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, $2, 'ios', 'd')")
            .bind(user)
            .bind(token)
            .execute(db.pool())
            .await
            .unwrap();
    }
    let output = fake
        .command(&db, &["push", "test", "--user", &alive.to_string(), "--title", "Test", "--body", "Merhaba"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains(&format!("{alive}: sent (1 token(s) delivered, 0 failed)")), "{}", text(&output));
    assert_eq!(fake.stats()["per_token"]["tok-alive"], 1);

    let output = fake
        .command(&db, &["push", "test", "--user", &dead.to_string(), "--title", "T", "--body", "B"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("failed (0 token(s) delivered, 1 failed, last error UNREGISTERED)"),
        "{}",
        text(&output)
    );

    let unknown = Uuid::new_v4().to_string();
    let output =
        fake.command(&db, &["push", "test", "--user", &unknown, "--title", "T", "--body", "B"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("unknown user"), "{}", text(&output));
}

/// FCM credentials the way Google deployments provide them: `GOOGLE_APPLICATION_CREDENTIALS`, the key's JSON in
/// `FIREBASE_SERVICE_ACCOUNT_JSON`, and the metadata server of a Google VM or GKE workload (the fake plays it, at
/// `GCE_METADATA_HOST`); each one's token is fetched from its own endpoint and accepted by the fake FCM.
#[tokio::test]
async fn push_test_takes_application_default_credentials() {
    let db = TestDb::new().await;
    let fake = fake(&[]);
    let user = db.user().await;
    db::query("INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, 'tok-adc', 'android', 'd')")
        .bind(user)
        .execute(db.pool())
        .await
        .unwrap();
    let key_path = fake.env[0].1.clone();
    let key_json = std::fs::read_to_string(&key_path).unwrap();
    let endpoint = format!("http://{}", fake.endpoint());
    let ways: [(&str, Vec<(&str, String)>); 3] = [
        ("GOOGLE_APPLICATION_CREDENTIALS", vec![("GOOGLE_APPLICATION_CREDENTIALS", key_path)]),
        ("FIREBASE_SERVICE_ACCOUNT_JSON", vec![("FIREBASE_SERVICE_ACCOUNT_JSON", key_json)]),
        (
            "the metadata server",
            vec![
                ("HATTRICK_PUSH__METADATA_SERVER", "true".to_owned()),
                ("GCE_METADATA_HOST", fake.endpoint().to_owned()),
            ],
        ),
    ];
    for (round, (way, env)) in ways.into_iter().enumerate() {
        let before = fake.stats()["tokens_issued"].as_u64().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_hattrick"))
            .args(["push", "test", "--user", &user.to_string(), "--title", "ADC", "--body", way])
            .env_remove("HATTRICK_CONFIG")
            .env("DATABASE_URL", db.url())
            .env("HATTRICK_PUSH__FCM_ENDPOINT", &endpoint)
            .env("HATTRICK_PUSH__TRANSPORT", "fcm")
            .envs(env)
            .output()
            .unwrap();
        assert!(output.status.success(), "{way}: {}", text(&output));
        assert!(text(&output).contains("sent (1 token(s) delivered, 0 failed)"), "{way}: {}", text(&output));
        assert_eq!(fake.stats()["tokens_issued"].as_u64().unwrap(), before + 1, "{way} fetched its own token");
        assert_eq!(fake.stats()["per_token"]["tok-adc"].as_u64().unwrap(), round as u64 + 1, "{way}");
    }
}

/// Users, one token each, all in the campaign's audience.
const USERS: i64 = 100_000;

#[tokio::test]
async fn a_campaign_survives_its_dispatcher_being_killed_mid_way() {
    let db = TestDb::new().await;
    db::query(
        "INSERT INTO customer_users (id, email, timezone)
         SELECT gen_random_uuid(), 'user' || n || '@example.com', 'UTC' FROM generate_series(1, $1) n",
    )
    .bind(USERS)
    .execute(db.pool())
    .await
    .unwrap();
    db::query(
        "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id)
         SELECT id, 'tok-' || id, 'android', 'd' FROM customer_users",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let campaign: Uuid = db::query_scalar(
        "INSERT INTO scheduled_notifications (title_tr, body_tr, target_audience, scheduled_at)
         VALUES ('Büyük maç', 'Bu akşam', 'all', now() - interval '1 minute') RETURNING id",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let fake = fake(&["--latency-ms", "2"]);
    // Quiet hours off: the test must not depend on the hour it runs at.
    let settings = [
        ("HATTRICK_PUSH__QUIET_HOURS_START", "off"),
        // The rounds in flight at a kill hold at most WORKERS x BATCH rows: the bound on what is sent twice.
        ("HATTRICK_PUSH__WORKERS", "6"),
        ("HATTRICK_PUSH__BATCH", "1000"),
        ("HATTRICK_PUSH__DAILY_CAP", "10"),
    ];
    let expand = fake.command(&db, &["run", "scheduled-notifications"]).envs(settings).output().unwrap();
    assert!(expand.status.success(), "{}", text(&expand));

    let serve = || {
        fake.command(&db, &["serve", "--listen", "127.0.0.1:0"])
            .envs(settings)
            .env("HATTRICK_ENGINE__LEASE", "10s")
            .env("HATTRICK_ENGINE__HEARTBEAT", "2s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let accepted = |fake: &Fake| fake.stats()["accepted"].as_u64().unwrap();
    let mut first = serve();
    let deadline = Instant::now() + Duration::from_secs(240);
    while accepted(&fake) < USERS as u64 / 3 {
        assert!(Instant::now() < deadline, "the dispatcher is too slow: {} accepted", accepted(&fake));
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap(); // SIGKILL: no shutdown, no final writes
    first.wait().unwrap();
    let at_kill = accepted(&fake);
    // The killed rounds' rows were locked, not marked: they are due again as soon as the connections close.
    let in_flight: i64 = 6 * 1000;

    let mut second = serve();
    loop {
        let open: i64 = db::query_scalar(
            "SELECT count(*) FROM push_outbox WHERE campaign_id = $1 AND status IN ('pending', 'sending')",
        )
        .bind(campaign)
        .fetch_one(db.pool())
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} rows still open");
        std::thread::sleep(Duration::from_millis(200));
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let complete = fake.command(&db, &["run", "scheduled-notifications"]).envs(settings).output().unwrap();
    assert!(complete.status.success(), "{}", text(&complete));

    let stats = fake.stats();
    let per_token: HashMap<String, u64> = serde_json::from_value(stats["per_token"].clone()).unwrap();
    let tokens: Vec<String> =
        db::query_scalar("SELECT token FROM customer_push_tokens").fetch_all(db.pool()).await.unwrap();
    let missing = tokens.iter().filter(|t| !per_token.contains_key(*t)).count();
    let duplicates: u64 = per_token.values().map(|n| n - 1).sum();
    eprintln!(
        "killed at {at_kill} accepted with at most {in_flight} row(s) in flight; duplicates after restart: {duplicates}; \
         total accepted {}",
        stats["accepted"]
    );
    assert_eq!(missing, 0, "every targeted token received the message");
    assert!(duplicates <= in_flight as u64, "{duplicates} duplicates > {in_flight} messages in flight at the kill");
    let (status, recipients, success, failure): (String, i32, i32, i32) = db::query_as(
        "SELECT status, recipient_count, success_count, failure_count FROM scheduled_notifications WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((status.as_str(), recipients, success, failure), ("sent", USERS as i32, USERS as i32, 0));
    assert_eq!(per_token.len() as i64, USERS, "the fake saw exactly the campaign's tokens");
}
