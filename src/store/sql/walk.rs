//! Searches sorted by one date within one patient's record (a lab search, the newest documents): the page is
//! walked in date order on the patient's date index rows and the total counted from index rows, where ranking
//! every match by a date looked up per match took most of a lab search's time (docs/benchmarks.md).

use super::SqlStore;
use super::build::{ROW_COLUMNS, Sql, alternatives, clauses, fetch_count, fetch_rows, leads, table_of};
use crate::access::Grant;
use crate::error::Result;
use crate::store::{Clause, Condition, Query, Row, Sort, SortKey};

/// A search one walk answers: sorted by one date only, within one patient's index rows ([`index_owner`]), on
/// SQLite. PostgreSQL keeps ranking every match: its generic plan for the walk (a prepared statement's plan
/// after five runs) nests each clause's lookup as a rescan per walked row, 104 ms against 3.6 ms for the custom
/// plan on the lab search, and its sort and `DISTINCT` do not stop at the page's end anyway.
pub(super) struct Walk<'q> {
    owner: &'q str,
    param: &'q str,
    descending: bool,
}

impl<'q> Walk<'q> {
    pub(super) fn of(engine: &str, grant: &'q Grant, query: &'q Query) -> Option<Walk<'q>> {
        if engine != "sqlite" {
            return None;
        }
        let owner = index_owner(grant, query)?;
        match query.sort.as_slice() {
            [
                Sort {
                    key: SortKey::Date(param),
                    descending,
                },
            ] => Some(Walk {
                owner,
                param,
                descending: *descending,
            }),
            _ => None,
        }
    }
}

impl SqlStore {
    /// Answers a search by a [`Walk`]. `filter` writes the search's general ` FROM resources r WHERE ...`,
    /// for the matches without the date, and `count` its general count, for when no index clause can lead.
    pub(super) async fn search_by_date(
        &self,
        grant: &Grant,
        query: &Query,
        walk: Walk<'_>,
        filter: &(dyn Fn(&mut Sql) + Sync),
        count: &(dyn Fn() -> Sql + Sync),
    ) -> Result<(Vec<Row>, Option<i64>)> {
        let Walk {
            owner,
            param,
            descending,
        } = walk;
        let total = if query.total {
            let count = index_count(self.engine, query, grant, owner).unwrap_or_else(count);
            Some(fetch_count(&self.read, &count).await?)
        } else {
            None
        };
        let mut page = Sql::new(self.engine);
        date_walk(&mut page, query, grant, owner, param, descending);
        let mut rows = fetch_rows(&self.read, &page).await?;
        let dated = rows.len() as i64;
        // The walk ended before the page did: the matches without the date follow, unless the total says
        // there are none.
        if dated < query.count && total.is_none_or(|t| t > query.offset + dated) {
            let skip = if dated > 0 || query.offset == 0 {
                0
            } else {
                let mut sql = Sql::new(self.engine);
                date_walk_count(&mut sql, query, grant, owner, param);
                (query.offset - fetch_count(&self.read, &sql).await?).max(0)
            };
            let mut undated = Sql::new(self.engine);
            undated.push(&format!("SELECT {ROW_COLUMNS}"));
            filter(&mut undated);
            undated
                .push(" AND NOT EXISTS (SELECT 1 FROM search_date s WHERE s.rid = r.rid AND s.param = ")
                .text(param)
                .push(") ORDER BY r.rid")
                .limit(query.count - dated, skip);
            rows.extend(fetch_rows(&self.read, &undated).await?);
        }
        Ok((rows, total))
    }
}

/// The one patient whose index rows hold every match, when the search can be answered from index rows alone:
/// its index lookups are then all keyed by that patient (a one-patient grant, or `patient=X` under an
/// unrestricted one), no granular scope filters rows, and every clause is an index lookup (index rows exist
/// only for current, undeleted versions, so `resources` need not be read to rank or count).
fn index_owner<'q>(grant: &'q Grant, query: &'q Query) -> Option<&'q str> {
    let owner = match grant.patients() {
        Some([one]) => one.as_str(),
        Some(_) => return None,
        None => query.patient.as_deref()?,
    };
    let indexed = |c: &Clause| match c.any_of.first() {
        Some(Condition::Missing(_)) | None => true,
        Some(first) => table_of(first).is_some(),
    };
    (grant.filter().is_none() && query.clauses.iter().all(indexed)).then_some(owner)
}

/// ` FROM search_date d WHERE <owner's rows of the date parameter> <clauses>`: the index rows a date walk
/// ranks, for a search [`index_owner`] allows.
fn date_rows(sql: &mut Sql, query: &Query, grant: &Grant, owner: &str, param: &str) {
    sql.push(" FROM search_date d WHERE d.patient = ")
        .text(owner)
        .push(" AND d.rtype = ")
        .text(&query.rtype)
        .push(" AND d.param = ")
        .text(param);
    clauses(sql, "+d.rid", &query.clauses, query, grant);
}

/// A page of a search sorted by one date, walked in order on the owner's date index rows (CTE `page (k,
/// rid)`, then the rows). A resource ranks by its latest end (descending) or earliest start (ascending), so
/// only its row holding that extreme is walked (the `NOT EXISTS`), and the walk stops at the page's end
/// instead of ranking every match. Matches without the date come after all of these (NULLS LAST) and are
/// not in this walk.
fn date_walk(sql: &mut Sql, query: &Query, grant: &Grant, owner: &str, param: &str, descending: bool) {
    let (column, beyond, dir) = if descending {
        ("high", ">", "DESC")
    } else {
        ("low", "<", "ASC")
    };
    sql.push(&format!("WITH page AS (SELECT DISTINCT d.{column} AS k, d.rid"));
    date_rows(sql, query, grant, owner, param);
    sql.push(&format!(
        " AND NOT EXISTS (SELECT 1 FROM search_date s WHERE s.rid = d.rid AND s.param = d.param \
         AND s.{column} {beyond} d.{column}) ORDER BY d.{column} {dir}, d.rid"
    ))
    .limit(query.count, query.offset);
    sql.push(&format!(
        ") SELECT {ROW_COLUMNS} FROM page JOIN resources r ON r.rid = page.rid ORDER BY page.k {dir}, page.rid"
    ));
}

/// How many matches a [`date_walk`] of `param` ranks (those with the date).
fn date_walk_count(sql: &mut Sql, query: &Query, grant: &Grant, owner: &str, param: &str) {
    sql.push("SELECT COUNT(DISTINCT d.rid)");
    date_rows(sql, query, grant, owner, param);
}

/// The count of a search [`index_owner`] allows, from the index rows of its first positive index clause with
/// the other clauses probed as lists; `None` when no clause can lead.
fn index_count(engine: &str, query: &Query, grant: &Grant, owner: &str) -> Option<Sql> {
    let lead = query.clauses.iter().position(leads)?;
    let clause = &query.clauses[lead];
    let table = table_of(&clause.any_of[0])?;
    let mut sql = Sql::new(engine);
    sql.push(&format!("SELECT COUNT(DISTINCT x.rid) FROM {table} x WHERE x.rtype = "))
        .text(&query.rtype)
        .push(" AND x.param = ")
        .text(&clause.param)
        .push(" AND x.patient = ")
        .text(owner)
        .push(" AND (");
    alternatives(&mut sql, &clause.any_of);
    sql.push(")");
    let others = query.clauses.iter().enumerate().filter(|(i, _)| *i != lead);
    clauses(&mut sql, "+x.rid", others.map(|(_, c)| c), query, grant);
    Some(sql)
}
