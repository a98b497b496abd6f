//! The [`Store`] on SQL: the SQL is written once, with `$n` placeholders both engines accept, and run through
//! [`db`] (rusqlite for SQLite, sqlx for PostgreSQL); what differs (connection setup, the single SQLite writer,
//! migrations) is decided here in [`connect`].

use std::path::Path;
use std::sync::Arc;

mod accounts;
mod build;
mod db;
mod oauth;
mod walk;
mod write;

use self::walk::Walk;

use self::build::{
    HISTORY_COLUMNS, ROW_COLUMNS, Sql, clauses, fetch_count, fetch_optional_row, fetch_rows, grant_filter,
    history_grant_filter, leads, order_by, row_grant_filter, scope_filter, to_row,
};

use async_trait::async_trait;
use rusqlite::OpenFlags;
use sqlx::Executor as _;
use sqlx::postgres::PgPoolOptions;

use self::db::{Db, query};

use super::accounts::{
    Account, AccountToken, OutboxMail, ProxyGrantRow, Redeem, SessionRow, ShareLink, ShareRow, ThrottleRow,
    TokenPurpose,
};
use super::oauth::{ClientRow, CodeRow, ConnectedApp, LaunchRow, TokenRow};
use super::{
    AccountKey, CLINICAL_DATE_PARAMS, CompartmentFilter, Head, HistoryQuery, MakeSecret, Query, Row, SharedStore,
    Store, VersionWrite,
};
use crate::access::Grant;
use crate::error::{Error, Result};

/// Opens (creating where needed) the database at `url`, runs the engine's migrations and returns the store.
pub async fn connect(url: &str) -> Result<SharedStore> {
    let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .before_acquire(check_if_idle)
            .after_connect(postgres_setup)
            .connect(url)
            .await?;
        sqlx::migrate!("src/store/postgres/migrations")
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        SqlStore {
            engine: "postgres",
            begin: "BEGIN",
            read: Db::Postgres(pool.clone()),
            write: Db::Postgres(pool),
            journal: None,
            _lock: None,
        }
    } else if let Some(path) = sqlite_path(url) {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock = lock_file(path)?;
        lock.try_lock_shared()
            .map_err(|_| Error::Conflict(format!("{path} is being restored; try again when it is done")))?;
        let writer = db::open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        writer.execute_batch("PRAGMA journal_mode = WAL")?;
        migrate_sqlite(&writer)?;
        SqlStore {
            engine: "sqlite",
            begin: "BEGIN IMMEDIATE",
            read: Db::SqliteRead(Arc::new(db::Readers::new(path))),
            write: Db::SqliteWrite(Arc::new(tokio::sync::Mutex::new(writer))),
            journal: Some(format!("{path}-audit").into()),
            _lock: Some(lock),
        }
    } else {
        return Err(Error::Store(format!(
            "unsupported database URL (expected sqlite://PATH or postgres://...): {}",
            url.split('@').next_back().unwrap_or(url)
        )));
    };
    Ok(Arc::new(store))
}

/// SQLite's migrations, applied the way sqlx applies PostgreSQL's (and recorded in the same table, so a
/// database made by an earlier CareSpace, which ran them through sqlx, carries on): each in a transaction, and
/// one that was applied must not have changed since.
fn migrate_sqlite(conn: &rusqlite::Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )?;
    let applied: Vec<(i64, bool, Vec<u8>)> = conn
        .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let failed = |why: String| Error::Store(format!("migration failed: {why}"));
    for migration in SQLITE_MIGRATIONS.iter().filter(|m| m.migration_type.is_up_migration()) {
        match applied.iter().find(|(version, ..)| *version == migration.version) {
            Some((version, false, _)) => return Err(failed(format!("migration {version} was left partly applied"))),
            Some((version, true, checksum)) if checksum[..] != migration.checksum[..] => {
                return Err(failed(format!("migration {version} was changed after it was applied")));
            }
            Some(_) => {}
            None => {
                let started = std::time::Instant::now();
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {}", migration.sql.as_str()))
                    .and_then(|()| {
                        conn.execute(
                            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                             VALUES (?1, ?2, TRUE, ?3, ?4)",
                            rusqlite::params![
                                migration.version,
                                migration.description.as_ref(),
                                migration.checksum.as_ref(),
                                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX),
                            ],
                        )?;
                        conn.execute_batch("COMMIT")
                    })
                    .map_err(|e| {
                        let _ = conn.execute_batch("ROLLBACK"); // nothing to undo when BEGIN itself failed
                        failed(format!("{} {}: {e}", migration.version, migration.description))
                    })?;
            }
        }
    }
    Ok(())
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/sqlite/migrations");

/// Checks a PostgreSQL connection taken from the pool only when it has been idle a while (the database may
/// have restarted or dropped it since): checking every time cost a round trip per statement.
fn check_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_core::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for > std::time::Duration::from_secs(10) {
            sqlx::Connection::ping(conn).await?;
        }
        Ok(true)
    })
}

/// Per-connection PostgreSQL settings. No JIT: our statements are short, and on a table whose statistics lag
/// a bulk load the planner's estimates pass the JIT threshold, so each lookup compiled for 100 ms (the
/// generator fell from ~1,500 to ~50 resources/s past a million resources, docs/benchmarks.md).
fn postgres_setup(
    conn: &mut sqlx::PgConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_core::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // A PostgreSQL-compatible engine without JIT (before 11, or a distributed one) has nothing to turn off.
        if let Err(e) = conn.execute("SET jit = off").await {
            tracing::debug!(error = %e, "jit setting not applied");
        }
        Ok(())
    })
}

/// The file a `sqlite:` database URL names.
fn sqlite_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(path.split('?').next().unwrap_or(path))
}

/// `<db>.lock`: held shared by every process using the database, exclusively by a restore.
fn lock_file(db: &str) -> Result<std::fs::File> {
    let path = format!("{db}.lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Store(format!("cannot open {path}: {e}")))
}

/// Replaces the SQLite database at `url` with a backup made by [`Store::backup`]. Refuses while any process
/// uses the database, and refuses files that are not a CareSpace database of this or an older version.
pub async fn restore(url: &str, backup: &Path) -> Result<()> {
    let Some(path) = sqlite_path(url) else {
        return Err(Error::NotSupported(
            "restore is for the SQLite default; restore PostgreSQL with pg_restore".into(),
        ));
    };
    let lock = lock_file(path)?;
    lock.try_lock()
        .map_err(|_| Error::Conflict(format!("CareSpace is using {path}: stop it before restoring")))?;
    check_backup(backup).await?;
    let staged = format!("{path}.restoring");
    let io = |e: std::io::Error| Error::Store(format!("restore failed: {e}"));
    std::fs::copy(backup, &staged).map_err(io)?;
    std::fs::File::open(&staged).and_then(|f| f.sync_all()).map_err(io)?;
    // The old database's write-ahead log must not be replayed into the restored file.
    for suffix in ["-wal", "-shm"] {
        match std::fs::remove_file(format!("{path}{suffix}")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    std::fs::rename(&staged, path).map_err(io)
}

/// A backup is a SQLite file with our tables, migrated no further than this build knows.
async fn check_backup(backup: &Path) -> Result<()> {
    let not_ours = |why: String| {
        Error::invalid(crate::error::Issue::new(
            "invalid",
            format!("{} is not a CareSpace backup: {why}", backup.display()),
        ))
    };
    if !backup.is_file() {
        return Err(not_ours("no such file".into()));
    }
    let conn = db::open_sqlite(&backup.display().to_string(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| not_ours(e.to_string()))?;
    let newest: i64 = conn
        .query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| r.get(0))
        .map_err(|e| not_ours(e.to_string()))?;
    conn.query_row("SELECT COUNT(*) FROM resources", [], |r| r.get::<_, i64>(0))
        .map_err(|e| not_ours(e.to_string()))?;
    drop(conn);
    let known = SQLITE_MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if newest > known {
        return Err(not_ours(format!(
            "it was made by a newer CareSpace (schema {newest}, this one knows {known})"
        )));
    }
    Ok(())
}

fn migrate_error(err: sqlx::migrate::MigrateError) -> Error {
    Error::Store(format!("migration failed: {err}"))
}

struct SqlStore {
    engine: &'static str,
    read: Db,
    write: Db,
    /// How a write transaction starts: SQLite takes the write lock at once (`IMMEDIATE`), so a transaction
    /// that read first never fails to upgrade when another process wrote in between.
    begin: &'static str,
    /// SQLite: where reads' audit records are journaled.
    journal: Option<std::path::PathBuf>,
    /// SQLite: the shared lock on `<db>.lock` every process using the file holds while it runs.
    _lock: Option<std::fs::File>,
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        self.engine
    }

    fn audit_journal(&self) -> Option<&Path> {
        self.journal.as_deref()
    }

    async fn backup(&self, to: &Path) -> Result<()> {
        if self.engine != "sqlite" {
            return Err(Error::NotSupported(
                "back up PostgreSQL with pg_dump (see docs/operations.md)".into(),
            ));
        }
        if to.exists() {
            return Err(Error::Conflict(format!(
                "{} exists already; choose a new file",
                to.display()
            )));
        }
        // VACUUM INTO writes a consistent, compact copy while the server keeps serving.
        let to = to.display().to_string();
        self.read
            .blocking(move |conn| Ok(conn.execute("VACUUM INTO ?1", [to]).map(drop)?))
            .await
    }

    async fn ping(&self) -> Result<()> {
        query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn analyze(&self) -> Result<()> {
        if self.engine == "postgres" {
            query("ANALYZE").execute(&self.write).await?;
        }
        Ok(())
    }

    async fn shared_secret(&self, name: &str, make: MakeSecret, now: i64) -> Result<String> {
        let stored = |pool| async move {
            query("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
        };
        if let Some(row) = stored(&self.write).await? {
            return row.try_get(0);
        }
        query("INSERT INTO server_secrets (name, value, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(make()?)
            .bind(now)
            .execute(&self.write)
            .await?;
        let row = stored(&self.write)
            .await?
            .ok_or_else(|| Error::Store(format!("secret {name} vanished")))?;
        Ok(row.try_get(0)?)
    }

    async fn head(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Head>> {
        self.timed("head", async {
            let mut sql = Sql::new(self.engine);
            sql.push("SELECT r.version, r.deleted, (SELECT COUNT(*) FROM compartments c WHERE c.rid = r.rid), ");
            match grant.patients() {
                Some(patients) => {
                    sql.push("(SELECT COUNT(*) FROM compartments c WHERE c.rid = r.rid AND c.patient IN ")
                        .list(patients)
                        .push(")");
                }
                None => {
                    sql.push("0");
                }
            }
            sql.push(" FROM resources r WHERE r.rtype = ").text(rtype);
            sql.push(" AND r.id = ").text(id);
            let row = sql.query().fetch_optional(&self.read).await?;
            row.map(|r| {
                let (all, mine): (i64, i64) = (r.try_get(2)?, r.try_get(3)?);
                Ok(Head {
                    version: r.try_get(0)?,
                    deleted: r.try_get::<i64>(1)? != 0,
                    visible: grant.patients().is_none() || (all > 0 && mine > 0),
                })
            })
            .transpose()
        })
        .await
    }

    async fn write(&self, grant: &Grant, writes: &[VersionWrite]) -> Result<()> {
        self.timed("write", self.write_tx(grant, writes)).await
    }

    async fn read(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Row>> {
        self.timed("read", async {
            let mut sql = Sql::new(self.engine);
            sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.rtype = "))
                .text(rtype);
            sql.push(" AND r.id = ").text(id);
            row_grant_filter(&mut sql, grant);
            fetch_optional_row(&self.read, &sql).await
        })
        .await
    }

    async fn read_many(&self, grant: &Grant, refs: &[(String, String)]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for chunk in refs.chunks(200) {
            let mut sql = Sql::new(self.engine);
            sql.push(&format!(
                "SELECT {ROW_COLUMNS} FROM resources r WHERE r.deleted = 0 AND ("
            ));
            for (i, (rtype, id)) in chunk.iter().enumerate() {
                sql.push(if i > 0 { " OR (r.rtype = " } else { "(r.rtype = " })
                    .text(rtype);
                sql.push(" AND r.id = ").text(id).push(")");
            }
            sql.push(")");
            row_grant_filter(&mut sql, grant);
            out.extend(self.timed("read_many", fetch_rows(&self.read, &sql)).await?);
        }
        Ok(out)
    }

    async fn vread(&self, grant: &Grant, rtype: &str, id: &str, version: i64) -> Result<Option<Row>> {
        self.timed("vread", async {
            let mut sql = Sql::new(self.engine);
            sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.rtype = "))
                .text(rtype);
            sql.push(" AND r.id = ").text(id).push(" AND r.version = ").int(version);
            row_grant_filter(&mut sql, grant);
            sql.push(&format!(" UNION ALL SELECT {HISTORY_COLUMNS} FROM resource_history h "));
            sql.push("JOIN resources r ON r.rid = h.rid WHERE r.rtype = ")
                .text(rtype);
            sql.push(" AND r.id = ").text(id).push(" AND h.version = ").int(version);
            history_grant_filter(&mut sql, grant);
            fetch_optional_row(&self.read, &sql).await
        })
        .await
    }

    async fn history(&self, grant: &Grant, query: &HistoryQuery) -> Result<(Vec<Row>, i64)> {
        // `current`: the head rows (filtered by today's compartments) or superseded ones (by theirs then).
        let filter = |sql: &mut Sql, updated: &str, current: bool| {
            sql.push(" WHERE 1 = 1");
            if let Some(rtype) = &query.rtype {
                sql.push(" AND r.rtype = ").text(rtype);
            }
            if let Some(id) = &query.id {
                sql.push(" AND r.id = ").text(id);
            }
            if let Some(since) = query.since {
                sql.push(&format!(" AND {updated} >= ")).int(since);
            }
            if current {
                grant_filter(sql, grant, "r", query.rtype.as_deref());
            } else {
                history_grant_filter(sql, grant);
            }
        };
        let union = |sql: &mut Sql| {
            sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r"));
            filter(sql, "r.last_updated", true);
            sql.push(&format!(" UNION ALL SELECT {HISTORY_COLUMNS} "));
            sql.push("FROM resource_history h JOIN resources r ON r.rid = h.rid");
            filter(sql, "h.last_updated", false);
        };
        let mut page = Sql::new(self.engine);
        page.push("SELECT * FROM (");
        union(&mut page);
        page.push(") r ORDER BY r.last_updated DESC, r.rtype, r.id, r.version DESC")
            .limit(query.count, query.offset);
        let mut count = Sql::new(self.engine);
        count.push("SELECT COUNT(*) FROM (");
        union(&mut count);
        count.push(") r");
        self.timed("history", async {
            Ok((
                fetch_rows(&self.read, &page).await?,
                fetch_count(&self.read, &count).await?,
            ))
        })
        .await
    }

    async fn search(&self, grant: &Grant, query: &Query) -> Result<(Vec<Row>, Option<i64>)> {
        // With an index lookup to start from, leave the type to it: a type condition on `resources` would let
        // SQLite scan every resource of the type instead of fetching the few matches by rid.
        let indexed = query.clauses.iter().any(leads);
        let filter = |sql: &mut Sql| {
            sql.push(" FROM resources r WHERE r.deleted = 0");
            if !indexed {
                sql.push(" AND r.rtype = ").text(&query.rtype);
            }
            grant_filter(sql, grant, "r", Some(&query.rtype));
            clauses(sql, "r.rid", &query.clauses, query, grant);
        };
        let count = || {
            let mut count = Sql::new(self.engine);
            count.push("SELECT COUNT(*)");
            filter(&mut count);
            count
        };
        let ranked = |sql: &mut Sql, columns: &str| {
            sql.push(&format!("SELECT {columns}"));
            filter(sql);
            order_by(sql, query);
            sql.limit(query.count, query.offset);
        };
        self.timed("search", async {
            if query.count == 0 {
                let total = if query.total {
                    Some(fetch_count(&self.read, &count()).await?)
                } else {
                    None
                };
                return Ok((Vec::new(), total));
            }
            if let Some(walk) = Walk::of(self.engine, grant, query) {
                return self.search_by_date(grant, query, walk, &filter, &count).await;
            }
            let mut page = Sql::new(self.engine);
            if !query.total {
                ranked(&mut page, ROW_COLUMNS);
                return Ok((fetch_rows(&self.read, &page).await?, None));
            }
            // The page and the total in one statement: the matches are ranked carrying only their rid and
            // counted by the window, and only the page's rows are read whole. A separate COUNT evaluated every
            // condition a second time (a quarter of a lab search's SQL: docs/benchmarks.md).
            page.push("WITH page AS (");
            ranked(&mut page, "r.rid, COUNT(*) OVER () AS total");
            page.push(&format!(
                ") SELECT {ROW_COLUMNS}, page.total FROM page JOIN resources r ON r.rid = page.rid"
            ));
            order_by(&mut page, query);
            let found = page.query().fetch_all(&self.read).await?;
            let total = match found.first() {
                Some(first) => first.try_get(6)?,
                None if query.offset == 0 => 0,
                // Paged past the end: nothing to count with.
                None => fetch_count(&self.read, &count()).await?,
            };
            let rows = found.iter().map(to_row).collect::<Result<_>>()?;
            Ok((rows, Some(total)))
        })
        .await
    }

    async fn referencing(
        &self,
        grant: &Grant,
        rtype: &str,
        param: &str,
        targets: &[String],
        limit: i64,
    ) -> Result<Vec<Row>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(self.engine);
        sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.deleted = 0"));
        sql.push(" AND r.rid IN (SELECT x.rid FROM search_reference x WHERE x.rtype = ")
            .text(rtype);
        sql.push(" AND x.param = ")
            .text(param)
            .push(" AND x.target IN ")
            .list(targets)
            .push(")");
        grant_filter(&mut sql, grant, "r", Some(rtype));
        sql.push(" ORDER BY r.rid").limit(limit, 0);
        self.timed("referencing", fetch_rows(&self.read, &sql)).await
    }

    async fn compartment(&self, grant: &Grant, patient: &str, filter: &CompartmentFilter) -> Result<(Vec<Row>, i64)> {
        let body = |sql: &mut Sql| {
            sql.push(" FROM compartments c JOIN resources r ON r.rid = c.rid WHERE c.patient = ")
                .text(patient);
            sql.push(" AND r.deleted = 0");
            if !filter.types.is_empty() {
                sql.push(" AND c.rtype IN ").list(&filter.types);
            } else if !filter.exclude.is_empty() {
                sql.push(" AND c.rtype NOT IN ").list(&filter.exclude);
            }
            if let Some(since) = filter.since {
                sql.push(" AND r.last_updated >= ").int(since);
            }
            if let Some((low, high)) = filter.clinical {
                let params: Vec<String> = CLINICAL_DATE_PARAMS.iter().map(|p| (*p).to_owned()).collect();
                sql.push(" AND (NOT EXISTS (SELECT 1 FROM search_date d WHERE d.rid = r.rid AND d.param IN ");
                sql.list(&params)
                    .push(") OR EXISTS (SELECT 1 FROM search_date d WHERE d.rid = r.rid AND d.param IN ");
                sql.list(&params)
                    .push(" AND d.high >= ")
                    .int(low)
                    .push(" AND d.low <= ")
                    .int(high)
                    .push("))");
            }
            // The rows are the patient's compartment already: the grant only has to cover that patient.
            if grant.patients().is_some_and(|mine| !mine.iter().any(|p| p == patient)) {
                sql.push(" AND 1 = 0");
            }
            scope_filter(sql, grant);
        };
        let mut page = Sql::new(self.engine);
        page.push(&format!("SELECT {ROW_COLUMNS}"));
        body(&mut page);
        page.push(" ORDER BY r.rid").limit(filter.count, filter.offset);
        let mut count = Sql::new(self.engine);
        count.push("SELECT COUNT(*)");
        body(&mut count);
        self.timed("compartment", async {
            Ok((
                fetch_rows(&self.read, &page).await?,
                fetch_count(&self.read, &count).await?,
            ))
        })
        .await
    }

    async fn save_account(&self, account: &Account) -> Result<()> {
        self.save_account_row(account).await
    }

    async fn account(&self, key: AccountKey<'_>) -> Result<Option<Account>> {
        self.account_row(key).await
    }

    async fn accounts_of(&self, persons: &[String]) -> Result<Vec<Account>> {
        self.account_rows(persons).await
    }

    async fn issue_token(&self, account: &Account, token: &AccountToken, mail: &OutboxMail) -> Result<()> {
        self.issue_token_tx(account, token, mail).await
    }

    async fn token(&self, hash: &str) -> Result<Option<AccountToken>> {
        self.token_row(hash).await
    }

    async fn latest_token(&self, account_id: &str, purpose: TokenPurpose) -> Result<Option<AccountToken>> {
        self.latest_token_row(account_id, purpose).await
    }

    async fn redeem_token(&self, hash: &str, purpose: TokenPurpose, now: i64, password_hash: &str) -> Result<Redeem> {
        self.redeem_token_tx(hash, purpose, now, password_hash).await
    }

    async fn create_session(&self, session: &SessionRow) -> Result<()> {
        self.create_session_row(session).await
    }

    async fn session(&self, hash: &str) -> Result<Option<SessionRow>> {
        self.session_row(hash).await
    }

    async fn touch_session(&self, hash: &str, now: i64) -> Result<()> {
        self.touch_session_row(hash, now).await
    }

    async fn end_session(&self, hash: &str) -> Result<()> {
        self.end_session_row(hash).await
    }

    async fn open_record(&self, hash: &str, patient: Option<&str>) -> Result<()> {
        self.open_record_row(hash, patient).await
    }

    async fn save_share(&self, link: &ShareLink, mail: &OutboxMail) -> Result<()> {
        self.save_share_tx(link, mail).await
    }

    async fn shares(&self, patient: &str) -> Result<Vec<ShareRow>> {
        self.share_rows(patient).await
    }

    async fn share_link(&self, link_id: &str) -> Result<Option<ShareLink>> {
        self.share_link_row(link_id).await
    }

    async fn reserve_share_attempt(&self, link_id: &str, max: i64) -> Result<Option<i64>> {
        self.reserve_share_attempt_row(link_id, max).await
    }

    async fn settle_share_attempt(&self, link_id: &str, right: bool, max: i64, now: i64) -> Result<i64> {
        self.settle_share_attempt_row(link_id, right, max, now).await
    }

    async fn disable_share(&self, id: &str, patient: &str, now: i64) -> Result<()> {
        self.disable_share_row(id, patient, now).await
    }

    async fn save_proxy_grant(&self, grant: &ProxyGrantRow) -> Result<()> {
        self.insert_proxy_grant(grant).await
    }

    async fn proxy_grants(&self, by_patient: bool, key: &str) -> Result<Vec<ProxyGrantRow>> {
        self.proxy_grant_rows(by_patient, key).await
    }

    async fn proxy_grant(&self, related_person: &str) -> Result<Option<ProxyGrantRow>> {
        self.proxy_grant_row(related_person).await
    }

    async fn accept_proxy_grants(&self, account_id: &str, birth_date: &str, now: i64) -> Result<Vec<ProxyGrantRow>> {
        self.accept_proxy_grant_rows(account_id, birth_date, now).await
    }

    async fn revoke_proxy_grant(&self, related_person: &str, now: i64) -> Result<()> {
        self.revoke_proxy_grant_row(related_person, now).await
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRow>> {
        self.throttle_row(key).await
    }

    async fn save_throttle(&self, row: &ThrottleRow) -> Result<()> {
        self.save_throttle_row(row).await
    }

    async fn clear_throttle(&self, key: &str) -> Result<()> {
        self.clear_throttle_row(key).await
    }

    async fn enqueue_mail(&self, mail: &OutboxMail) -> Result<()> {
        self.enqueue_mail_row(mail).await
    }

    async fn claim_mail(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<OutboxMail>> {
        self.claim_mail_rows(now, lease_until, limit).await
    }

    async fn mail_sent(&self, id: &str) -> Result<()> {
        self.mail_sent_row(id).await
    }

    async fn mail_failed(&self, id: &str, next_attempt: i64, error: &str) -> Result<()> {
        self.mail_failed_row(id, next_attempt, error).await
    }

    async fn purge(&self, sessions_before: i64, throttles_before: i64, tokens_before: i64) -> Result<()> {
        self.purge_rows(sessions_before, throttles_before, tokens_before).await
    }

    async fn save_client(&self, client: &ClientRow) -> Result<()> {
        self.save_client_row(client).await
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRow>> {
        self.client_row(id).await
    }

    async fn save_code(&self, code: &CodeRow) -> Result<()> {
        self.save_code_row(code).await
    }

    async fn take_code(&self, hash: &str, now: i64) -> Result<Option<CodeRow>> {
        self.take_code_row(hash, now).await
    }

    async fn save_tokens(&self, tokens: &[TokenRow]) -> Result<()> {
        self.save_tokens_rows(tokens).await
    }

    async fn oauth_token(&self, hash: &str) -> Result<Option<TokenRow>> {
        self.token_row_by_hash(hash).await
    }

    async fn revoke_token(&self, hash: &str, whole_grant: bool, now: i64) -> Result<u64> {
        self.revoke_rows(hash, whole_grant, now).await
    }

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<()> {
        self.revoke_grant_rows(grant_id, now).await
    }

    async fn first_jti(&self, client_id: &str, jti: &str, expires: i64, now: i64) -> Result<bool> {
        self.first_jti_row(client_id, jti, expires, now).await
    }

    async fn connected_apps(&self, account_id: &str, now: i64) -> Result<Vec<ConnectedApp>> {
        self.connected_app_rows(account_id, now).await
    }

    async fn revoke_app(&self, account_id: &str, client_id: &str, now: i64) -> Result<()> {
        self.revoke_app_rows(account_id, client_id, now).await
    }

    async fn launchable_clients(&self) -> Result<Vec<ClientRow>> {
        self.launchable_client_rows().await
    }

    async fn save_launch(&self, launch: &LaunchRow) -> Result<()> {
        self.save_launch_row(launch).await
    }

    async fn launch(&self, hash: &str) -> Result<Option<LaunchRow>> {
        self.launch_row(hash).await
    }
}
