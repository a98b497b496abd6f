//! The connections under the store, behind one small query API both engines answer: SQLite through rusqlite,
//! run on the calling thread, and PostgreSQL through sqlx.
//!
//! SQLite runs in this process, so a statement is a few microseconds of work: handing each one to a connection
//! thread and waking the request again (as an async driver must) cost more than the statement, and put thread
//! switches at a third of a read's time (docs/benchmarks.md). A statement holds a runtime thread no longer than
//! the same work held a connection thread; the few long ones (a backup) run on the blocking pool.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sqlx::postgres::PgRow;
use sqlx::{Column as _, PgPool, Postgres, Row as _, TypeInfo as _, ValueRef as _};
use tokio::sync::OwnedMutexGuard;

use crate::error::{Error, Result};

/// Reader connections kept open between statements; more are opened while more threads read at once.
const IDLE_READERS: usize = 8;
/// Prepared statements kept per SQLite connection.
const STATEMENT_CACHE: usize = 256;

/// Where statements run.
#[derive(Clone)]
pub(super) enum Db {
    /// SQLite's reader connections, each taken for one statement.
    SqliteRead(Arc<Readers>),
    /// SQLite's one writer connection: SQLite allows one writer at a time, and waiting here is cheaper and
    /// fairer than its lock retries.
    SqliteWrite(Arc<tokio::sync::Mutex<Connection>>),
    Postgres(PgPool),
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub(super) enum Tx {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

pub(super) struct SqliteTx {
    conn: OwnedMutexGuard<Connection>,
    open: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rollback failed");
        }
    }
}

impl Db {
    /// Starts a transaction with `begin` (`BEGIN IMMEDIATE` on SQLite takes the write lock at once).
    pub(super) async fn begin(&self, begin: &'static str) -> Result<Tx> {
        match self {
            Db::SqliteWrite(writer) => {
                let conn = writer.clone().lock_owned().await;
                busy(|| conn.execute_batch(begin))?;
                Ok(Tx::Sqlite(SqliteTx { conn, open: true }))
            }
            Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin_with(begin).await?)),
            Db::SqliteRead(_) => Err(Error::Store("a transaction was begun on a reader".into())),
        }
    }

    /// Runs `f` on a reader connection on the blocking pool: for statements that may take seconds.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let Db::SqliteRead(readers) = self else {
            return Err(Error::Store("only SQLite's readers run blocking work".into()));
        };
        let readers = readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| Error::Store(format!("blocking task failed: {e}")))?
    }
}

impl Tx {
    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(mut tx) => {
                busy(|| tx.conn.execute_batch("COMMIT"))?;
                tx.open = false;
            }
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Runs what may wait on the writer connection: taking the write lock while another process writes, and a
/// commit that checkpoints, which waits for the disk. On a multi-threaded runtime the thread first hands its
/// queued tasks to another, so they are not held up behind it (under CI load a read queued there went
/// unanswered for a third of a second). Only there: the hand-off per statement made a create 20% dearer.
fn busy<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// SQLite's reader connections.
pub(super) struct Readers {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: &str) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle reader (opening one when none is idle) and keeps the reader for the next.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_sqlite(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

/// Opens a SQLite connection with our settings. WAL lets readers run beside the one writer; synchronous=NORMAL in
/// WAL keeps every commit across a process crash (kill -9), only an OS crash can lose the last transactions.
/// Every commit (audit records included) empties the other connections' page caches; mapped pages are re-read
/// from the OS cache without a copy.
pub(super) fn open_sqlite(path: &str, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 1073741824;")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(super) enum Bind {
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    Text(String),
    OptText(Option<String>),
}

impl From<i64> for Bind {
    fn from(v: i64) -> Bind {
        Bind::Int(v)
    }
}

impl From<Option<i64>> for Bind {
    fn from(v: Option<i64>) -> Bind {
        Bind::OptInt(v)
    }
}

impl From<&str> for Bind {
    fn from(v: &str) -> Bind {
        Bind::Text(v.to_owned())
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Bind {
        Bind::Text(v)
    }
}

impl From<Option<&str>> for Bind {
    fn from(v: Option<&str>) -> Bind {
        Bind::OptText(v.map(str::to_owned))
    }
}

impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Bind::Int(v) => ValueRef::Integer(*v),
            Bind::Float(v) => ValueRef::Real(*v),
            Bind::Text(v) => ValueRef::Text(v.as_bytes()),
            Bind::OptInt(v) => v.map_or(ValueRef::Null, ValueRef::Integer),
            Bind::OptText(v) => v.as_deref().map_or(ValueRef::Null, |s| ValueRef::Text(s.as_bytes())),
        }))
    }
}

/// What a statement runs on: a pool or an open transaction.
pub(super) enum On<'e> {
    Db(&'e Db),
    Tx(&'e mut Tx),
}

impl<'e> From<&'e Db> for On<'e> {
    fn from(db: &'e Db) -> On<'e> {
        On::Db(db)
    }
}

impl<'e> From<&'e mut Tx> for On<'e> {
    fn from(tx: &'e mut Tx) -> On<'e> {
        On::Tx(tx)
    }
}

/// A statement: `$n` placeholders (or SQLite's anonymous `?`), bound in order.
pub(super) struct Stmt {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
    pub(super) persistent: bool,
}

/// A statement to bind and run.
pub(super) fn query(text: &str) -> Stmt {
    Stmt::new(text.to_owned(), Vec::new())
}

#[derive(Clone, Copy, PartialEq)]
enum Fetch {
    All,
    First,
    Nothing,
}

/// What a statement that returns no rows did.
pub(super) struct Done(u64);

impl Done {
    pub(super) fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl Stmt {
    pub(super) fn new(text: String, binds: Vec<Bind>) -> Stmt {
        Stmt {
            text,
            binds,
            persistent: true,
        }
    }

    pub(super) fn bind(mut self, value: impl Into<Bind>) -> Stmt {
        self.binds.push(value.into());
        self
    }

    pub(super) async fn execute<'e>(&self, on: impl Into<On<'e>>) -> Result<Done> {
        Ok(Done(self.run(on.into(), Fetch::Nothing).await?.1))
    }

    pub(super) async fn fetch_all<'e>(&self, on: impl Into<On<'e>>) -> Result<Vec<DbRow>> {
        Ok(self.run(on.into(), Fetch::All).await?.0)
    }

    pub(super) async fn fetch_optional<'e>(&self, on: impl Into<On<'e>>) -> Result<Option<DbRow>> {
        Ok(self.run(on.into(), Fetch::First).await?.0.pop())
    }

    pub(super) async fn fetch_one<'e>(&self, on: impl Into<On<'e>>) -> Result<DbRow> {
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| Error::Store("the statement returned no row".into()))
    }

    async fn run(&self, on: On<'_>, fetch: Fetch) -> Result<(Vec<DbRow>, u64)> {
        match on {
            On::Db(Db::SqliteRead(readers)) => readers.with(|conn| self.run_sqlite(conn, fetch)),
            On::Db(Db::SqliteWrite(writer)) => {
                let conn = writer.lock().await;
                busy(|| self.run_sqlite(&conn, fetch))
            }
            // Inside a transaction a statement only works: waiting is at its begin and commit.
            On::Tx(Tx::Sqlite(tx)) => self.run_sqlite(&tx.conn, fetch),
            On::Db(Db::Postgres(pool)) => self.run_postgres(pool, fetch).await,
            On::Tx(Tx::Postgres(tx)) => self.run_postgres(&mut **tx, fetch).await,
        }
    }

    fn run_sqlite(&self, conn: &Connection, fetch: Fetch) -> Result<(Vec<DbRow>, u64)> {
        // `$n` is a named parameter to SQLite, numbered by first appearance; `?n` is the nth.
        let text = if self.text.contains('$') {
            self.text.replace('$', "?")
        } else {
            self.text.clone()
        };
        if self.persistent {
            self.step(&mut *conn.prepare_cached(&text)?, conn, fetch)
        } else {
            // Not kept: a one-off statement would push a repeated one out of the cache.
            self.step(&mut conn.prepare(&text)?, conn, fetch)
        }
    }

    fn step(&self, stmt: &mut rusqlite::Statement<'_>, conn: &Connection, fetch: Fetch) -> Result<(Vec<DbRow>, u64)> {
        for (i, bind) in self.binds.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, bind)?;
        }
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            if fetch == Fetch::Nothing {
                continue;
            }
            let values = (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Real(v) => Value::Real(v),
                        // Validated, not replaced: the server writes only UTF-8, and the strict check is the
                        // faster one (the lossy one was 2.7% of a lab search, over its page's bodies).
                        ValueRef::Text(v) => Value::Text(
                            std::str::from_utf8(v)
                                .map_err(|e| Error::Store(format!("column {i} is not UTF-8: {e}")))?
                                .to_owned(),
                        ),
                        ValueRef::Blob(_) => return Err(Error::Store(format!("column {i} holds a blob"))),
                    })
                })
                .collect::<Result<_>>()?;
            out.push(DbRow(values));
            if fetch == Fetch::First {
                break;
            }
        }
        Ok((out, conn.changes()))
    }

    async fn run_postgres<'c>(
        &self,
        on: impl sqlx::Executor<'c, Database = Postgres>,
        fetch: Fetch,
    ) -> Result<(Vec<DbRow>, u64)> {
        // The text is built only from our own fragments; every value is a bind.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.as_str())).persistent(self.persistent);
        for b in &self.binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::OptInt(v) => q.bind(*v),
                Bind::Float(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.as_str()),
                Bind::OptText(v) => q.bind(v.as_deref()),
            };
        }
        Ok(match fetch {
            Fetch::Nothing => (Vec::new(), q.execute(on).await?.rows_affected()),
            Fetch::First => (
                q.fetch_optional(on).await?.iter().map(pg_row).collect::<Result<_>>()?,
                0,
            ),
            Fetch::All => (q.fetch_all(on).await?.iter().map(pg_row).collect::<Result<_>>()?, 0),
        })
    }
}

/// A PostgreSQL row as plain values; our columns are only integers, floats and text.
fn pg_row(row: &PgRow) -> Result<DbRow> {
    let values = row
        .columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            if row.try_get_raw(i)?.is_null() {
                return Ok(Value::Null);
            }
            Ok(match column.type_info().name() {
                "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
                "INT4" => Value::Int(row.try_get::<i32, _>(i)?.into()),
                "INT2" => Value::Int(row.try_get::<i16, _>(i)?.into()),
                "BOOL" => Value::Int(row.try_get::<bool, _>(i)?.into()),
                "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
                "FLOAT4" => Value::Real(row.try_get::<f32, _>(i)?.into()),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::Text(row.try_get::<String, _>(i)?),
                other => {
                    return Err(Error::Store(format!(
                        "column {} has the unexpected type {other}",
                        column.name()
                    )));
                }
            })
        })
        .collect::<Result<_>>()?;
    Ok(DbRow(values))
}

pub(super) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A result row.
pub(super) struct DbRow(Vec<Value>);

impl DbRow {
    /// Column `i` as a `T`; a value of another kind is an error, not a conversion.
    pub(super) fn try_get<T: FromValue>(&self, i: usize) -> Result<T> {
        let value = self
            .0
            .get(i)
            .ok_or_else(|| Error::Store(format!("no column {i} in the row")))?;
        T::from_value(value).ok_or_else(|| Error::Store(format!("column {i} is not {}", T::KIND)))
    }
}

pub(super) trait FromValue: Sized {
    const KIND: &'static str;
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const KIND: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<i64> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    const KIND: &'static str = "a number";
    fn from_value(value: &Value) -> Option<f64> {
        match value {
            Value::Real(v) => Some(*v),
            // SQLite stores a whole REAL as an integer when it can.
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    const KIND: &'static str = "text";
    fn from_value(value: &Value) -> Option<String> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const KIND: &'static str = T::KIND;
    fn from_value(value: &Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}
