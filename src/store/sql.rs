//! The [`Store`] on sqlx's `Any` driver: the SQL is written once, with `$n` placeholders both engines accept;
//! what differs (connection setup, the single SQLite writer, migrations) is decided here in [`connect`].

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query as SqlQuery;
use sqlx::{Any, AnyPool, Executor, Row as _};

use super::{
    CLINICAL_DATE_PARAMS, Clause, CompartmentFilter, Condition, Head, HistoryQuery, IndexEntry, IndexValue, Prefix,
    Query, Row, SharedStore, SortKey, Store, VersionWrite,
};
use crate::access::Grant;
use crate::error::{Error, Result};

/// Opens (creating where needed) the database at `url`, runs the engine's migrations and returns the store.
pub async fn connect(url: &str) -> Result<SharedStore> {
    sqlx::any::install_default_drivers();
    let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = AnyPoolOptions::new().max_connections(16).connect(url).await?;
        sqlx::migrate!("src/store/postgres/migrations")
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        SqlStore {
            engine: "postgres",
            begin: "BEGIN",
            read: pool.clone(),
            write: pool,
            _lock: None,
        }
    } else if let Some(path) = sqlite_path(url) {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock = lock_file(path)?;
        lock.try_lock_shared()
            .map_err(|_| Error::Conflict(format!("{path} is being restored; try again when it is done")))?;
        let url = format!("sqlite://{path}?mode=rwc");
        // One writer connection: SQLite allows one writer at a time and queueing in the pool is cheaper and
        // fairer than lock retries.
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(sqlite_setup)
            .connect(&url)
            .await?;
        sqlx::query("PRAGMA journal_mode = WAL").execute(&write).await?;
        sqlx::migrate!("src/store/sqlite/migrations")
            .run(&write)
            .await
            .map_err(migrate_error)?;
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(sqlite_setup)
            .connect(&url)
            .await?;
        SqlStore {
            engine: "sqlite",
            begin: "BEGIN IMMEDIATE",
            read,
            write,
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

/// Per-connection SQLite settings. WAL lets readers run beside the one writer; synchronous=NORMAL in WAL keeps
/// every commit across a process crash (kill -9), only an OS crash can lose the last transactions.
fn sqlite_setup(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_core::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("PRAGMA busy_timeout = 10000").await?;
        conn.execute("PRAGMA synchronous = NORMAL").await?;
        conn.execute("PRAGMA foreign_keys = ON").await?;
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
    sqlx::any::install_default_drivers();
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
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", backup.display()))
        .await
        .map_err(|e| not_ours(e.to_string()))?;
    let newest: i64 = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| not_ours(e.to_string()))?;
    sqlx::query("SELECT COUNT(*) FROM resources")
        .fetch_one(&pool)
        .await
        .map_err(|e| not_ours(e.to_string()))?;
    pool.close().await;
    let known = sqlx::migrate!("src/store/sqlite/migrations")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
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
    read: AnyPool,
    write: AnyPool,
    /// How a write transaction starts: SQLite takes the write lock at once (`IMMEDIATE`), so a transaction
    /// that read first never fails to upgrade when another process wrote in between.
    begin: &'static str,
    /// SQLite: the shared lock on `<db>.lock` every process using the file holds while it runs.
    _lock: Option<std::fs::File>,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
    OptText(Option<String>),
}

/// Builds SQL text and its binds together so placeholders are always numbered right.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    fn float(&mut self, value: f64) -> &mut Self {
        self.bind(Bind::Float(value))
    }

    /// `(a, b, c)` of text binds.
    fn list(&mut self, values: &[String]) -> &mut Self {
        self.push("(");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.text(v);
        }
        self.push(")")
    }

    fn query(&self) -> SqlQuery<'_, Any, AnyArguments> {
        // The text is built only from our own fragments; every value is a bind.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.as_str()));
        for b in &self.binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Float(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.as_str()),
                Bind::OptText(v) => q.bind(v.as_deref()),
            };
        }
        q
    }
}

const ROW_COLUMNS: &str = "r.rtype, r.id, r.version, r.last_updated, r.body";

fn to_row(row: &AnyRow) -> Result<Row> {
    Ok(Row {
        rtype: row.try_get(0)?,
        id: row.try_get(1)?,
        version: row.try_get(2)?,
        last_updated: row.try_get(3)?,
        body: row.try_get(4)?,
    })
}

/// `AND <alias>.rid IN (compartments of the granted patients)`, nothing for an unrestricted grant.
fn grant_filter(sql: &mut Sql, grant: &Grant, alias: &str) {
    if let Some(patients) = grant.patients() {
        sql.push(&format!(
            " AND {alias}.rid IN (SELECT c.rid FROM compartments c WHERE c.patient IN "
        ));
        sql.list(patients);
        sql.push(")");
    }
}

/// The grant filter for superseded versions (alias `h`): the compartments they had when they were current.
fn history_grant_filter(sql: &mut Sql, grant: &Grant) {
    if let Some(patients) = grant.patients() {
        sql.push(" AND EXISTS (SELECT 1 FROM history_compartments hc WHERE hc.rid = h.rid AND hc.version = h.version");
        sql.push(" AND hc.patient IN ").list(patients).push(")");
    }
}

fn table_of(cond: &Condition) -> Option<&'static str> {
    match cond {
        Condition::Token { .. } => Some("search_token"),
        Condition::TextStarts(_) | Condition::TextContains(_) | Condition::TextExact(_) => Some("search_string"),
        Condition::Date { .. } => Some("search_date"),
        Condition::Reference(_) => Some("search_reference"),
        Condition::Quantity { .. } => Some("search_quantity"),
        Condition::Id(_) | Condition::LastUpdated { .. } | Condition::Missing(_) => None,
    }
}

/// Date-range comparison per FHIR search semantics; `lo`/`hi` name the indexed range columns.
fn range_cmp(sql: &mut Sql, lo: &str, hi: &str, prefix: Prefix, low: i64, high: i64) {
    match prefix {
        Prefix::Eq => sql
            .push(&format!("({lo} >= "))
            .int(low)
            .push(&format!(" AND {hi} <= "))
            .int(high)
            .push(")"),
        Prefix::Ne => {
            sql.push("NOT ");
            range_cmp(sql, lo, hi, Prefix::Eq, low, high);
            sql
        }
        Prefix::Gt => sql.push(&format!("{hi} > ")).int(high),
        Prefix::Lt => sql.push(&format!("{lo} < ")).int(low),
        Prefix::Ge => sql.push(&format!("{hi} >= ")).int(low),
        Prefix::Le => sql.push(&format!("{lo} <= ")).int(high),
        Prefix::Sa => sql.push(&format!("{lo} > ")).int(high),
        Prefix::Eb => sql.push(&format!("{hi} < ")).int(low),
        Prefix::Ap => {
            // Approximately: within 10% of the distance to now, and at least a day, on either side.
            let now = crate::clock::now_millis();
            let slack = ((now - low).abs() / 10).max(86_400_000);
            sql.push(&format!("({lo} <= "))
                .int(high + slack)
                .push(&format!(" AND {hi} >= "))
                .int(low - slack)
                .push(")")
        }
    };
}

fn condition(sql: &mut Sql, cond: &Condition) {
    match cond {
        Condition::Token { system, code } => {
            sql.push("(1 = 1");
            match system {
                None => {}
                Some(None) => {
                    sql.push(" AND x.system IS NULL");
                }
                Some(Some(s)) => {
                    sql.push(" AND x.system = ").text(s);
                }
            }
            if let Some(code) = code {
                sql.push(" AND x.code = ").text(code);
            }
            sql.push(")");
        }
        Condition::TextStarts(norm) => {
            // A range keeps the prefix match on the index (LIKE would not, and would treat % and _ specially).
            sql.push("(x.norm >= ")
                .text(norm)
                .push(" AND x.norm < ")
                .text(&format!("{norm}\u{10FFFF}"))
                .push(")");
        }
        Condition::TextContains(norm) => {
            // LIKE with an escaped pattern works the same on both engines (SQLite has no strpos, PostgreSQL no instr).
            let escaped = norm.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            sql.push("x.norm LIKE ")
                .text(&format!("%{escaped}%"))
                .push(" ESCAPE '\\'");
        }
        Condition::TextExact(exact) => {
            sql.push("x.exact = ").text(exact);
        }
        Condition::Date { prefix, low, high } => range_cmp(sql, "x.low", "x.high", *prefix, *low, *high),
        Condition::Reference(target) => {
            sql.push("x.target = ").text(target);
        }
        Condition::Quantity {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            sql.push("(");
            match prefix {
                Prefix::Eq | Prefix::Ne => {
                    if *prefix == Prefix::Ne {
                        sql.push("NOT ");
                    }
                    sql.push("(x.value >= ")
                        .float(*low)
                        .push(" AND x.value < ")
                        .float(*high)
                        .push(")")
                }
                Prefix::Gt | Prefix::Sa => sql.push("x.value > ").float(*value),
                Prefix::Lt | Prefix::Eb => sql.push("x.value < ").float(*value),
                Prefix::Ge => sql.push("x.value >= ").float(*value),
                Prefix::Le => sql.push("x.value <= ").float(*value),
                Prefix::Ap => {
                    let slack = (value * 0.1).abs();
                    sql.push("x.value >= ")
                        .float(value - slack)
                        .push(" AND x.value <= ")
                        .float(value + slack)
                }
            };
            if let Some(code) = code {
                sql.push(" AND x.code = ").text(code);
            }
            if let Some(system) = system {
                sql.push(" AND x.system = ").text(system);
            }
            sql.push(")");
        }
        Condition::Id(id) => {
            sql.push("r.id = ").text(id);
        }
        Condition::LastUpdated { prefix, low, high } => {
            range_cmp(sql, "r.last_updated", "r.last_updated", *prefix, *low, *high)
        }
        Condition::Missing(_) => {
            sql.push("1 = 1");
        }
    }
}

/// Appends ` AND <clause>` for each clause: index lookups become `rid IN (...)` subqueries that carry the
/// granted patients too, so they run on the compartment-first index.
fn clauses(sql: &mut Sql, query: &Query, grant: &Grant) {
    for clause in &query.clauses {
        let Some(first) = clause.any_of.first() else {
            continue;
        };
        if let Condition::Missing(missing) = first {
            let Some(table) = missing_table(clause) else {
                continue;
            };
            sql.push(if *missing {
                " AND r.rid NOT IN "
            } else {
                " AND r.rid IN "
            });
            sql.push(&format!("(SELECT x.rid FROM {table} x WHERE x.rtype = "))
                .text(&query.rtype)
                .push(" AND x.param = ")
                .text(&clause.param)
                .push(")");
            continue;
        }
        match table_of(first) {
            None => {
                sql.push(if clause.negate { " AND NOT (" } else { " AND (" });
                alternatives(sql, &clause.any_of);
                sql.push(")");
            }
            Some(table) => {
                sql.push(if clause.negate {
                    " AND r.rid NOT IN "
                } else {
                    " AND r.rid IN "
                });
                sql.push(&format!("(SELECT x.rid FROM {table} x WHERE x.rtype = "))
                    .text(&query.rtype)
                    .push(" AND x.param = ")
                    .text(&clause.param);
                if let Some(patients) = grant.patients() {
                    sql.push(" AND x.patient IN ").list(patients);
                } else if let Some(patient) = &query.patient {
                    sql.push(" AND x.patient = ").text(patient);
                }
                sql.push(" AND (");
                alternatives(sql, &clause.any_of);
                sql.push("))");
            }
        }
    }
}

/// The table a `:missing` clause looks in is given by the parameter kind, carried in the clause's second
/// alternative (a template condition the search parser adds).
fn missing_table(clause: &Clause) -> Option<&'static str> {
    clause.any_of.get(1).and_then(table_of)
}

fn alternatives(sql: &mut Sql, any_of: &[Condition]) {
    for (i, cond) in any_of.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        condition(sql, cond);
    }
}

fn order_by(sql: &mut Sql, query: &Query) {
    sql.push(" ORDER BY ");
    for sort in &query.sort {
        let dir = if sort.descending { "DESC" } else { "ASC" };
        let agg = if sort.descending { "MAX" } else { "MIN" };
        match &sort.key {
            SortKey::LastUpdated => {
                sql.push(&format!("r.last_updated {dir}, "));
            }
            SortKey::Id => {
                sql.push(&format!("r.id {dir}, "));
            }
            SortKey::Date(p) | SortKey::Text(p) | SortKey::Token(p) | SortKey::Number(p) => {
                let (table, column) = match &sort.key {
                    SortKey::Date(_) => ("search_date", if sort.descending { "high" } else { "low" }),
                    SortKey::Text(_) => ("search_string", "norm"),
                    SortKey::Token(_) => ("search_token", "code"),
                    _ => ("search_quantity", "value"),
                };
                sql.push(&format!(
                    "(SELECT {agg}(s.{column}) FROM {table} s WHERE s.rid = r.rid AND s.param = "
                ))
                .text(p)
                .push(&format!(") {dir} NULLS LAST, "));
            }
        }
    }
    sql.push("r.rid");
}

async fn fetch_rows(pool: &AnyPool, sql: &Sql) -> Result<Vec<Row>> {
    let rows = sql.query().fetch_all(pool).await?;
    rows.iter().map(to_row).collect()
}

async fn fetch_optional_row(pool: &AnyPool, sql: &Sql) -> Result<Option<Row>> {
    sql.query().fetch_optional(pool).await?.as_ref().map(to_row).transpose()
}

async fn fetch_count(pool: &AnyPool, sql: &Sql) -> Result<i64> {
    Ok(sql.query().fetch_one(pool).await?.try_get(0)?)
}

impl SqlStore {
    async fn timed<T>(&self, op: &'static str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let out = fut.await;
        crate::ops::metrics().observe_store(self.engine, op, start.elapsed());
        out
    }

    async fn write_tx(&self, grant: &Grant, writes: Vec<VersionWrite>) -> Result<()> {
        let mut tx = self.write.begin_with(self.begin).await?;
        let mut index_rows: Vec<(i64, &str, &str, &IndexEntry)> = Vec::new();
        let mut compartment_rows: Vec<(&str, &str, i64)> = Vec::new();
        for w in &writes {
            let existing = sqlx::query("SELECT rid, version FROM resources WHERE rtype = $1 AND id = $2")
                .bind(w.rtype.as_str())
                .bind(w.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let deleted = i64::from(w.body.is_none());
            let rid: i64 = match (existing, w.prev_version) {
                (None, None) => sqlx::query(
                    "INSERT INTO resources (rtype, id, version, last_updated, deleted, body) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (rtype, id) DO NOTHING RETURNING rid",
                )
                .bind(w.rtype.as_str())
                .bind(w.id.as_str())
                .bind(w.version)
                .bind(w.last_updated)
                .bind(deleted)
                .bind(w.body.as_deref())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| conflict(w))?
                .try_get(0)?,
                (Some(row), Some(prev)) if row.try_get::<i64, _>(1)? == prev => {
                    let rid: i64 = row.try_get(0)?;
                    // A limited grant may change only what lies wholly within its patients' compartments (a
                    // message shared by two patients is neither one's to rewrite).
                    if let Some(patients) = grant.patients() {
                        let mut sql = Sql::default();
                        sql.push("SELECT COALESCE(SUM(CASE WHEN patient IN ").list(patients);
                        sql.push(" THEN 1 ELSE 0 END), 0), COUNT(*) FROM compartments WHERE rid = ")
                            .int(rid);
                        let row = sql.query().fetch_one(&mut *tx).await?;
                        let (mine, all): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                        if all == 0 || mine != all {
                            return Err(Error::NotFound(format!("{}/{}", w.rtype, w.id)));
                        }
                    }
                    sqlx::query(
                        "INSERT INTO resource_history (rid, version, last_updated, deleted, body) \
                         SELECT rid, version, last_updated, deleted, body FROM resources WHERE rid = $1",
                    )
                    .bind(rid)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO history_compartments (rid, version, patient) \
                         SELECT rid, $2, patient FROM compartments WHERE rid = $1",
                    )
                    .bind(rid)
                    .bind(prev)
                    .execute(&mut *tx)
                    .await?;
                    let updated = sqlx::query(
                        "UPDATE resources SET version = $1, last_updated = $2, deleted = $3, body = $4 \
                         WHERE rid = $5 AND version = $6",
                    )
                    .bind(w.version)
                    .bind(w.last_updated)
                    .bind(deleted)
                    .bind(w.body.as_deref())
                    .bind(rid)
                    .bind(prev)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() != 1 {
                        return Err(conflict(w));
                    }
                    for table in INDEX_TABLES {
                        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE rid = $1")))
                            .bind(rid)
                            .execute(&mut *tx)
                            .await?;
                    }
                    // A deletion keeps the compartments so the history stays reachable to the same patients.
                    if w.body.is_some() {
                        sqlx::query("DELETE FROM compartments WHERE rid = $1")
                            .bind(rid)
                            .execute(&mut *tx)
                            .await?;
                    }
                    rid
                }
                _ => return Err(conflict(w)),
            };
            if w.body.is_none() {
                continue;
            }
            for patient in &w.compartments {
                compartment_rows.push((patient, &w.rtype, rid));
            }
            let owners: Vec<&str> = if w.compartments.is_empty() {
                vec![""]
            } else {
                w.compartments.iter().map(String::as_str).collect()
            };
            for entry in &w.index {
                for owner in &owners {
                    index_rows.push((rid, owner, &w.rtype, entry));
                }
            }
        }
        for chunk in compartment_rows.chunks(300) {
            let mut sql = Sql::default();
            sql.push("INSERT INTO compartments (patient, rtype, rid) VALUES ");
            for (i, (patient, rtype, rid)) in chunk.iter().enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" })
                    .text(patient)
                    .push(", ")
                    .text(rtype)
                    .push(", ")
                    .int(*rid);
                sql.push(")");
            }
            sql.push(" ON CONFLICT DO NOTHING");
            sql.query().execute(&mut *tx).await?;
        }
        insert_index(&mut tx, &index_rows).await?;
        tx.commit().await?;
        Ok(())
    }
}

const INDEX_TABLES: [&str; 5] = [
    "search_token",
    "search_string",
    "search_date",
    "search_reference",
    "search_quantity",
];

fn conflict(w: &VersionWrite) -> Error {
    Error::Conflict(format!("{}/{} was changed by another request", w.rtype, w.id))
}

/// Multi-row inserts per index table, in chunks that stay below both engines' placeholder limits.
async fn insert_index(tx: &mut sqlx::Transaction<'_, Any>, rows: &[(i64, &str, &str, &IndexEntry)]) -> Result<()> {
    const COLUMNS: [(&str, &str); 5] = [
        ("search_token", "system, code"),
        ("search_string", "norm, exact"),
        ("search_date", "low, high"),
        ("search_reference", "target"),
        ("search_quantity", "value, system, code"),
    ];
    for (table_no, (table, columns)) in COLUMNS.iter().enumerate() {
        let of_table: Vec<_> = rows.iter().filter(|r| kind_no(&r.3.value) == table_no).collect();
        for chunk in of_table.chunks(200) {
            let mut sql = Sql::default();
            sql.push(&format!(
                "INSERT INTO {table} (rid, patient, rtype, param, {columns}) VALUES "
            ));
            for (i, (rid, patient, rtype, entry)) in chunk.iter().enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" });
                sql.int(*rid)
                    .push(", ")
                    .text(patient)
                    .push(", ")
                    .text(rtype)
                    .push(", ")
                    .text(&entry.param);
                match &entry.value {
                    IndexValue::Token { system, code } => {
                        sql.push(", ").bind(Bind::OptText(system.clone())).push(", ").text(code);
                    }
                    IndexValue::Text { norm, exact } => {
                        sql.push(", ").text(norm).push(", ").text(exact);
                    }
                    IndexValue::Date { low, high } => {
                        sql.push(", ").int(*low).push(", ").int(*high);
                    }
                    IndexValue::Reference { target } => {
                        sql.push(", ").text(target);
                    }
                    IndexValue::Quantity { value, system, code } => {
                        sql.push(", ")
                            .float(*value)
                            .push(", ")
                            .bind(Bind::OptText(system.clone()));
                        sql.push(", ").bind(Bind::OptText(code.clone()));
                    }
                }
                sql.push(")");
            }
            sql.query().execute(&mut **tx).await?;
        }
    }
    Ok(())
}

fn kind_no(value: &IndexValue) -> usize {
    match value {
        IndexValue::Token { .. } => 0,
        IndexValue::Text { .. } => 1,
        IndexValue::Date { .. } => 2,
        IndexValue::Reference { .. } => 3,
        IndexValue::Quantity { .. } => 4,
    }
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        self.engine
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
        sqlx::query("VACUUM INTO $1")
            .bind(to.display().to_string())
            .execute(&self.read)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn head(&self, _grant: &Grant, rtype: &str, id: &str) -> Result<Option<Head>> {
        self.timed("head", async {
            let row = sqlx::query("SELECT version, deleted FROM resources WHERE rtype = $1 AND id = $2")
                .bind(rtype)
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
            row.map(|r| {
                Ok(Head {
                    version: r.try_get(0)?,
                    deleted: r.try_get::<i64, _>(1)? != 0,
                })
            })
            .transpose()
        })
        .await
    }

    async fn write(&self, grant: &Grant, writes: Vec<VersionWrite>) -> Result<()> {
        self.timed("write", self.write_tx(grant, writes)).await
    }

    async fn read(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Row>> {
        self.timed("read", async {
            let mut sql = Sql::default();
            sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.rtype = "))
                .text(rtype);
            sql.push(" AND r.id = ").text(id);
            grant_filter(&mut sql, grant, "r");
            fetch_optional_row(&self.read, &sql).await
        })
        .await
    }

    async fn read_many(&self, grant: &Grant, refs: &[(String, String)]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for chunk in refs.chunks(200) {
            let mut sql = Sql::default();
            sql.push(&format!(
                "SELECT {ROW_COLUMNS} FROM resources r WHERE r.deleted = 0 AND ("
            ));
            for (i, (rtype, id)) in chunk.iter().enumerate() {
                sql.push(if i > 0 { " OR (r.rtype = " } else { "(r.rtype = " })
                    .text(rtype);
                sql.push(" AND r.id = ").text(id).push(")");
            }
            sql.push(")");
            grant_filter(&mut sql, grant, "r");
            out.extend(self.timed("read_many", fetch_rows(&self.read, &sql)).await?);
        }
        Ok(out)
    }

    async fn vread(&self, grant: &Grant, rtype: &str, id: &str, version: i64) -> Result<Option<Row>> {
        self.timed("vread", async {
            let mut sql = Sql::default();
            sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.rtype = "))
                .text(rtype);
            sql.push(" AND r.id = ").text(id).push(" AND r.version = ").int(version);
            grant_filter(&mut sql, grant, "r");
            sql.push(" UNION ALL SELECT r.rtype, r.id, h.version, h.last_updated, h.body FROM resource_history h ");
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
                grant_filter(sql, grant, "r");
            } else {
                history_grant_filter(sql, grant);
            }
        };
        let union = |sql: &mut Sql| {
            sql.push("SELECT r.rtype, r.id, r.version, r.last_updated, r.body FROM resources r");
            filter(sql, "r.last_updated", true);
            sql.push(" UNION ALL SELECT r.rtype, r.id, h.version, h.last_updated, h.body ");
            sql.push("FROM resource_history h JOIN resources r ON r.rid = h.rid");
            filter(sql, "h.last_updated", false);
        };
        let mut page = Sql::default();
        page.push("SELECT * FROM (");
        union(&mut page);
        page.push(") r ORDER BY r.last_updated DESC, r.rtype, r.id, r.version DESC LIMIT ")
            .int(query.count);
        page.push(" OFFSET ").int(query.offset);
        let mut count = Sql::default();
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
        let indexed = query
            .clauses
            .iter()
            .any(|c| !c.negate && c.any_of.first().and_then(table_of).is_some());
        let filter = |sql: &mut Sql| {
            sql.push(" FROM resources r WHERE r.deleted = 0");
            if !indexed {
                sql.push(" AND r.rtype = ").text(&query.rtype);
            }
            grant_filter(sql, grant, "r");
            clauses(sql, query, grant);
        };
        let mut page = Sql::default();
        page.push(&format!("SELECT {ROW_COLUMNS}"));
        filter(&mut page);
        order_by(&mut page, query);
        page.push(" LIMIT ").int(query.count).push(" OFFSET ").int(query.offset);
        self.timed("search", async {
            let rows = if query.count > 0 {
                fetch_rows(&self.read, &page).await?
            } else {
                Vec::new()
            };
            let total = if query.total {
                let mut count = Sql::default();
                count.push("SELECT COUNT(*)");
                filter(&mut count);
                Some(fetch_count(&self.read, &count).await?)
            } else {
                None
            };
            Ok((rows, total))
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
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {ROW_COLUMNS} FROM resources r WHERE r.deleted = 0"));
        sql.push(" AND r.rid IN (SELECT x.rid FROM search_reference x WHERE x.rtype = ")
            .text(rtype);
        sql.push(" AND x.param = ")
            .text(param)
            .push(" AND x.target IN ")
            .list(targets)
            .push(")");
        grant_filter(&mut sql, grant, "r");
        sql.push(" ORDER BY r.rid LIMIT ").int(limit);
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
            grant_filter(sql, grant, "r");
        };
        let mut page = Sql::default();
        page.push(&format!("SELECT {ROW_COLUMNS}"));
        body(&mut page);
        page.push(" ORDER BY r.rid LIMIT ")
            .int(filter.count)
            .push(" OFFSET ")
            .int(filter.offset);
        let mut count = Sql::default();
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
}
