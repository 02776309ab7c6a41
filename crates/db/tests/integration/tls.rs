//! TLS as managed providers require it: `sslmode=require`, and `verify-full` with `sslrootcert`, against a server
//! with `ssl = on` and a certificate signed by a throwaway CA (made here with the machine's `openssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

use db::cluster::{TempCluster, give_to_server};

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, plus a second, unrelated CA.
fn certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=hattrick test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for file in ["server.key", "server.pem"] {
        give_to_server(&dir.join(file)).unwrap();
    }
}

struct Server {
    root: PathBuf,
    cluster: Option<TempCluster>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            cluster.destroy(&self.root).ok();
        }
    }
}

fn start() -> Server {
    let root = std::env::temp_dir().join(format!("hattrick-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root).unwrap();
    give_to_server(&root).unwrap();
    certificates(&root);
    let port = 20_000 + u16::try_from(std::process::id() % 20_000).unwrap();
    let cert = root.join("server.pem").display().to_string();
    let key = root.join("server.key").display().to_string();
    let cluster = TempCluster::start_with(
        &root,
        port,
        &[
            ("listen_addresses", "'127.0.0.1'"),
            ("ssl", "on"),
            ("ssl_cert_file", &format!("'{cert}'")),
            ("ssl_key_file", &format!("'{key}'")),
        ],
    )
    .expect("start a server with ssl = on");
    Server { root, cluster: Some(cluster), port }
}

/// Whether the session on `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, db::Error> {
    let pool = db::connect(url, &db::PoolSettings { max_connections: 1, ..Default::default() }).await?;
    Ok(db::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await?)
}

#[tokio::test]
async fn require_and_verify_full_connect_encrypted_and_a_foreign_ca_is_refused() {
    let server = start();
    let base = format!("postgres://postgres@localhost:{}/postgres", server.port);
    let ca = server.root.join("ca.pem").display().to_string();
    let other = server.root.join("other-ca.pem").display().to_string();

    assert!(encrypted(&format!("{base}?sslmode=require")).await.unwrap(), "sslmode=require encrypts");
    let verified = format!("{base}?sslmode=verify-full&sslrootcert={ca}");
    assert!(encrypted(&verified).await.unwrap(), "verify-full with the CA that signed the server's certificate");
    assert!(!encrypted(&format!("{base}?sslmode=disable")).await.unwrap(), "the check itself can say no");

    let error = encrypted(&format!("{base}?sslmode=verify-full&sslrootcert={other}")).await.unwrap_err();
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");

    // The migrator, which holds its lock on a connection of its own, works over verify-full too.
    let mut migrator = db::migrate::Migrator::connect(&verified).await.expect("migrator over TLS");
    assert!(!migrator.plan().await.unwrap().is_empty(), "an empty database needs hattrick's tables");
}
