//! Batch and transaction Bundles. A transaction is validated whole and written in one store transaction
//! (all or nothing), with `urn:uuid:` references rewritten to the ids the server assigns; a batch runs each
//! entry on its own and reports each outcome.

use serde_json::{Value, json};

use super::bundle::{self, BundleEntry};
use super::{Prepared, Records, Stored, Written};
use crate::access::{self, Action, Actor};
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
                i.expression = Some(format!(
                    "Bundle.entry[{index}].resource{}",
                    i.expression.map(|e| format!(".{e}")).unwrap_or_default()
                ));
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

/// `Type` or `Type/id` (relative to the FHIR base) of a request URL.
fn target(url: &str) -> (String, Option<String>) {
    let path = url.split('?').next().unwrap_or(url).trim_matches('/');
    match path.split_once('/') {
        Some((t, id)) => (t.to_owned(), Some(id.to_owned())),
        None => (path.to_owned(), None),
    }
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
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let mut entries = entries(&value, &raw)?;
        match kind {
            "transaction" => self.run_transaction(actor, &mut entries, ids).await,
            "batch" => Ok(self.run_batch(actor, &entries).await),
            other => Err(Error::invalid(
                Issue::new(
                    "invalid",
                    format!("Bundle.type must be batch or transaction, not '{other}'"),
                )
                .at("Bundle.type"),
            )),
        }
    }

    async fn run_transaction(&self, actor: &Actor, entries: &mut [Entry], ids: Ids) -> Result<String> {
        // Ids first, so every urn:uuid reference can be rewritten before anything is validated.
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut assigned: Vec<Option<String>> = Vec::new();
        for e in entries.iter() {
            let (rtype, url_id) = target(&e.url);
            let id = match (e.method.as_str(), url_id) {
                ("POST", _) => {
                    let from_url = e
                        .full_url
                        .as_deref()
                        .and_then(|u| u.strip_prefix("urn:uuid:"))
                        .filter(|u| valid_id(u));
                    Some(match (ids, from_url) {
                        (Ids::FromFullUrl, Some(u)) => u.to_owned(),
                        _ => uuid::Uuid::new_v4().to_string(),
                    })
                }
                (_, id) => id,
            };
            if let (Some(full), Some(id)) = (&e.full_url, &id)
                && full.starts_with("urn:")
            {
                renames.push((full.clone(), format!("{rtype}/{id}")));
            }
            assigned.push(id);
        }
        for e in entries.iter_mut() {
            if let Some(text) = &mut e.text {
                for (from, to) in &renames {
                    let quoted = format!("\"{from}\"");
                    if text.contains(&quoted) {
                        *text = text.replace(&quoted, &format!("\"{to}\""));
                    }
                }
            }
        }
        // Processing order per the spec: DELETE, POST, PUT, GET.
        let rank = |m: &str| match m {
            "DELETE" => 0,
            "POST" => 1,
            "PUT" | "PATCH" => 2,
            _ => 3,
        };
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|i| rank(&entries[*i].method));
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        let mut responses: Vec<Option<BundleEntry>> = (0..entries.len()).map(|_| None).collect();
        let mut deletes = Vec::new();
        let mut reads = Vec::new();
        for i in order {
            let e = &entries[i];
            let (rtype, url_id) = target(&e.url);
            match e.method.as_str() {
                "POST" | "PUT" => {
                    let text = e
                        .text
                        .as_deref()
                        .ok_or_else(|| bad(e.index, "a POST or PUT entry needs a resource"))?;
                    if e.method == "POST"
                        && let Some(criteria) = &e.if_none_exist
                    {
                        let found = self
                            .matches(actor, &rtype, criteria)
                            .await
                            .map_err(|err| at_entry(e.index, err))?;
                        match found.as_slice() {
                            [] => {}
                            [one] => {
                                responses[i] = Some(response_entry(one, "200 OK"));
                                continue;
                            }
                            _ => {
                                return Err(Error::PreconditionFailed(format!(
                                    "entry {}: ifNoneExist matches more than one resource",
                                    e.index
                                )));
                            }
                        }
                    }
                    let action = if e.method == "POST" {
                        Action::Create
                    } else {
                        Action::Update
                    };
                    let grant = access::authorize(actor, action, &rtype)?;
                    let id = assigned[i]
                        .clone()
                        .ok_or_else(|| bad(e.index, "PUT needs Type/id in request.url"))?;
                    let (mut value, raw) = fjson::parse(text).map_err(|err| at_entry(e.index, err))?;
                    if let Some(obj) = value.as_object_mut() {
                        obj.insert("id".into(), Value::String(id.clone()));
                    }
                    let p = self
                        .prepare_value(&grant, &rtype, Some(&id), &value, &raw, e.if_match)
                        .await
                        .map_err(|err| at_entry(e.index, err))?;
                    prepared.push((i, p));
                }
                "DELETE" => {
                    let id = url_id.ok_or_else(|| bad(e.index, "DELETE needs Type/id in request.url"))?;
                    deletes.push((i, rtype, id));
                }
                "GET" => reads.push(i),
                other => {
                    return Err(bad(
                        e.index,
                        &format!("method {other} is not supported in a transaction"),
                    ));
                }
            }
        }
        // Deletes run through the same single write as the rest: tombstones plus their audit.
        for (i, rtype, id) in &deletes {
            self.delete(actor, rtype, id)
                .await
                .map_err(|err| at_entry(entries[*i].index, err))?;
            responses[*i] = Some(BundleEntry {
                full_url: None,
                resource: None,
                search: None,
                request: None,
                response: Some(json!({ "status": "204 No Content" })),
            });
        }
        let grant = access::authorize(actor, Action::Update, "Bundle")?;
        let (indices, batch): (Vec<usize>, Vec<Prepared>) = prepared.into_iter().unzip();
        let written = if batch.is_empty() {
            Vec::new()
        } else {
            self.commit(&grant, "transaction", batch).await?
        };
        for (i, w) in indices.into_iter().zip(written) {
            let status = if w.created { "201 Created" } else { "200 OK" };
            responses[i] = Some(response_entry(&w.resource, status));
        }
        for i in reads {
            responses[i] = Some(self.get_entry(actor, &entries[i].url).await);
        }
        Ok(bundle::bundle(
            "transaction-response",
            None,
            Vec::new(),
            responses.into_iter().flatten().collect(),
        ))
    }

    async fn run_batch(&self, actor: &Actor, entries: &[Entry]) -> String {
        let mut out = Vec::new();
        for e in entries {
            let (rtype, id) = target(&e.url);
            let result: Result<BundleEntry> = match (e.method.as_str(), id, &e.text) {
                ("GET", _, _) => Ok(self.get_entry(actor, &e.url).await),
                ("POST", None, Some(text)) => self.create(actor, &rtype, text).await.map(|w| written_entry(&w)),
                ("PUT", Some(id), Some(text)) => self
                    .update(actor, &rtype, &id, text, e.if_match)
                    .await
                    .map(|w| written_entry(&w)),
                ("DELETE", Some(id), _) => self.delete(actor, &rtype, &id).await.map(|()| BundleEntry {
                    full_url: None,
                    resource: None,
                    search: None,
                    request: None,
                    response: Some(json!({ "status": "204 No Content" })),
                }),
                _ => Err(bad(e.index, &format!("cannot run {} {} in a batch", e.method, e.url))),
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
            [t] => self.search(actor, t, &params).await.map(|b| raw_entry(b, "200 OK")),
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

fn raw_entry(body: String, status: &str) -> BundleEntry {
    BundleEntry {
        full_url: None,
        resource: Some(fjson::raw(body)),
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
        full_url: None,
        resource: Some(fjson::raw(outcome.to_string())),
        search: None,
        request: None,
        response: Some(json!({ "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")) })),
    }
}
