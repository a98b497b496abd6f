//! Batch and transaction Bundles. A transaction is validated whole and written in one store transaction
//! (all or nothing), with `urn:uuid:` references rewritten to the ids the server assigns and conditional
//! URLs (`Patient?identifier=…`) resolved; a batch runs each entry on its own and reports each outcome.
//! Import uses the transaction rules but, when a Bundle fails, loads it entry by entry and reports the
//! entries that failed.

use serde_json::{Value, json};

use super::bundle::{self, BundleEntry};
use super::{Prepared, Records, Stored, Written};
use crate::access::{Action, Actor};
use crate::clock;
use crate::error::{Error, Issue, Result};
use crate::fhir::json::{self as fjson, RawObject};
use crate::fhir::parse::valid_id;

/// One entry of the request Bundle, read out.
struct Entry {
    index: usize,
    method: String,
    url: String,
    full_url: Option<String>,
    if_none_exist: Option<String>,
    if_match: Option<i64>,
    /// The resource's JSON text (references rewritten in a transaction).
    text: Option<String>,
}

/// How ids are chosen for POSTed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// The server assigns new ids (the REST API).
    Assign,
    /// A `urn:uuid:` fullUrl becomes the id, so importing the same Bundle twice updates instead of duplicating.
    FromFullUrl,
}

/// What an import of one Bundle did: entries loaded, and each entry that failed with why.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: usize,
    pub failed: Vec<(usize, Error)>,
}

/// `W/"3"` or `"3"` or `3` → 3.
pub fn parse_etag(tag: &str) -> Option<i64> {
    tag.trim().trim_start_matches("W/").trim_matches('"').parse().ok()
}

fn bad(index: usize, why: &str) -> Error {
    Error::invalid(Issue::new("invalid", why.to_owned()).at(format!("Bundle.entry[{index}]")))
}

/// Adds the entry index to the paths of a validation error.
fn at_entry(index: usize, err: Error) -> Error {
    let prefix = |issues: Vec<Issue>| {
        issues
            .into_iter()
            .map(|mut i| {
                let inner = i.expression.take().map(|e| format!(".{e}")).unwrap_or_default();
                i.expression = Some(format!("Bundle.entry[{index}].resource{inner}"));
                i
            })
            .collect()
    };
    match err {
        Error::Invalid(issues) => Error::Invalid(prefix(issues)),
        Error::Unprocessable(issues) => Error::Unprocessable(prefix(issues)),
        other => other,
    }
}

/// `(Type, id, query)` of a request URL relative to the FHIR base (`Type`, `Type/id`, `Type?criteria`).
fn target(url: &str) -> (String, Option<String>, Option<String>) {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    match path.trim_matches('/').split_once('/') {
        Some((t, id)) => (t.to_owned(), Some(id.to_owned()), query),
        None => (path.trim_matches('/').to_owned(), None, query),
    }
}

fn entries(bundle: &Value, raw: &RawObject) -> Result<Vec<Entry>> {
    let raw_entries: Vec<RawObject> = raw
        .0
        .iter()
        .find(|(k, _)| k == "entry")
        .map(|(_, v)| serde_json::from_str::<Vec<RawObject>>(v.get()))
        .transpose()
        .map_err(|e| Error::invalid(Issue::new("structure", e.to_string()).at("Bundle.entry")))?
        .unwrap_or_default();
    let values = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    values
        .iter()
        .zip(raw_entries)
        .enumerate()
        .map(|(index, (v, raw))| {
            let request = v.get("request");
            let field = |k: &str| {
                request
                    .and_then(|r| r.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let text = raw
                .0
                .into_iter()
                .find(|(k, _)| k == "resource")
                .map(|(_, r)| r.get().to_owned());
            let if_match = field("ifMatch")
                .map(|m| parse_etag(&m).ok_or_else(|| bad(index, "ifMatch must be an ETag like W/\"3\"")))
                .transpose()?;
            Ok(Entry {
                index,
                method: field("method").ok_or_else(|| bad(index, "request.method is required"))?,
                url: field("url").ok_or_else(|| bad(index, "request.url is required"))?,
                full_url: v.get("fullUrl").and_then(Value::as_str).map(str::to_owned),
                if_none_exist: field("ifNoneExist"),
                if_match,
                text,
            })
        })
        .collect()
}

/// An entry's id, decided before validation, and the resource its `ifNoneExist` matched, if any.
struct Planned {
    id: Option<String>,
    existing: Option<Stored>,
}

/// At most one match of conditional criteria; more is a 412.
fn one_match(found: Result<Vec<Stored>>, what: &str) -> Result<Option<Stored>> {
    let found = found?;
    match found.len() {
        0 | 1 => Ok(found.into_iter().next()),
        _ => Err(Error::PreconditionFailed(format!(
            "{what} matches more than one resource"
        ))),
    }
}

/// The conditional references (`Type?criteria`) in a resource's JSON text.
fn conditional_references(text: &str) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("reference")
                    && r.contains('?')
                    && r.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    out.push(r.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        walk(&v, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// A write a transaction entry resolved to.
enum Step {
    Write(Prepared),
    /// Nothing to write (a conditional create that matched, a delete of nothing): the response is known.
    Done(BundleEntry),
    Read,
}

impl Records {
    /// Runs a `batch` or `transaction` Bundle (JSON text) and answers with the response Bundle.
    pub async fn transaction(&self, actor: &Actor, text: &str, ids: Ids) -> Result<String> {
        let (value, raw) = fjson::parse(text)?;
        if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::invalid(Issue::new(
                "invalid",
                "POST to the base takes a batch or transaction Bundle",
            )));
        }
        let mut entries = entries(&value, &raw)?;
        match value.get("type").and_then(Value::as_str).unwrap_or("") {
            "transaction" => {
                let responses = self.run_transaction(actor, &mut entries, ids).await?;
                Ok(bundle::bundle("transaction-response", None, Vec::new(), responses))
            }
            "batch" => Ok(self.run_batch(actor, &mut entries).await),
            other => Err(Error::invalid(
                Issue::new(
                    "invalid",
                    format!("Bundle.type must be batch or transaction, not '{other}'"),
                )
                .at("Bundle.type"),
            )),
        }
    }

    /// Imports a transaction Bundle whole; if it fails, entry by entry with the same ids and references.
    pub async fn import_transaction(&self, actor: &Actor, text: &str) -> Result<Loaded> {
        let (value, raw) = fjson::parse(text)?;
        let mut entries = entries(&value, &raw)?;
        let writes = entries.iter().filter(|e| e.method != "GET").count();
        if self
            .run_transaction(actor, &mut entries, Ids::FromFullUrl)
            .await
            .is_ok()
        {
            return Ok(Loaded {
                resources: writes,
                failed: Vec::new(),
            });
        }
        let mut loaded = Loaded::default();
        let planned = self.plan(actor, &mut entries, Ids::FromFullUrl).await?;
        for (e, planned) in entries.iter().zip(&planned).filter(|(e, _)| e.method != "GET") {
            let one = self.resolve(actor, e, planned).await;
            let result = match one {
                Ok(Step::Write(p)) => self.commit_batch(actor, vec![p]).await.map(drop),
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => loaded.resources += 1,
                Err(err) => loaded.failed.push((e.index, at_entry(e.index, err))),
            }
        }
        Ok(loaded)
    }

    /// Decides each entry's id before anything is validated: POST gets a new id (or the one its `ifNoneExist`
    /// matched), a conditional PUT the id of its match; then every `urn:` reference to an entry is rewritten to
    /// `Type/id`, and conditional references (`Organization?identifier=…`) to their one match.
    async fn plan(&self, actor: &Actor, entries: &mut [Entry], ids: Ids) -> Result<Vec<Planned>> {
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut planned = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            let (rtype, url_id, criteria) = target(&e.url);
            let mut existing = None;
            let id = match (e.method.as_str(), &criteria) {
                ("POST", _) => {
                    if let Some(c) = &e.if_none_exist {
                        existing = one_match(self.matches(actor, &rtype, c).await, "ifNoneExist")
                            .map_err(|err| at_entry(e.index, err))?;
                    }
                    let from_url = e
                        .full_url
                        .as_deref()
                        .and_then(|u| u.strip_prefix("urn:uuid:"))
                        .filter(|u| valid_id(u));
                    Some(match (&existing, ids, from_url) {
                        (Some(found), _, _) => found.id.clone(),
                        (None, Ids::FromFullUrl, Some(u)) => u.to_owned(),
                        _ => super::new_id(),
                    })
                }
                ("PUT", Some(c)) => Some(
                    one_match(self.matches(actor, &rtype, c).await, "the conditional update")
                        .map_err(|err| at_entry(e.index, err))?
                        .map_or_else(super::new_id, |m| m.id),
                ),
                _ => url_id,
            };
            if let (Some(full), Some(id)) = (&e.full_url, &id)
                && full.starts_with("urn:")
            {
                renames.push((
                    Value::from(full.as_str()).to_string(),
                    Value::from(format!("{rtype}/{id}")).to_string(),
                ));
            }
            planned.push(Planned { id, existing });
        }
        for e in entries.iter_mut() {
            let Some(text) = e.text.as_mut() else { continue };
            for (from, to) in &renames {
                if text.contains(from.as_str()) {
                    *text = text.replace(from.as_str(), to);
                }
            }
            for conditional in conditional_references(text) {
                let Some((rtype, query)) = conditional.split_once('?') else {
                    continue;
                };
                // No match leaves the reference as written (it may name a resource another system holds).
                if let Some(found) = one_match(self.matches(actor, rtype, query).await, "a conditional reference")
                    .map_err(|err| at_entry(e.index, err))?
                {
                    let quoted = Value::from(conditional.as_str()).to_string();
                    *text = text.replace(&quoted, &Value::from(format!("{rtype}/{}", found.id)).to_string());
                }
            }
        }
        Ok(planned)
    }

    /// Turns one entry into what it will write, checking conditions (ifNoneExist, conditional URLs, ifMatch).
    async fn resolve(&self, actor: &Actor, e: &Entry, planned: &Planned) -> Result<Step> {
        let (rtype, _, criteria) = target(&e.url);
        if rtype.starts_with('$') || e.url.contains("/$") {
            return Err(Error::NotSupported(format!(
                "operations inside a Bundle are not supported ({})",
                e.url
            )));
        }
        match e.method.as_str() {
            "POST" | "PUT" => {
                let text = e
                    .text
                    .as_deref()
                    .ok_or_else(|| bad(e.index, "a POST or PUT entry needs a resource"))?;
                if let Some(existing) = &planned.existing {
                    return Ok(Step::Done(response_entry(existing, "200 OK")));
                }
                let id = planned
                    .id
                    .clone()
                    .ok_or_else(|| bad(e.index, "PUT needs Type/id in request.url"))?;
                let action = if e.method == "POST" {
                    Action::Create
                } else {
                    Action::Update
                };
                let grant = self.authorize(actor, action, &rtype)?;
                let (mut value, raw) = fjson::parse(text)?;
                if let (true, Some(body_id)) = (
                    criteria.is_none() && e.method == "PUT",
                    value.get("id").and_then(Value::as_str),
                ) && body_id != id
                {
                    return Err(bad(
                        e.index,
                        &format!("the resource's id {body_id} does not match request.url"),
                    ));
                }
                // A POSTed resource's own id is ignored: it gets the one planned.
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("id".into(), Value::String(id.clone()));
                }
                Ok(Step::Write(
                    self.prepare_value(&grant, &rtype, Some(&id), &value, &raw, e.if_match)
                        .await?,
                ))
            }
            "DELETE" => {
                let grant = self.authorize(actor, Action::Delete, &rtype)?;
                let id = match (&criteria, &planned.id) {
                    (Some(c), _) => {
                        one_match(self.matches(actor, &rtype, c).await, "the conditional delete")?.map(|m| m.id)
                    }
                    (None, Some(id)) => Some(id.clone()),
                    (None, None) => return Err(bad(e.index, "DELETE needs Type/id or Type?criteria in request.url")),
                };
                let prepared = match id {
                    Some(id) => self.prepare_delete(&grant, &rtype, &id).await?,
                    None => None,
                };
                if let (Some(want), Some(p)) = (e.if_match, &prepared)
                    && p.write.prev_version != Some(want)
                {
                    return Err(Error::PreconditionFailed(format!("{rtype} is not at version {want}")));
                }
                Ok(prepared.map_or_else(|| Step::Done(status_entry("204 No Content")), Step::Write))
            }
            "GET" => Ok(Step::Read),
            other => Err(bad(
                e.index,
                &format!("method {other} is not supported in a transaction"),
            )),
        }
    }

    async fn run_transaction(&self, actor: &Actor, entries: &mut [Entry], ids: Ids) -> Result<Vec<BundleEntry>> {
        let planned = self.plan(actor, entries, ids).await?;
        // Processing order per the spec: DELETE, POST, PUT, GET.
        let rank = |m: &str| match m {
            "DELETE" => 0,
            "POST" => 1,
            "PUT" | "PATCH" => 2,
            _ => 3,
        };
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|i| rank(&entries[*i].method));
        let mut responses: Vec<Option<BundleEntry>> = (0..entries.len()).map(|_| None).collect();
        let mut writes: Vec<(usize, Prepared)> = Vec::new();
        let mut reads = Vec::new();
        for i in order {
            let e = &entries[i];
            match self
                .resolve(actor, e, &planned[i])
                .await
                .map_err(|err| at_entry(e.index, err))?
            {
                Step::Write(p) => {
                    let key = (&p.write.rtype, &p.write.id);
                    if writes.iter().any(|(_, w)| (&w.write.rtype, &w.write.id) == key) {
                        return Err(bad(
                            e.index,
                            &format!("{}/{} appears twice in the transaction", key.0, key.1),
                        ));
                    }
                    writes.push((i, p));
                }
                Step::Done(response) => responses[i] = Some(response),
                Step::Read => reads.push(i),
            }
        }
        let (indices, batch): (Vec<usize>, Vec<Prepared>) = writes.into_iter().unzip();
        for (i, w) in indices.into_iter().zip(self.commit_batch(actor, batch).await?) {
            responses[i] = Some(if w.resource.body.is_empty() {
                status_entry("204 No Content")
            } else {
                written_entry(&w)
            });
        }
        for i in reads {
            responses[i] = Some(self.get_entry(actor, &entries[i].url).await);
        }
        Ok(responses.into_iter().flatten().collect())
    }

    /// Writes prepared entries in one store transaction, with one AuditEvent.
    async fn commit_batch(&self, actor: &Actor, batch: Vec<Prepared>) -> Result<Vec<Written>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // The audit's action: create or delete when every entry is one, update otherwise. Each entry was
        // authorized for its own action when it was prepared.
        let action = if batch.iter().all(|p| p.created) {
            Action::Create
        } else if batch.iter().all(|p| p.write.body.is_none()) {
            Action::Delete
        } else {
            Action::Update
        };
        let grant = self.authorize(actor, action, &batch[0].write.rtype)?;
        self.commit(&grant, "transaction", batch).await
    }

    async fn run_batch(&self, actor: &Actor, entries: &mut [Entry]) -> String {
        let mut out = Vec::new();
        for e in entries {
            let planned = self.plan(actor, std::slice::from_mut(e), Ids::Assign).await;
            let result = match (e.method.as_str(), planned) {
                ("GET", _) => Ok(self.get_entry(actor, &e.url).await),
                (_, Err(err)) => Err(err),
                (_, Ok(planned)) => match self.resolve(actor, e, &planned[0]).await {
                    Ok(Step::Write(p)) => self.commit_batch(actor, vec![p]).await.map(|mut w| {
                        let w = w.remove(0);
                        if w.resource.body.is_empty() {
                            status_entry("204 No Content")
                        } else {
                            written_entry(&w)
                        }
                    }),
                    Ok(Step::Done(response)) => Ok(response),
                    Ok(Step::Read) => Ok(self.get_entry(actor, &e.url).await),
                    Err(err) => Err(err),
                },
            };
            out.push(result.unwrap_or_else(|err| error_entry(&err)));
        }
        bundle::bundle("batch-response", None, Vec::new(), out)
    }

    /// A GET inside a batch or transaction: read, vread or search.
    async fn get_entry(&self, actor: &Actor, url: &str) -> BundleEntry {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match parts.as_slice() {
            [t] => self.search(actor, t, &params, false).await.map(|b| BundleEntry {
                resource: Some(fjson::raw(b)),
                ..status_entry("200 OK")
            }),
            [t, id] => self.read(actor, t, id).await.map(|r| response_entry(&r, "200 OK")),
            [t, id, "_history", v] => match v.parse() {
                Ok(v) => self.vread(actor, t, id, v).await.map(|r| response_entry(&r, "200 OK")),
                Err(_) => Err(Error::NotFound(url.to_owned())),
            },
            _ => Err(Error::NotSupported(format!("GET {url} inside a Bundle"))),
        };
        result.unwrap_or_else(|err| error_entry(&err))
    }
}

fn status_entry(status: &str) -> BundleEntry {
    BundleEntry {
        full_url: None,
        resource: None,
        search: None,
        request: None,
        response: Some(json!({ "status": status })),
    }
}

fn written_entry(w: &Written) -> BundleEntry {
    response_entry(&w.resource, if w.created { "201 Created" } else { "200 OK" })
}

fn response_entry(r: &Stored, status: &str) -> BundleEntry {
    BundleEntry {
        full_url: None,
        resource: Some(fjson::raw(r.body.clone())),
        search: None,
        request: None,
        response: Some(json!({
            "status": status,
            "location": format!("{}/{}/_history/{}", r.rtype, r.id, r.version),
            "etag": format!("W/\"{}\"", r.version),
            "lastModified": clock::instant(r.last_updated),
        })),
    }
}

fn error_entry(err: &Error) -> BundleEntry {
    let (status, outcome) = crate::fhir_api::outcome::status_and_outcome(err);
    BundleEntry {
        resource: Some(fjson::raw(outcome.to_string())),
        ..status_entry(&format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ))
    }
}
