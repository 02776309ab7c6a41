//! hattrick's pool: sqlx's, with one-shot statements made safe behind a transaction pooler.
//!
//! sqlx runs a statement with parameters in two exchanges, each ended by `Sync`: `Parse`+`Describe`, then
//! `Bind`+`Execute`. Outside a transaction a pooler in transaction mode hands the server connection back after the
//! first `Sync`, so the `Bind` may reach another server, where the unnamed statement is missing (`unnamed prepared
//! statement does not exist`) or, worse, is another client's. [`Pool`] therefore runs every one-shot statement with
//! parameters (`query.fetch_one(&pool)`) inside a transaction of its own: `BEGIN`, the statement, `COMMIT`, all on
//! one server connection. Statements without parameters go through the simple protocol (one message) as they are,
//! and statements inside a caller's transaction (`pool.begin()`) are already safe.
//!
//! The cost, two round trips per one-shot statement, is paid on direct connections too: one code path, tested
//! both ways (BENCHMARKS.md, "Statements through a pooler").

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{AssertSqlSafe, Either, Execute, Executor, PgPool, Postgres, SqlStr, Transaction};

/// A pool of connections to hattrick's database. Derefs to sqlx's [`PgPool`] for `begin`, `acquire`, `close`;
/// `&Pool` is an executor whose one-shot statements are safe behind a transaction pooler.
///
/// A pool made with [`Pool::with_statement_timeout`] shares the connections but runs every statement, one-shot
/// or in a transaction it begins, under `SET LOCAL statement_timeout` (session state would leak through a
/// pooler; transaction state does not).
#[derive(Clone)]
pub struct Pool {
    inner: PgPool,
    statement_timeout: Option<Duration>,
}

impl Pool {
    /// Wraps a sqlx pool.
    pub fn new(inner: PgPool) -> Self {
        Self { inner, statement_timeout: None }
    }

    /// The same connections, with every statement cancelled by the server after `timeout` (SQLSTATE 57014).
    pub fn with_statement_timeout(&self, timeout: Duration) -> Self {
        Self { inner: self.inner.clone(), statement_timeout: Some(timeout) }
    }

    /// Begins a transaction (under the pool's statement timeout, if it has one).
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        match self.statement_timeout {
            None => self.inner.begin().await,
            Some(timeout) => {
                let millis = timeout.as_millis().max(1);
                self.inner.begin_with(AssertSqlSafe(format!("BEGIN; SET LOCAL statement_timeout = {millis}"))).await
            }
        }
    }

    /// The sqlx pool underneath, for APIs that need an owned `PgPool`.
    pub fn inner(&self) -> &PgPool {
        &self.inner
    }
}

impl Deref for Pool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.inner
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("size", &self.inner.size()).field("idle", &self.inner.num_idle()).finish()
    }
}

/// A statement whose arguments were taken out already (to see whether it has any), never kept on the server.
struct Taken<E> {
    query: E,
    arguments: Option<PgArguments>,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Taken<E> {
    fn sql(self) -> SqlStr {
        self.query.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Splits `query` into its arguments and the rest.
fn take<'q, E: Execute<'q, Postgres>>(mut query: E) -> Result<Taken<E>, sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok(Taken { query, arguments })
}

impl<'c> Executor<'c> for &'c Pool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let taken = match take(query) {
            Ok(taken) => taken,
            Err(error) => return futures_util::stream::once(async { Err(error) }).boxed(),
        };
        if taken.arguments.is_none() && self.statement_timeout.is_none() {
            return self.inner.fetch_many(taken);
        }
        let pool = self.clone();
        futures_util::stream::once(async move {
            let mut tx = pool.begin().await?;
            let items: Vec<_> = tx.fetch_many(taken).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(items.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let taken = take(query)?;
            if taken.arguments.is_none() && pool.statement_timeout.is_none() {
                return pool.inner.fetch_optional(taken).await;
            }
            let mut tx = pool.begin().await?;
            let row = tx.fetch_optional(taken).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}

/// A connection whose every statement is unnamed, as [`Pool`]'s are: the executor for the `query!` family inside a
/// transaction (`query!(...).fetch_one(db::unnamed(&mut tx))`), whose statements sqlx would otherwise prepare under
/// a name kept on the server, which breaks behind a transaction pooler.
pub fn unnamed(connection: &mut sqlx::PgConnection) -> Unnamed<'_> {
    Unnamed(connection)
}

/// See [`unnamed`].
#[derive(Debug)]
pub struct Unnamed<'c>(&'c mut sqlx::PgConnection);

impl<'c> Executor<'c> for Unnamed<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match take(query) {
            Ok(taken) => self.0.fetch_many(taken),
            Err(error) => futures_util::stream::once(async { Err(error) }).boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match take(query) {
            Ok(taken) => self.0.fetch_optional(taken),
            Err(error) => Box::pin(async { Err(error) }),
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.describe(sql)
    }
}
