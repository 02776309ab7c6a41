//! What unnamed statements and one-shot transactions cost (BENCHMARKS.md, "Statements through a pooler").
//!
//! `cargo run --release -p db --example statements -- URL [URL ...]` runs, against each URL, the same one-shot
//! statement with one parameter 5,000 times, three ways: sqlx's default (a named statement cached per
//! connection: the baseline, which breaks behind a transaction pooler), an unnamed statement, and hattrick's way
//! (`db::query` on a `db::Pool`: unnamed, in a transaction of its own). It also times a batch-shaped transaction
//! (20 statements with parameters), the shape of a job's chunk. Prints microseconds per statement.
#![allow(clippy::disallowed_methods, clippy::print_stdout, missing_docs)]

use std::time::Instant;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const ROUNDS: u32 = 5_000;
const BATCH: u32 = 20;

async fn per_statement<F, Fut>(mut run: F) -> f64
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..200 {
        run(i).await;
    }
    let started = Instant::now();
    for i in 0..i64::from(ROUNDS) {
        run(i).await;
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        return Err("usage: statements URL [URL ...]".into());
    }
    // A statement the server answers at once, so the figures are round trips and parsing, not execution.
    const SQL: &str = "SELECT $1::bigint + 1";
    for url in urls {
        let pool = db::connect(&url, &db::PoolSettings { max_connections: 1, ..Default::default() }).await?;
        println!("{}", db::redact_url(&url));
        // sqlx's defaults (a named, cached statement) only work on a direct connection: PgBouncer refuses their
        // `extra_float_digits` startup parameter, and would mix up the statements. Through a pooler they are skipped.
        let options = url.parse::<PgConnectOptions>()?;
        let named: Option<PgPool> = PgPoolOptions::new().max_connections(1).connect_with(options).await.ok();
        let direct = named.is_some();
        let named = named.unwrap_or_else(|| pool.inner().clone());
        if direct {
            let us = per_statement(|i| {
                let named = named.clone();
                async move {
                    let _: i64 = sqlx::query_scalar(SQL).bind(i % 7).fetch_one(&named).await.unwrap();
                }
            })
            .await;
            println!("  named, cached (sqlx default)      {us:8.1} us/statement");
        }
        let us = per_statement(|i| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.unwrap();
                let _: i64 = db::query_scalar(SQL).bind(i % 7).fetch_one(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        })
        .await;
        println!("  unnamed, in a caller's transaction {us:8.1} us/statement (with its BEGIN/COMMIT)");
        let us = per_statement(|i| {
            let pool = pool.clone();
            async move {
                let _: i64 = db::query_scalar(SQL).bind(i % 7).fetch_one(&pool).await.unwrap();
            }
        })
        .await;
        println!("  db::query on db::Pool (one-shot)   {us:8.1} us/statement");
        let us = per_statement(|i| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.unwrap();
                for j in 0..i64::from(BATCH) {
                    let _: i64 = db::query_scalar(SQL).bind((i + j) % 7).fetch_one(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        })
        .await
            / f64::from(BATCH);
        println!("  unnamed, {BATCH} per transaction        {us:8.1} us/statement");
        if direct {
            let us = per_statement(|i| {
                let named = named.clone();
                async move {
                    let mut tx = named.begin().await.unwrap();
                    for j in 0..i64::from(BATCH) {
                        let _: i64 = sqlx::query_scalar(SQL).bind((i + j) % 7).fetch_one(&mut *tx).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                }
            })
            .await
                / f64::from(BATCH);
            println!("  named, {BATCH} per transaction          {us:8.1} us/statement");
        }
    }
    Ok(())
}
