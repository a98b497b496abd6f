//! The resource rules: validate on write, stamp id and meta, index, compute compartments, store, audit; and
//! read, history, search and `$everything` through the gate. Knows no HTTP: doors call these functions with
//! an [`Actor`] and get resources (as JSON text) or a domain error back.

mod audit_sink;
mod bundle;
pub mod transaction;

use std::sync::Arc;

use serde_json::{Value, json};

pub use bundle::BundleEntry;

use self::audit_sink::AuditSink;

use crate::access::{self, Action, Actor, Grant, audit};
use crate::clock::{self, Clock};
use crate::error::{Error, Issue, Result};
use crate::fhir::json::{self as fjson, RawObject};
use crate::fhir::params::Registry;
use crate::fhir::profiles::Profiles;
use crate::fhir::search::{self, Limits, SearchRequest};
use crate::fhir::{datetime, extract, parse};
use crate::store::{CompartmentFilter, HistoryQuery, Row, SharedStore, VersionWrite};

/// A resource as stored: its JSON text and version facts.
#[derive(Debug, Clone)]
pub struct Stored {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub body: String,
}

/// How a write ended.
#[derive(Debug, Clone)]
pub struct Written {
    pub resource: Stored,
    pub created: bool,
}

#[derive(Clone)]
pub struct Records {
    store: SharedStore,
    audit: AuditSink,
    registry: Arc<Registry>,
    profiles: Arc<Profiles>,
    clock: Clock,
    limits: Limits,
    /// The FHIR base URL (`<base>/fhir`), for links and for recognising our own absolute references.
    base: String,
}

/// One write prepared for the store, plus the parsed resource for the audit.
struct Prepared {
    write: VersionWrite,
    stored: Stored,
    created: bool,
    /// The patients whose data this touches (for a deletion, those of the deleted version).
    patients: Vec<String>,
}

impl Records {
    pub fn new(
        store: SharedStore,
        registry: Arc<Registry>,
        profiles: Arc<Profiles>,
        clock: Clock,
        limits: Limits,
        base: String,
    ) -> Self {
        Records {
            audit: AuditSink::start(store.clone()),
            store,
            registry,
            profiles,
            clock,
            limits,
            base,
        }
    }

    /// `_count`, capped at the configured maximum.
    fn count(&self, k: &str, v: &str) -> Result<i64> {
        Ok(v.parse::<i64>()
            .map_err(|_| bad_param(k, v))?
            .clamp(0, self.limits.max_count))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the store holds no Patient yet (only a count is read, so nothing is audited).
    pub async fn is_empty(&self) -> Result<bool> {
        let grant = access::authorize(&Actor::system("carespace"), Action::Search, "Patient")?;
        let query = crate::store::Query {
            rtype: "Patient".into(),
            count: 0,
            total: true,
            ..Default::default()
        };
        Ok(self.store.search(&grant, &query).await?.1 == Some(0))
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn to_stored(row: Row) -> Result<Stored> {
        let body = row
            .body
            .ok_or_else(|| Error::Gone(format!("{}/{} was deleted", row.rtype, row.id)))?;
        Ok(Stored {
            rtype: row.rtype,
            id: row.id,
            version: row.version,
            last_updated: row.last_updated,
            body,
        })
    }

    /// Validates a resource's JSON text for `rtype` (and `id` on update) and prepares its next version.
    async fn prepare(
        &self,
        grant: &Grant,
        rtype: &str,
        id: Option<&str>,
        text: &str,
        expect: Option<i64>,
    ) -> Result<Prepared> {
        let (value, raw) = fjson::parse(text)?;
        self.prepare_value(grant, rtype, id, &value, &raw, expect).await
    }

    async fn prepare_value(
        &self,
        grant: &Grant,
        rtype: &str,
        id: Option<&str>,
        value: &Value,
        raw: &RawObject,
        expect: Option<i64>,
    ) -> Result<Prepared> {
        let found = parse::validate(value)?;
        if found != rtype {
            return Err(Error::invalid(Issue::new(
                "invalid",
                format!("resourceType {found} does not match the URL's {rtype}"),
            )));
        }
        let violations = self.profiles.check(rtype, value);
        if !violations.is_empty() {
            return Err(Error::Unprocessable(violations));
        }
        let body_id = value.get("id").and_then(Value::as_str);
        let id = match (id, body_id) {
            (Some(url_id), Some(b)) if url_id != b => {
                return Err(Error::invalid(
                    Issue::new("invalid", format!("id {b} does not match the URL's {url_id}")).at("id"),
                ));
            }
            (Some(url_id), None) => {
                return Err(Error::invalid(
                    Issue::new(
                        "required",
                        format!("the resource must carry its id ({url_id}) on update"),
                    )
                    .at("id"),
                ));
            }
            (Some(url_id), Some(_)) => {
                if !parse::valid_id(url_id) {
                    return Err(Error::invalid(Issue::new("value", format!("invalid id '{url_id}'"))));
                }
                url_id.to_owned()
            }
            (None, _) => uuid::Uuid::new_v4().to_string(),
        };
        let head = if body_id.is_some() || expect.is_some() || grant.action() == Action::Update {
            self.store.head(grant, rtype, &id).await?
        } else {
            None
        };
        if let (Some(want), Some(h)) = (expect, head) {
            if h.version != want {
                return Err(Error::PreconditionFailed(format!(
                    "{rtype}/{id} is at version {}, not {want}",
                    h.version
                )));
            }
        } else if expect.is_some() && head.is_none() {
            return Err(Error::PreconditionFailed(format!("{rtype}/{id} does not exist")));
        }
        let version = head.map_or(1, |h| h.version + 1);
        let now = self.clock.now_millis();
        let mut meta = value
            .get("meta")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        meta["versionId"] = json!(version.to_string());
        meta["lastUpdated"] = json!(clock::instant(now));
        let body = raw.stamped(rtype, &id, &meta);
        let index = extract::index(&self.registry, rtype, value, &self.base);
        let compartments = extract::compartments(rtype, &id, &index);
        if !grant.covers(&compartments) {
            return Err(Error::Forbidden(format!(
                "this {rtype} is outside the records you may change"
            )));
        }
        Ok(Prepared {
            created: head.is_none_or(|h| h.deleted),
            patients: compartments.clone(),
            write: VersionWrite {
                rtype: rtype.to_owned(),
                id: id.clone(),
                prev_version: head.map(|h| h.version),
                version,
                last_updated: now,
                body: Some(body.clone()),
                index,
                compartments,
            },
            stored: Stored {
                rtype: rtype.to_owned(),
                id,
                version,
                last_updated: now,
                body,
            },
        })
    }

    /// The AuditEvent write for an access to `what` in `patients`' compartments.
    fn audit_write(
        &self,
        grant: &Grant,
        interaction: &'static str,
        what: &[String],
        patients: &[String],
        query: Option<&str>,
    ) -> Result<VersionWrite> {
        let now = self.clock.now_millis();
        let recorded = clock::instant(now);
        let event = audit::event(&audit::Access {
            grant,
            interaction,
            what,
            patients,
            query,
            recorded: &recorded,
        });
        let id = uuid::Uuid::new_v4().to_string();
        let meta = json!({ "versionId": "1", "lastUpdated": recorded });
        let raw: RawObject = serde_json::from_value(event.clone()).map_err(|e| Error::Store(e.to_string()))?;
        let index = extract::index(&self.registry, "AuditEvent", &event, &self.base);
        let compartments = extract::compartments("AuditEvent", &id, &index);
        Ok(VersionWrite {
            rtype: "AuditEvent".into(),
            body: Some(raw.stamped("AuditEvent", &id, &meta)),
            id,
            prev_version: None,
            version: 1,
            last_updated: now,
            index,
            compartments,
        })
    }

    /// Records a read-side access (after the data was fetched; a failed audit fails the request).
    async fn audit_read(
        &self,
        grant: &Grant,
        interaction: &'static str,
        rows: &[Stored],
        query: Option<&str>,
    ) -> Result<()> {
        let touched = self.touched(grant, rows);
        let writes = self.audit_writes(grant, interaction, &touched, query)?;
        self.audit.record(writes).await
    }

    /// Each row as `Type/id` with the patients whose data it is (within the grant's patients, if limited).
    fn touched(&self, grant: &Grant, rows: &[Stored]) -> Vec<(String, Vec<String>)> {
        rows.iter()
            .map(|r| {
                let mut patients = serde_json::from_str::<Value>(&r.body)
                    .map(|v| extract::owners(&self.registry, &r.rtype, &r.id, &v, &self.base))
                    .unwrap_or_default();
                if let Some(mine) = grant.patients() {
                    patients.retain(|p| mine.contains(p));
                }
                (format!("{}/{}", r.rtype, r.id), patients)
            })
            .collect()
    }

    /// The AuditEvents for one access. Each patient gets an event naming only their own resources, so no
    /// patient's audit trail shows another's data; when several patients were touched, one more event without
    /// a patient (for the practice) holds the query and the non-Patient resources.
    fn audit_writes(
        &self,
        grant: &Grant,
        interaction: &'static str,
        touched: &[(String, Vec<String>)],
        query: Option<&str>,
    ) -> Result<Vec<VersionWrite>> {
        let mut patients: Vec<&String> = touched.iter().flat_map(|(_, p)| p).collect();
        patients.sort();
        patients.dedup();
        let all: Vec<String> = touched.iter().map(|(r, _)| r.clone()).collect();
        if patients.len() <= 1 {
            let patients: Vec<String> = patients.into_iter().cloned().collect();
            return Ok(vec![self.audit_write(grant, interaction, &all, &patients, query)?]);
        }
        let mut writes = Vec::with_capacity(patients.len() + 1);
        for p in &patients {
            let theirs: Vec<String> = touched
                .iter()
                .filter(|(_, ps)| ps.contains(p))
                .map(|(r, _)| r.clone())
                .collect();
            writes.push(self.audit_write(grant, interaction, &theirs, std::slice::from_ref(p), None)?);
        }
        let practice: Vec<String> = all.into_iter().filter(|r| !r.starts_with("Patient/")).collect();
        writes.push(self.audit_write(grant, interaction, &practice, &[], query)?);
        Ok(writes)
    }

    async fn commit(&self, grant: &Grant, interaction: &'static str, prepared: Vec<Prepared>) -> Result<Vec<Written>> {
        let touched: Vec<(String, Vec<String>)> = prepared
            .iter()
            .map(|p| (format!("{}/{}", p.stored.rtype, p.stored.id), p.patients.clone()))
            .collect();
        let mut writes: Vec<VersionWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        writes.extend(self.audit_writes(grant, interaction, &touched, None)?);
        self.store.write(grant, writes).await?;
        Ok(prepared
            .into_iter()
            .map(|p| Written {
                resource: p.stored,
                created: p.created,
            })
            .collect())
    }

    pub async fn read(&self, actor: &Actor, rtype: &str, id: &str) -> Result<Stored> {
        let grant = access::authorize(actor, Action::Read, rtype)?;
        let row = self
            .store
            .read(&grant, rtype, id)
            .await?
            .ok_or_else(|| not_found(rtype, id))?;
        let stored = Self::to_stored(row)?;
        self.audit_read(&grant, "read", std::slice::from_ref(&stored), None)
            .await?;
        Ok(stored)
    }

    pub async fn vread(&self, actor: &Actor, rtype: &str, id: &str, version: i64) -> Result<Stored> {
        let grant = access::authorize(actor, Action::Read, rtype)?;
        let row = self
            .store
            .vread(&grant, rtype, id, version)
            .await?
            .ok_or_else(|| not_found(rtype, &format!("{id}/_history/{version}")))?;
        let stored = Self::to_stored(row)?;
        self.audit_read(&grant, "vread", std::slice::from_ref(&stored), None)
            .await?;
        Ok(stored)
    }

    /// Creates from JSON text; the server assigns the id.
    pub async fn create(&self, actor: &Actor, rtype: &str, text: &str) -> Result<Written> {
        let grant = access::authorize(actor, Action::Create, rtype)?;
        let (mut value, raw) = fjson::parse(text)?;
        if let Some(id) = value.get("id").filter(|id| !id.as_str().is_some_and(parse::valid_id)) {
            return Err(Error::invalid(
                Issue::new("value", format!("invalid id {id} (1-64 of A-Z a-z 0-9 - .)")).at(format!("{rtype}.id")),
            ));
        }
        // A client id on create is ignored (the server assigns one), as the spec says.
        if let Some(obj) = value.as_object_mut() {
            obj.remove("id");
        }
        let prepared = self.prepare_value(&grant, rtype, None, &value, &raw, None).await?;
        Ok(self.commit(&grant, "create", vec![prepared]).await?.remove(0))
    }

    /// The matches (at most two) of conditional criteria (`If-None-Exist`, conditional update and delete).
    pub async fn matches(&self, actor: &Actor, rtype: &str, criteria: &str) -> Result<Vec<Stored>> {
        let params: Vec<(String, String)> = form_urlencoded::parse(criteria.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
        let mut req = search::parse(rtype, &params, &self.registry, self.limits, &self.base)?;
        // Criteria that would match everything (none, or only parameters we ignore) must not pick a resource.
        if !req.ignored.is_empty() || req.query.clauses.is_empty() {
            let why = req
                .ignored
                .first()
                .cloned()
                .unwrap_or_else(|| "no search criteria".into());
            return Err(Error::invalid(Issue::new(
                "processing",
                format!("conditional criteria '{criteria}': {why}"),
            )));
        }
        req.query.count = 2;
        req.query.total = false;
        let grant = access::authorize(actor, Action::Search, rtype)?;
        let (rows, _) = self.store.search(&grant, &req.query).await?;
        let found: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        self.audit_read(&grant, "search-type", &found, Some(criteria)).await?;
        Ok(found)
    }

    /// Update (or create with the client's id); `if_match` is the version the client read.
    pub async fn update(
        &self,
        actor: &Actor,
        rtype: &str,
        id: &str,
        text: &str,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let grant = access::authorize(actor, Action::Update, rtype)?;
        // Without If-Match a concurrent writer is not an error: take the newer head and try again.
        for _ in 0..5 {
            let prepared = self.prepare(&grant, rtype, Some(id), text, if_match).await?;
            match self.commit(&grant, "update", vec![prepared]).await {
                Err(Error::Conflict(_)) if if_match.is_none() => continue,
                Err(Error::Conflict(why)) => return Err(Error::PreconditionFailed(why)),
                other => return other.map(|mut w| w.remove(0)),
            }
        }
        Err(Error::Conflict(format!(
            "{rtype}/{id} is being changed by others; try again"
        )))
    }

    pub async fn delete(&self, actor: &Actor, rtype: &str, id: &str) -> Result<()> {
        let grant = access::authorize(actor, Action::Delete, rtype)?;
        // Deleting what is not there (or already deleted) succeeds: delete is idempotent.
        if let Some(p) = self.prepare_delete(&grant, rtype, id).await? {
            self.commit(&grant, "delete", vec![p]).await?;
        }
        Ok(())
    }

    /// The tombstone version that deletes a resource, or `None` if there is nothing to delete.
    async fn prepare_delete(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Prepared>> {
        let Some(row) = self.store.read(grant, rtype, id).await? else {
            return Ok(None);
        };
        if row.body.is_none() {
            return Ok(None);
        }
        let version = row.version + 1;
        let patients = self.touched(grant, &[Self::to_stored(row.clone())?]).remove(0).1;
        let now = self.clock.now_millis();
        Ok(Some(Prepared {
            write: VersionWrite {
                rtype: rtype.to_owned(),
                id: id.to_owned(),
                prev_version: Some(row.version),
                version,
                last_updated: now,
                body: None,
                index: Vec::new(),
                compartments: Vec::new(),
            },
            stored: Stored {
                rtype: rtype.to_owned(),
                id: id.to_owned(),
                version,
                last_updated: now,
                body: String::new(),
            },
            created: false,
            patients,
        }))
    }

    pub async fn history(
        &self,
        actor: &Actor,
        rtype: Option<&str>,
        id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<String> {
        let grant = access::authorize(actor, Action::Read, rtype.unwrap_or("*"))?;
        let mut query = HistoryQuery {
            rtype: rtype.map(str::to_owned),
            id: id.map(str::to_owned),
            since: None,
            count: self.limits.default_count,
            offset: 0,
        };
        for (k, v) in params {
            match k.as_str() {
                "_since" => query.since = Some(since(k, v)?),
                "_count" => query.count = self.count(k, v)?,
                "_offset" => query.offset = offset(k, v)?,
                _ => {}
            }
        }
        let (rows, total) = self.store.history(&grant, &query).await?;
        // An instance with no versions in range is an empty history; one that never existed (for this grant) is 404.
        if let (Some(rtype), Some(id), true) = (rtype, id, total == 0)
            && self.store.read(&grant, rtype, id).await?.is_none()
        {
            return Err(not_found(rtype, id));
        }
        let stored: Vec<Stored> = rows.iter().filter_map(|r| Self::to_stored(r.clone()).ok()).collect();
        self.audit_read(
            &grant,
            if id.is_some() {
                "history-instance"
            } else {
                "history-type"
            },
            &stored,
            None,
        )
        .await?;
        let path = match (rtype, id) {
            (Some(t), Some(i)) => format!("{t}/{i}/_history"),
            (Some(t), None) => format!("{t}/_history"),
            _ => "_history".to_owned(),
        };
        let used: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "_offset").cloned().collect();
        let page = bundle::Page {
            path,
            params: &used,
            total: Some(total),
            count: query.count,
            offset: query.offset,
        };
        Ok(bundle::history(&self.base, &page, &rows))
    }

    /// A search; `strict` refuses parameters the server would otherwise ignore (`Prefer: handling=strict`).
    pub async fn search(
        &self,
        actor: &Actor,
        rtype: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<String> {
        let req = search::parse(rtype, params, &self.registry, self.limits, &self.base)?;
        if strict && !req.ignored.is_empty() {
            return Err(Error::Invalid(
                req.ignored
                    .iter()
                    .map(|w| Issue::new("not-supported", w.clone()))
                    .collect(),
            ));
        }
        let grant = access::authorize(actor, Action::Search, rtype)?;
        self.run_search(&grant, rtype, &req).await
    }

    async fn run_search(&self, grant: &Grant, rtype: &str, req: &SearchRequest) -> Result<String> {
        let (rows, total) = self.store.search(grant, &req.query).await?;
        let matches: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        let mut included = Vec::new();
        for inc in &req.includes {
            let mut refs = Vec::new();
            for m in &matches {
                let Ok(v) = serde_json::from_str::<Value>(&m.body) else {
                    continue;
                };
                for e in extract::index(&self.registry, rtype, &v, &self.base) {
                    if let (true, crate::store::IndexValue::Reference { target }) = (e.param == inc.param, &e.value)
                        && let Some((t, i)) = target
                            .split_once('/')
                            .filter(|(t, _)| inc.target.as_deref().is_none_or(|want| want == *t))
                        && !i.contains('/')
                        && crate::fhir::types::is_supported(t)
                    {
                        refs.push((t.to_owned(), i.to_owned()));
                    }
                }
            }
            refs.sort();
            refs.dedup();
            included.extend(
                self.store
                    .read_many(grant, &refs)
                    .await?
                    .into_iter()
                    .filter_map(|r| Self::to_stored(r).ok()),
            );
        }
        for rev in &req.revincludes {
            let targets: Vec<String> = matches.iter().map(|m| format!("{}/{}", m.rtype, m.id)).collect();
            let rows = self
                .store
                .referencing(grant, &rev.source, &rev.param, &targets, self.limits.max_count)
                .await?;
            included.extend(rows.into_iter().filter_map(|r| Self::to_stored(r).ok()));
        }
        let query_text = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&req.used)
            .finish();
        let mut audited = matches.clone();
        audited.extend(included.iter().cloned());
        self.audit_read(grant, "search-type", &audited, Some(&query_text))
            .await?;
        Ok(bundle::searchset(&self.base, rtype, req, &matches, &included, total))
    }

    /// `Patient/{id}/$everything`: the patient's whole compartment, paged.
    pub async fn everything(&self, actor: &Actor, patient: &str, params: &[(String, String)]) -> Result<String> {
        let grant = access::authorize(actor, Action::Read, "Patient")?;
        let row = self
            .store
            .read(&grant, "Patient", patient)
            .await?
            .ok_or_else(|| not_found("Patient", patient))?;
        Self::to_stored(row)?; // a deleted patient answers 410
        let mut filter = CompartmentFilter {
            count: self.limits.max_count,
            exclude: vec!["AuditEvent".into()],
            ..CompartmentFilter::default()
        };
        let (mut start, mut end) = (None, None);
        for (k, v) in params {
            match k.as_str() {
                "_since" => filter.since = Some(since(k, v)?),
                "_type" => filter.types = v.split(',').map(str::to_owned).collect(),
                "_count" => filter.count = self.count(k, v)?.max(1),
                "_offset" => filter.offset = offset(k, v)?,
                "start" => start = Some(date_range(k, v)?.0),
                "end" => end = Some(date_range(k, v)?.1),
                _ => {}
            }
        }
        if start.is_some() || end.is_some() {
            filter.clinical = Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)));
        }
        let (rows, total) = self.store.compartment(&grant, patient, &filter).await?;
        let stored: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        // Plus what the page refers to that belongs to no patient (who treated them, where, with what).
        let mut refs: Vec<(String, String)> = stored
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .flat_map(|v| extract::references(&v, &self.base))
            .filter(|(t, _)| SHARED_TYPES.contains(&t.as_str()))
            .collect();
        refs.sort();
        refs.dedup();
        let referenced: Vec<Stored> = self
            .store
            .read_many(&grant, &refs)
            .await?
            .into_iter()
            .map(Self::to_stored)
            .collect::<Result<_>>()?;
        let mut audited = stored.clone();
        audited.extend(referenced.iter().cloned());
        self.audit_read(&grant, "operation", &audited, None).await?;
        let used: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "_offset").cloned().collect();
        let page = bundle::Page {
            path: format!("Patient/{patient}/$everything"),
            params: &used,
            total: Some(total),
            count: filter.count,
            offset: filter.offset,
        };
        Ok(bundle::everything(&self.base, &page, &stored, &referenced))
    }
}

/// Types that hold no patient's data but that records refer to; `$everything` includes the ones referenced.
const SHARED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "HealthcareService",
    "Endpoint",
    "Substance",
];

pub fn not_found(rtype: &str, id: &str) -> Error {
    Error::NotFound(format!("{rtype}/{id} is not known"))
}

/// `_since`: an instant (or, leniently, a date) as epoch milliseconds.
fn since(k: &str, v: &str) -> Result<i64> {
    clock::parse_rfc3339(v)
        .or_else(|| datetime::range(v).map(|r| r.0))
        .ok_or_else(|| bad_param(k, v))
}

fn offset(k: &str, v: &str) -> Result<i64> {
    search::offset(v).ok_or_else(|| bad_param(k, v))
}

fn date_range(k: &str, v: &str) -> Result<(i64, i64)> {
    datetime::range(v).ok_or_else(|| bad_param(k, v))
}

fn bad_param(k: &str, v: &str) -> Error {
    Error::invalid(Issue::new("processing", format!("parameter {k}: invalid value '{v}'")))
}
