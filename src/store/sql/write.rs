//! The write transaction: versions against the version each writer read, compartments and index rows.

use std::collections::HashMap;
use std::time::Instant;

use super::SqlStore;
use super::build::{Bind, Sql};
use super::db::{Tx, query};
use crate::access::Grant;
use crate::error::{Error, Result};
use crate::store::{IndexEntry, IndexValue, VersionWrite};

impl SqlStore {
    pub(super) async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let out = fut.await;
        crate::ops::metrics().observe_store(self.engine, op, start.elapsed());
        out
    }

    pub(super) async fn write_tx(&self, grant: &Grant, writes: &[VersionWrite]) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        let mut index_rows: Vec<(i64, &str, &str, &IndexEntry)> = Vec::new();
        let mut compartment_rows: Vec<(&str, &str, i64)> = Vec::new();
        let created = self.insert_creations(&mut tx, writes).await?;
        for w in writes {
            let existing = match w.prev_version {
                None => None,
                Some(_) => {
                    query("SELECT rid, version FROM resources WHERE rtype = $1 AND id = $2")
                        .bind(w.rtype.as_str())
                        .bind(w.id.as_str())
                        .fetch_optional(&mut tx)
                        .await?
                }
            };
            let deleted = i64::from(w.body.is_none());
            let rid: i64 = match (existing, w.prev_version) {
                (None, None) => *created
                    .get(&(w.rtype.as_str(), w.id.as_str()))
                    .ok_or_else(|| conflict(w))?,
                (Some(row), Some(prev)) if row.try_get::<i64>(1)? == prev => {
                    let rid: i64 = row.try_get(0)?;
                    // A limited grant may change only what lies wholly within its patients' compartments (a
                    // message shared by two patients is neither one's to rewrite).
                    if let Some(patients) = grant.patients() {
                        let mut sql = Sql::new(self.engine);
                        sql.push("SELECT COALESCE(SUM(CASE WHEN patient IN ").list(patients);
                        sql.push(" THEN 1 ELSE 0 END), 0), COUNT(*) FROM compartments WHERE rid = ")
                            .int(rid);
                        let row = sql.query().fetch_one(&mut tx).await?;
                        let (mine, all): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                        if all == 0 || mine != all {
                            return Err(Error::NotFound(format!("{}/{}", w.rtype, w.id)));
                        }
                    }
                    query(
                        "INSERT INTO resource_history (rid, version, last_updated, deleted, body) \
                         SELECT rid, version, last_updated, deleted, body FROM resources WHERE rid = $1",
                    )
                    .bind(rid)
                    .execute(&mut tx)
                    .await?;
                    query(
                        "INSERT INTO history_compartments (rid, version, patient) \
                         SELECT rid, $2, patient FROM compartments WHERE rid = $1",
                    )
                    .bind(rid)
                    .bind(prev)
                    .execute(&mut tx)
                    .await?;
                    let updated = query(
                        "UPDATE resources SET version = $1, last_updated = $2, deleted = $3, body = $4 \
                         WHERE rid = $5 AND version = $6",
                    )
                    .bind(w.version)
                    .bind(w.last_updated)
                    .bind(deleted)
                    .bind(w.body.as_deref())
                    .bind(rid)
                    .bind(prev)
                    .execute(&mut tx)
                    .await?;
                    if updated.rows_affected() != 1 {
                        return Err(conflict(w));
                    }
                    for table in INDEX_TABLES {
                        query(&format!("DELETE FROM {table} WHERE rid = $1"))
                            .bind(rid)
                            .execute(&mut tx)
                            .await?;
                    }
                    // A deletion keeps the compartments so the history stays reachable to the same patients.
                    if w.body.is_some() {
                        query("DELETE FROM compartments WHERE rid = $1")
                            .bind(rid)
                            .execute(&mut tx)
                            .await?;
                    }
                    rid
                }
                _ => return Err(conflict(w)),
            };
            if w.ends_access {
                super::accounts::end_proxy_grant(&mut tx, &w.id, w.last_updated).await?;
            }
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
        for chunk in compartment_rows.chunks(COMPARTMENT_CHUNK) {
            let mut sql = Sql::new(self.engine);
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
            sql.persistent(chunk.len() == COMPARTMENT_CHUNK)
                .query()
                .execute(&mut tx)
                .await?;
        }
        insert_index(&mut tx, self.engine, &index_rows).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl SqlStore {
    /// Inserts the creations among `writes` with multi-row inserts (a statement per write made imports and
    /// audit batches wait on a round trip each); returns each one's row id. A creation needs no lookup: the
    /// insert refuses an id that exists, and that write is missing from the answer (a conflict).
    async fn insert_creations<'w>(
        &self,
        tx: &mut Tx,
        writes: &'w [VersionWrite],
    ) -> Result<HashMap<(&'w str, &'w str), i64>> {
        let creations: Vec<&VersionWrite> = writes.iter().filter(|w| w.prev_version.is_none()).collect();
        let mut rids = HashMap::with_capacity(creations.len());
        for chunk in creations.chunks(CREATION_CHUNK) {
            let mut sql = Sql::new(self.engine);
            sql.push("INSERT INTO resources (rtype, id, version, last_updated, deleted, body) VALUES ");
            for (i, w) in chunk.iter().enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" })
                    .text(&w.rtype)
                    .push(", ")
                    .text(&w.id)
                    .push(", ")
                    .int(w.version)
                    .push(", ")
                    .int(w.last_updated)
                    .push(", ")
                    .int(i64::from(w.body.is_none()))
                    .push(", ")
                    .bind(Bind::OptText(w.body.clone()))
                    .push(")");
            }
            sql.push(" ON CONFLICT (rtype, id) DO NOTHING RETURNING rid, rtype, id");
            let rows = sql
                .persistent(chunk.len() == CREATION_CHUNK)
                .query()
                .fetch_all(&mut *tx)
                .await?;
            let mut returned: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
            for row in rows {
                returned.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
            }
            for w in chunk {
                // Taken out as it is matched: a second creation of the same resource in one write conflicts.
                let rid = returned
                    .remove(&(w.rtype.clone(), w.id.clone()))
                    .ok_or_else(|| conflict(w))?;
                rids.insert((w.rtype.as_str(), w.id.as_str()), rid);
            }
        }
        Ok(rids)
    }
}

/// Rows per multi-row insert, below both engines' placeholder limits. Only full chunks are kept prepared: they
/// repeat (bulk loads), while the rest hold one batch's row count each, and keeping those filled the writer's
/// statement cache with large one-off statements.
const CREATION_CHUNK: usize = 100;
const COMPARTMENT_CHUNK: usize = 300;
const INDEX_CHUNK: usize = 200;

pub(super) const INDEX_TABLES: [&str; 5] = [
    "search_token",
    "search_string",
    "search_date",
    "search_reference",
    "search_quantity",
];

pub(super) fn conflict(w: &VersionWrite) -> Error {
    Error::Conflict(format!("{}/{} was changed by another request", w.rtype, w.id))
}

/// Multi-row inserts per index table, in chunks of [`INDEX_CHUNK`].
pub(super) async fn insert_index(tx: &mut Tx, engine: &str, rows: &[(i64, &str, &str, &IndexEntry)]) -> Result<()> {
    const COLUMNS: [(&str, &str); 5] = [
        ("search_token", "system, code"),
        ("search_string", "norm, exact"),
        ("search_date", "low, high"),
        ("search_reference", "target"),
        ("search_quantity", "value, system, code"),
    ];
    for (table_no, (table, columns)) in COLUMNS.iter().enumerate() {
        let of_table: Vec<_> = rows.iter().filter(|r| kind_no(&r.3.value) == table_no).collect();
        for chunk in of_table.chunks(INDEX_CHUNK) {
            let mut sql = Sql::new(engine);
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
            sql.persistent(chunk.len() == INDEX_CHUNK)
                .query()
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

pub(super) fn kind_no(value: &IndexValue) -> usize {
    match value {
        IndexValue::Token { .. } => 0,
        IndexValue::Text { .. } => 1,
        IndexValue::Date { .. } => 2,
        IndexValue::Reference { .. } => 3,
        IndexValue::Quantity { .. } => 4,
    }
}
