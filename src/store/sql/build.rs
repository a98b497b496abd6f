//! SQL text and binds, built together: the search conditions, grant filters and ordering both engines run.

use super::db::{Db, DbRow, Stmt};
use crate::access::Grant;
use crate::error::Result;
use crate::store::{Clause, Condition, Prefix, Query, Row, SortKey};

pub(super) use super::db::Bind;

/// Builds SQL text and its binds together so placeholders are always numbered right.
pub(super) struct Sql {
    query: Stmt,
    /// SQLite gets anonymous `?` placeholders: it looks numbered and named ones up in a list, linearly, at parse
    /// and at every bind, which made a 1,000-value insert cost a million comparisons (binds come in text order,
    /// so `?` means the same).
    anonymous: bool,
}

impl Sql {
    pub(super) fn new(engine: &str) -> Sql {
        Sql {
            query: Stmt::new(String::new(), Vec::new()),
            anonymous: engine == "sqlite",
        }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.query.text.push_str(text);
        self
    }

    pub(super) fn bind(&mut self, value: Bind) -> &mut Self {
        self.query.binds.push(value);
        if self.anonymous {
            self.query.text.push('?');
        } else {
            self.query.text.push('$');
            self.query.text.push_str(&self.query.binds.len().to_string());
        }
        self
    }

    pub(super) fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    pub(super) fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    /// ` LIMIT count OFFSET offset`, written into the text rather than bound: SQLite's planner reads a bound
    /// LIMIT, which marks the statement to be prepared again at every new binding (a tenth of a lab search's
    /// time went to parsing it again, docs/benchmarks.md). The values are integers, so nothing can be injected.
    pub(super) fn limit(&mut self, count: i64, offset: i64) -> &mut Self {
        self.push(&format!(" LIMIT {count}"));
        if offset > 0 {
            self.push(&format!(" OFFSET {offset}"));
        }
        self
    }

    pub(super) fn float(&mut self, value: f64) -> &mut Self {
        self.bind(Bind::Float(value))
    }

    /// `(a, b, c)` of text binds.
    pub(super) fn list(&mut self, values: &[String]) -> &mut Self {
        self.push("(");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.text(v);
        }
        self.push(")")
    }

    /// The statement to run (built anew: the text and binds are copied, a small cost next to running it).
    pub(super) fn query(&self) -> &Stmt {
        &self.query
    }

    /// Whether the prepared statement is kept for the next run of the same text (true unless said otherwise).
    pub(super) fn persistent(&mut self, keep: bool) -> &mut Self {
        self.query.persistent = keep;
        self
    }
}

/// A current resource row with its compartments (the patients, space-separated; ids have no spaces), so the
/// audit of a read names them without parsing every body.
pub(super) const ROW_COLUMNS: &str = "r.rtype, r.id, r.version, r.last_updated, r.body, \
     COALESCE((SELECT string_agg(c.patient, ' ') FROM compartments c WHERE c.rid = r.rid), '')";
/// [`ROW_COLUMNS`] of an earlier version, from `resource_history h` joined to its resource `r`.
pub(super) const HISTORY_COLUMNS: &str = "r.rtype, r.id, h.version, h.last_updated, h.body, CAST(NULL AS TEXT)";

pub(super) fn to_row(row: &DbRow) -> Result<Row> {
    Ok(Row {
        rtype: row.try_get(0)?,
        id: row.try_get(1)?,
        version: row.try_get(2)?,
        last_updated: row.try_get(3)?,
        body: row.try_get(4)?,
        owners: row
            .try_get::<Option<String>>(5)?
            .map(|o| o.split_whitespace().map(str::to_owned).collect()),
    })
}

/// `AND <alias>.rid IN (compartments of the granted patients)`, nothing for an unrestricted grant. With the
/// type known, only that type's part of the compartments is read: a patient's compartment also holds the
/// AuditEvents of every access to their record, which outgrow everything else.
pub(super) fn grant_filter(sql: &mut Sql, grant: &Grant, alias: &str, rtype: Option<&str>) {
    if let Some(patients) = grant.patients() {
        sql.push(&format!(
            " AND {alias}.rid IN (SELECT c.rid FROM compartments c WHERE c.patient IN "
        ));
        sql.list(patients);
        if let Some(rtype) = rtype {
            sql.push(" AND c.rtype = ").text(rtype);
        }
        sql.push(")");
    }
    scope_filter(sql, grant);
}

/// As [`grant_filter`] for statements that name their rows (read, vread, read_many): a probe of the
/// compartments index per row instead of a set of all the granted patients' resources made per statement.
pub(super) fn row_grant_filter(sql: &mut Sql, grant: &Grant) {
    if let Some(patients) = grant.patients() {
        sql.push(
            " AND EXISTS (SELECT 1 FROM compartments c WHERE c.rid = r.rid AND c.rtype = r.rtype AND c.patient IN ",
        );
        sql.list(patients);
        sql.push(")");
    }
    scope_filter(sql, grant);
}

/// Granular scopes: resources of the filtered type (alias `r`) must match one of the scopes' queries, on
/// their current index rows. A filter not yet parsed matches nothing.
pub(super) fn scope_filter(sql: &mut Sql, grant: &Grant) {
    let Some(filter) = grant.filter() else {
        return;
    };
    let Some(alternatives) = &filter.clauses else {
        sql.push(" AND 1 = 0");
        return;
    };
    sql.push(" AND (r.rtype <> ").text(&filter.rtype).push(" OR (1 = 0");
    for alternative in alternatives {
        sql.push(" OR (1 = 1");
        let query = Query {
            rtype: filter.rtype.clone(),
            clauses: alternative.clone(),
            ..Query::default()
        };
        clauses(sql, "r.rid", &query.clauses, &query, grant);
        sql.push(")");
    }
    sql.push("))");
}

/// The grant filter for superseded versions (alias `h`): the compartments they had when they were current.
pub(super) fn history_grant_filter(sql: &mut Sql, grant: &Grant) {
    if let Some(patients) = grant.patients() {
        sql.push(" AND EXISTS (SELECT 1 FROM history_compartments hc WHERE hc.rid = h.rid AND hc.version = h.version");
        sql.push(" AND hc.patient IN ").list(patients).push(")");
    }
    scope_filter(sql, grant);
}

pub(super) fn table_of(cond: &Condition) -> Option<&'static str> {
    match cond {
        Condition::Token { .. } => Some("search_token"),
        Condition::TextStarts(_) | Condition::TextContains(_) | Condition::TextExact(_) => Some("search_string"),
        Condition::Date { .. } => Some("search_date"),
        Condition::Reference(_) => Some("search_reference"),
        Condition::Quantity { .. } => Some("search_quantity"),
        Condition::Id(_) | Condition::LastUpdated { .. } | Condition::Missing(_) => None,
    }
}

/// Whether `clause` is a positive index lookup, whose matches a statement can start from.
pub(super) fn leads(clause: &Clause) -> bool {
    !clause.negate && clause.any_of.first().and_then(table_of).is_some()
}

/// Date-range comparison per FHIR search semantics; `lo`/`hi` name the indexed range columns.
pub(super) fn range_cmp(sql: &mut Sql, lo: &str, hi: &str, prefix: Prefix, low: i64, high: i64) {
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
        // `ap` arrives already widened by the parser (it knows the clock): here it is plain overlap.
        Prefix::Ap => sql
            .push(&format!("({lo} <= "))
            .int(high)
            .push(&format!(" AND {hi} >= "))
            .int(low)
            .push(")"),
    };
}

pub(super) fn condition(sql: &mut Sql, cond: &Condition) {
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

/// Appends ` AND <clause>` for each of `list` on the row id `rid`: index lookups become `rid IN (...)`
/// subqueries that carry the granted patients too, so they run on the compartment-first index. `rid` is
/// `r.rid`, or `+x.rid` for a statement that reads index rows `x` only: the plus keeps the planner from
/// looking each of a list's rids up in `x`'s index, where scanning `x` and probing the list is cheaper.
pub(super) fn clauses<'c>(
    sql: &mut Sql,
    rid: &str,
    list: impl IntoIterator<Item = &'c Clause>,
    query: &Query,
    grant: &Grant,
) {
    for clause in list {
        let Some(first) = clause.any_of.first() else {
            continue;
        };
        if let Condition::Missing(missing) = first {
            let Some(table) = missing_table(clause) else {
                continue;
            };
            index_subquery(sql, rid, *missing, table, &query.rtype, &clause.param);
            sql.push(")");
            continue;
        }
        match table_of(first) {
            None => {
                sql.push(if clause.negate { " AND NOT (" } else { " AND (" });
                alternatives(sql, &clause.any_of);
                sql.push(")");
            }
            Some(table) => {
                index_subquery(sql, rid, clause.negate, table, &query.rtype, &clause.param);
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

/// Opens ` AND <rid> [NOT] IN (SELECT x.rid FROM <table> x WHERE <type and parameter>`; the caller adds
/// its conditions and the closing parenthesis.
fn index_subquery(sql: &mut Sql, rid: &str, not: bool, table: &str, rtype: &str, param: &str) {
    sql.push(&format!(" AND {rid} {}IN ", if not { "NOT " } else { "" }));
    sql.push(&format!("(SELECT x.rid FROM {table} x WHERE x.rtype = "))
        .text(rtype)
        .push(" AND x.param = ")
        .text(param);
}

/// The table a `:missing` clause looks in is given by the parameter kind, carried in the clause's second
/// alternative (a template condition the search parser adds).
pub(super) fn missing_table(clause: &Clause) -> Option<&'static str> {
    clause.any_of.get(1).and_then(table_of)
}

pub(super) fn alternatives(sql: &mut Sql, any_of: &[Condition]) {
    for (i, cond) in any_of.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        condition(sql, cond);
    }
}

pub(super) fn order_by(sql: &mut Sql, query: &Query) {
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

pub(super) async fn fetch_rows(db: &Db, sql: &Sql) -> Result<Vec<Row>> {
    let rows = sql.query().fetch_all(db).await?;
    rows.iter().map(to_row).collect()
}

pub(super) async fn fetch_optional_row(db: &Db, sql: &Sql) -> Result<Option<Row>> {
    sql.query().fetch_optional(db).await?.as_ref().map(to_row).transpose()
}

pub(super) async fn fetch_count(db: &Db, sql: &Sql) -> Result<i64> {
    sql.query().fetch_one(db).await?.try_get(0)
}
