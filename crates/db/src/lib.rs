//! hattrick's connection to PostgreSQL.
//!
//! Three things live here because every other crate needs them and none of them knows the domain:
//! - [`connect`]: a pool whose every connection runs in UTC (docs/schema.md), so `timestamp without time zone`
//!   columns of a legacy database are read and bound as UTC;
//! - [`migrate`]: the desired schema (`migrations/schema.sql`) and the migrator that brings any database, fresh or
//!   legacy, to it by adding only what is missing;
//! - [`cluster`]: a throwaway PostgreSQL cluster started from the machine's binaries, for tests and the demo when
//!   no server is reachable.

pub mod cluster;
pub mod migrate;
mod pool;
mod statement;

pub use pool::{Pool, Unnamed, unnamed};
pub use statement::{
    RUN_ROWS_KEPT, Reading, SMALL_RUN_ROWS, clear_run_rows, purge_dead_run_rows, query, query_as, query_scalar,
    stale_statistics,
};

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The URL used when neither `DATABASE_URL` nor the configuration names one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A query or connection failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// The migrator found a database it must not touch, or a step failed.
    #[error("migration: {0}")]
    Migration(String),
    /// Starting or stopping a throwaway cluster failed.
    #[error("throwaway cluster: {0}")]
    Cluster(String),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to open connections.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Largest number of connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a connection before giving up.
    pub acquire_timeout: Duration,
    /// Sent to the server as `application_name`, so operators can tell hattrick's sessions apart.
    pub application_name: String,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(10), application_name: "hattrick".to_owned() }
    }
}

/// Parses a PostgreSQL URL into connect options that work directly and through a pooler in transaction mode.
///
/// - The session time zone is UTC: sqlx sends `TimeZone=UTC` as a startup parameter, which PgBouncer tracks per
///   client and restores on every server connection it hands out (an `options=-c ...` parameter would be refused
///   by PgBouncer 1.18).
/// - `extra_float_digits` is not sent (PgBouncer refuses unknown startup parameters unless told to ignore them;
///   hattrick reads floats in binary).
/// - No statement cache: statements are unnamed ([`query`]), so none is kept on a server connection.
pub fn connect_options(url: &str, application_name: &str) -> Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
    Ok(options
        .extra_float_digits(None)
        .statement_cache_capacity(0)
        .application_name(application_name)
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(5)))
}

/// Opens a pool on `url`; every connection runs with `TimeZone=UTC`, directly or through a transaction pooler.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Pool> {
    let options = connect_options(url, &settings.application_name)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await?;
    Ok(Pool::new(pool))
}

/// Opens a single connection on `url` (used by the migrator, which needs one session for its advisory lock).
pub async fn connect_one(url: &str, application_name: &str) -> Result<sqlx::PgConnection> {
    Ok(connect_options(url, application_name)?.connect().await?)
}

/// `url` pointing at `database` instead (its query string, such as a socket `host`, kept).
pub fn with_database(url: &str, database: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    match path_start {
        Some(slash) => format!("{}/{database}{query}", &base[..slash]),
        None => format!("{base}/{database}{query}"),
    }
}

/// Returns `url` with its secrets replaced by `***`, for logs and printed configuration: the password in the
/// authority (even one holding `/`, `?` or `@`, which users often leave unescaped) and the `password` and
/// `sslpassword` parameters.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    // The user information ends at the last `@`: everything between the user's `:` and it is hidden, so no
    // password leaks whatever it holds (an `@` in a query value hides a little more than needed, never less).
    let at = rest.rfind('@');
    let mut out = match at {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let after_userinfo = at.map_or(scheme_end + 3, |at| out.len() - (rest.len() - at));
    if let Some(query_start) = out[after_userinfo..].find('?').map(|q| q + after_userinfo) {
        let query: Vec<String> = out[query_start + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") => {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{}?{}", &out[..query_start], query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_database_replaces_the_database_name() {
        assert_eq!(super::with_database("postgres://p@h:5432/postgres", "x"), "postgres://p@h:5432/x");
        assert_eq!(
            super::with_database("postgres://postgres@localhost:5432/postgres?host=/tmp/s", "x"),
            "postgres://postgres@localhost:5432/x?host=/tmp/s"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }

    use super::redact_url;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&password=x"),
            "postgres://h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn a_password_with_url_characters_and_an_ssl_key_password_are_redacted() {
        assert_eq!(redact_url("postgres://u:pa/ss@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u:p@ss/w?rd@h/db?sslmode=require"), "postgres://u:***@h/db?sslmode=require");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=verify-full&sslpassword=k3y&sslrootcert=/ca.pem"),
            "postgres://u@h/db?sslmode=verify-full&sslpassword=***&sslrootcert=/ca.pem"
        );
        for url in ["postgres://u:pa/ss@h/db", "postgres://u:p@ss/w?rd@h/db", "postgres://u:a?b@h/db?x=1"] {
            let redacted = redact_url(url);
            assert!(
                !redacted.contains("pa/ss") && !redacted.contains("w?rd") && !redacted.contains("a?b"),
                "{redacted}"
            );
        }
    }
}
