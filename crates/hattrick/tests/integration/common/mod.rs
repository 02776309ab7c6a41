//! An admin server on a real socket over a fresh database, with a fake FCM: what the admin API and browser tests
//! drive.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hattrick::application::{Application, Options, Roles};
use hattrick::config::{Secret, Settings, Sources};
use push::fake::{FakeConfig, FakeFcm};
use serde_json::Value;
use testkit::{Clock, TestDb};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The token of the operator named `ops`.
pub const TOKEN: &str = "ops-token-0123456789";
/// The token of the operator named `ci`.
pub const OTHER_TOKEN: &str = "ci-token-0123456789ab";

/// A running admin server.
pub struct AdminServer {
    pub db: TestDb,
    pub base: String,
    pub admin: Arc<admin::Admin>,
    pub fake: FakeFcm,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    key: std::path::PathBuf,
}

impl AdminServer {
    /// A server with the `ops` and `ci` tokens.
    pub async fn start() -> Self {
        Self::with_settings(|_| {}).await
    }

    /// A server whose configuration `adjust` changes first (the `ops` and `ci` tokens are set already).
    pub async fn with_settings(adjust: impl FnOnce(&mut Settings)) -> Self {
        push::transport::install_crypto_provider();
        let db = TestDb::new().await;
        let fake = FakeFcm::bind("127.0.0.1:0", FakeConfig::default()).await.unwrap();
        let key = std::env::temp_dir().join(format!("hattrick-admin-test-{}.json", Uuid::new_v4()));
        std::fs::write(&key, fake.service_account_json()).unwrap();
        let env = [
            ("DATABASE_URL", db.url().to_owned()),
            ("FIREBASE_SERVICE_ACCOUNT_PATH", key.display().to_string()),
            ("HATTRICK_PUSH__FCM_ENDPOINT", fake.endpoint()),
            ("HATTRICK_PUSH__TRANSPORT", "fcm".to_owned()),
            ("HATTRICK_PUSH__QUIET_HOURS_START", "off".to_owned()),
        ];
        let sources = Sources { file: None, env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect() };
        let mut settings = Settings::load(&sources).unwrap();
        settings.admin.tokens =
            [("ops".to_owned(), Secret::new(TOKEN)), ("ci".to_owned(), Secret::new(OTHER_TOKEN))].into();
        adjust(&mut settings);
        // The api role alone, as `serve --roles api` runs it: no scheduler, no dispatcher sending the outbox.
        let roles = Roles { api: Some("127.0.0.1:0".to_owned()), ..Roles::default() };
        let application = Application::build(&settings, Options::new(Clock::system(), roles)).await.unwrap();
        let base = format!("http://{}", application.admin_addr().unwrap());
        let admin = Arc::clone(application.admin().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self { db, base, admin, fake, http, shutdown, server: Some(server), key }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the `ops` token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// GET with the `ops` token; the status and the body as JSON (Null when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST of a JSON body with the `ops` token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    /// Waits until run `id` has ended; returns it.
    pub async fn wait_for_run(&self, id: &str) -> Value {
        for _ in 0..300 {
            let (status, run) = self.get(&format!("/admin/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if run["status"] != "running" {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {id} did not end in 30 s");
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.key);
    }
}

/// Sends `request`; the status and the body as JSON (Null when it is not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A live user with an active push token on `platform`; returns its id.
pub async fn user_with_token(db: &TestDb, platform: &str) -> Uuid {
    let user = db.user().await;
    db::query(
        "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id, is_active)
         VALUES ($1, $2, $3, $4, true)",
    )
    .bind(user)
    .bind(format!("token-{user}"))
    .bind(platform)
    .bind(format!("device-{user}"))
    .execute(db.pool())
    .await
    .unwrap();
    user
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// A private cluster under the temp directory, destroyed on drop (never the shared server: this test restarts
/// it).
pub struct PrivateCluster {
    cluster: Option<db::cluster::TempCluster>,
    root: std::path::PathBuf,
    /// PgBouncer in transaction mode in front of the cluster, when the suite runs through a pooler.
    pooler: Option<(std::process::Child, u16)>,
}

impl PrivateCluster {
    /// A cluster of the test's own (it is crashed and restarted); when the suite runs through a pooler
    /// (`HATTRICK_TEST_POOLER_URL`), a PgBouncer of its own in front of it, the way `.ci/pgbouncer.sh` configures
    /// the shared one.
    pub async fn start() -> Self {
        let root = std::env::temp_dir().join(format!("hattrick-events-restart-{}", Uuid::new_v4()));
        let at = root.clone();
        let cluster = tokio::task::spawn_blocking(move || db::cluster::TempCluster::start(&at, 5432))
            .await
            .unwrap()
            .expect("a private cluster (initdb and pg_ctl must be installed)");
        let pooled = std::env::var("HATTRICK_TEST_POOLER_URL").is_ok_and(|url| !url.is_empty());
        let pooler = if pooled { Some(start_pgbouncer(&root, &cluster).await) } else { None };
        Self { cluster: Some(cluster), root, pooler }
    }

    /// The URL hattrick is given: through the pooler when there is one.
    pub fn url(&self) -> String {
        match &self.pooler {
            Some((_, port)) => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            None => self.direct_url(),
        }
    }

    /// The cluster itself, never through the pooler (the seed).
    pub fn direct_url(&self) -> String {
        self.cluster.as_ref().unwrap().url("postgres")
    }

    pub async fn restart(&mut self, down_for: Duration) {
        let cluster = self.cluster.take().unwrap();
        let root = self.root.clone();
        let cluster = tokio::task::spawn_blocking(move || {
            cluster.kill().expect("stop the private cluster abruptly");
            std::thread::sleep(down_for);
            db::cluster::TempCluster::start(&root, 5432).expect("start it again")
        })
        .await
        .unwrap();
        self.cluster = Some(cluster);
    }
}

/// Starts PgBouncer (transaction mode, round-robin server connections) in front of `cluster`'s socket, on a free
/// loopback port, as the cluster's own user (PgBouncer refuses to run as root), and waits until it answers. After
/// a failed server login (the cluster is down) it tries again within a second (`server_login_retry`, 15 s by
/// default), as a managed pooler does, instead of refusing every client for 15 s.
async fn start_pgbouncer(root: &std::path::Path, cluster: &db::cluster::TempCluster) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = root.join("pgbouncer");
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host={socket} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
             pool_mode = transaction\nserver_round_robin = 1\nserver_login_retry = 1\ndefault_pool_size = 20\n\
             max_client_conn = 500\n\
             logfile = {log}\npidfile = {pid}\n",
            socket = cluster.socket_dir().display(),
            server_port = cluster.port(),
            users = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    for path in [dir.clone(), ini.clone(), dir.join("userlist.txt")] {
        db::cluster::give_to_server(&path).unwrap();
    }
    let as_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let mut command = if as_root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--", "pgbouncer"]);
        command
    } else {
        std::process::Command::new("pgbouncer")
    };
    let mut child = command
        .arg(&ini)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pgbouncer (the pooled suite needs Debian's pgbouncer)");
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    for _ in 0..100 {
        if db::connect_one(&url, "hattrick-testkit").await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "pgbouncer did not answer on port {port}: {}",
        std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
    );
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.pooler.take() {
            // PgBouncer itself (runuser's child when running as root), then the process started.
            let pid = std::fs::read_to_string(self.root.join("pgbouncer/pgbouncer.pid")).unwrap_or_default();
            for pid in [pid.trim().to_owned(), child.id().to_string()] {
                if !pid.is_empty() {
                    let _ = std::process::Command::new("kill").args(["-INT", &pid]).status();
                }
            }
            let _ = child.wait();
        }
        if let Some(cluster) = self.cluster.take() {
            let _ = cluster.destroy(&self.root);
        }
    }
}
