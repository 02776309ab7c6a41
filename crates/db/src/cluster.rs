//! A throwaway PostgreSQL cluster started from the machine's own binaries (`initdb`, `pg_ctl`).
//!
//! Tests use one when no server answers at `DATABASE_URL`, and `hattrick demo` uses one when no `DATABASE_URL` is
//! set. The cluster listens only on a Unix socket in its own directory, so it never collides with a server on the
//! machine. PostgreSQL refuses to run as root: run as root, the cluster's files are owned by, and its
//! processes run as, an unprivileged user (`postgres` when it exists, else `nobody`).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// A cluster in a directory of its own.
#[derive(Debug)]
pub struct TempCluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    owner: Option<(u32, u32)>,
    port: u16,
}

impl TempCluster {
    /// The database URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost:{}/{database}?host={}", self.port, self.socket_dir.display())
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server's Unix socket (a pooler in front of it connects there).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port the server's socket is named after.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Initialises a cluster under `root` unless one is there already, and starts it unless it is running.
    ///
    /// `root` is created if missing. The server is tuned for throwaway data (no fsync).
    pub fn start(root: &Path, port: u16) -> Result<Self> {
        Self::start_with(root, port, &[])
    }

    /// [`TempCluster::start`] with more server settings (`-c name=value`), for example a TCP address and TLS:
    /// `[("listen_addresses", "127.0.0.1"), ("ssl", "on"), ...]`. Files the server reads (a key) must belong to
    /// the user it runs as: see [`give_to_server`].
    pub fn start_with(root: &Path, port: u16, settings: &[(&str, &str)]) -> Result<Self> {
        let bin_dir = find_binaries()?;
        let owner = if running_as_root() { Some(unprivileged_user()?) } else { None };
        let data_dir = root.join("data");
        let socket_dir = root.join("socket");
        for dir in [root, &socket_dir] {
            std::fs::create_dir_all(dir).map_err(|source| io(format!("creating {}", dir.display()), source))?;
            chown(dir, owner)?;
        }
        let cluster = Self { data_dir, socket_dir, bin_dir, owner, port };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &cluster.data_dir.display().to_string(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )?;
        }
        if !cluster.is_running() {
            let mut options = format!(
                "-k {} -p {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=200 -c shared_buffers=128MB",
                cluster.socket_dir.display(),
                port
            );
            if !settings.iter().any(|(name, _)| *name == "listen_addresses") {
                options.push_str(" -c listen_addresses=''");
            }
            for (name, value) in settings {
                options.push_str(&format!(" -c {name}={value}"));
            }
            let log = root.join("postgres.log");
            cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    &cluster.data_dir.display().to_string(),
                    "-l",
                    &log.display().to_string(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )?;
        }
        Ok(cluster)
    }

    /// Whether the server of this data directory is running.
    pub fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args(["-D", &self.data_dir.display().to_string(), "status"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Stops the server (fast shutdown: open sessions are disconnected).
    pub fn stop(&self) -> Result<()> {
        if self.is_running() {
            self.run("pg_ctl", &["-D", &self.data_dir.display().to_string(), "-m", "fast", "-w", "stop"])?;
        }
        Ok(())
    }

    /// Stops the server abruptly, as a crash would (`immediate` shutdown): tests of recovery use it.
    pub fn kill(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data_dir.display().to_string(), "-m", "immediate", "-w", "stop"])
    }

    /// Stops the server and deletes everything under `root`.
    pub fn destroy(self, root: &Path) -> Result<()> {
        self.stop()?;
        std::fs::remove_dir_all(root).map_err(|source| io(format!("removing {}", root.display()), source))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command.env("LC_ALL", "C").env_remove("PGDATA").current_dir("/");
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .map_err(|source| io(format!("running {}", self.bin_dir.join(program).display()), source))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Cluster(format!(
                "{program} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

fn io(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

/// Finds the directory holding `initdb` and `pg_ctl`: on `PATH` first, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Result<PathBuf> {
    let on_path =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect::<Vec<_>>()).unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file()) {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        Error::Cluster(
            "no PostgreSQL binaries found: put initdb and pg_ctl on PATH or install the server package \
             (e.g. postgresql on Debian)"
                .to_owned(),
        )
    })
}

/// Hands `path` to the user a [`TempCluster`] runs as (the `postgres` or `nobody` user when running as root, else
/// nobody else: the file stays the caller's), so the server can read it.
pub fn give_to_server(path: &Path) -> Result<()> {
    let owner = if running_as_root() { Some(unprivileged_user()?) } else { None };
    chown(path, owner)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The uid and gid of `postgres`, else `nobody`, from `/etc/passwd`.
fn unprivileged_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| io("reading /etc/passwd".into(), source))?;
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name).then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
        })
    };
    find("postgres").or_else(|| find("nobody")).ok_or_else(|| {
        Error::Cluster("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as".into())
    })
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|source| io(format!("chown {}", path.display()), source))?;
    }
    Ok(())
}
