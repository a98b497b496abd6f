//! Bundle shapes the server answers with (searchset, history, `$everything`, batch/transaction responses).
//! Resources are embedded as their stored JSON text, untouched.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Stored;
use crate::clock;
use crate::fhir::json::{self as fjson, RawObject};
use crate::fhir::search::SearchRequest;
use crate::store::Row;

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    resource_type: &'static str,
    id: String,
    meta: Value,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<BundleEntry>,
}

/// A Bundle of `kind` as JSON text.
pub fn bundle(
    kind: &'static str,
    total: Option<i64>,
    links: Vec<(&'static str, String)>,
    entry: Vec<BundleEntry>,
) -> String {
    let b = Bundle {
        resource_type: "Bundle",
        id: uuid::Uuid::new_v4().to_string(),
        meta: serde_json::json!({ "lastUpdated": clock::instant(clock::now_millis()) }),
        kind,
        total,
        link: links
            .into_iter()
            .map(|(relation, url)| Link { relation, url })
            .collect(),
        entry,
    };
    // Serializing owned strings and valid raw JSON cannot fail.
    serde_json::to_string(&b).unwrap_or_default()
}

fn url(base: &str, path: &str, params: &[(String, String)], offset: Option<i64>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(params);
    if let Some(o) = offset.filter(|o| *o > 0) {
        s.append_pair("_offset", &o.to_string());
    }
    let q = s.finish();
    if q.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{q}")
    }
}

/// Where a page of results sits: the URL it answers (path relative to the FHIR base, and the parameters in
/// force, without `_offset`), the total if known, and the page size and offset.
pub struct Page<'a> {
    pub path: String,
    pub params: &'a [(String, String)],
    pub total: Option<i64>,
    pub count: i64,
    pub offset: i64,
}

impl Page<'_> {
    /// self, next and previous links; `shown` is how many matches this page holds.
    fn links(&self, base: &str, shown: usize) -> Vec<(&'static str, String)> {
        let (count, offset) = (self.count, self.offset);
        let mut links = vec![("self", url(base, &self.path, self.params, Some(offset)))];
        let more = match self.total {
            Some(t) => offset.saturating_add(count) < t,
            None => shown as i64 >= count,
        };
        if more && count > 0 {
            links.push((
                "next",
                url(base, &self.path, self.params, Some(offset.saturating_add(count))),
            ));
        }
        if offset > 0 && count > 0 {
            links.push((
                "previous",
                url(base, &self.path, self.params, Some((offset - count).max(0))),
            ));
        }
        links
    }
}

fn entry(base: &str, r: &Stored, mode: &'static str, elements: Option<&[String]>) -> BundleEntry {
    let body = match elements {
        Some(keep) => serde_json::from_str::<RawObject>(&r.body)
            .map(|o| o.only(keep))
            .unwrap_or_else(|_| r.body.clone()),
        None => r.body.clone(),
    };
    BundleEntry {
        full_url: Some(format!("{base}/{}/{}", r.rtype, r.id)),
        resource: Some(fjson::raw(body)),
        search: Some(serde_json::json!({ "mode": mode })),
        request: None,
        response: None,
    }
}

pub fn searchset(
    base: &str,
    rtype: &str,
    req: &SearchRequest,
    matches: &[Stored],
    included: &[Stored],
    total: Option<i64>,
) -> String {
    let elements = req.elements.as_deref();
    let mut entries: Vec<BundleEntry> = matches.iter().map(|m| entry(base, m, "match", elements)).collect();
    entries.extend(included.iter().map(|m| entry(base, m, "include", None)));
    if !req.ignored.is_empty() {
        let issues: Vec<_> = req
            .ignored
            .iter()
            .map(|w| crate::error::Issue::new("not-supported", w.clone()))
            .collect();
        entries.push(BundleEntry {
            full_url: None,
            resource: Some(fjson::raw(
                crate::fhir::operation_outcome("warning", &issues).to_string(),
            )),
            search: Some(serde_json::json!({ "mode": "outcome" })),
            request: None,
            response: None,
        });
    }
    let page = Page {
        path: rtype.to_owned(),
        params: &req.used,
        total,
        count: req.query.count,
        offset: req.query.offset,
    };
    bundle("searchset", total, page.links(base, matches.len()), entries)
}

pub fn history(base: &str, page: &Page<'_>, rows: &[Row]) -> String {
    let entries = rows
        .iter()
        .map(|r| {
            let full_url = format!("{base}/{}/{}", r.rtype, r.id);
            let (method, status) = match (&r.body, r.version) {
                (None, _) => ("DELETE", "200 OK"),
                (Some(_), 1) => ("POST", "201 Created"),
                (Some(_), _) => ("PUT", "200 OK"),
            };
            let request_url = if method == "POST" {
                r.rtype.clone()
            } else {
                format!("{}/{}", r.rtype, r.id)
            };
            BundleEntry {
                full_url: Some(full_url),
                resource: r.body.clone().map(fjson::raw),
                search: None,
                request: Some(serde_json::json!({ "method": method, "url": request_url })),
                response: Some(serde_json::json!({
                    "status": status,
                    "etag": format!("W/\"{}\"", r.version),
                    "lastModified": clock::instant(r.last_updated),
                })),
            }
        })
        .collect();
    bundle("history", page.total, page.links(base, rows.len()), entries)
}

/// A page of `$everything`: the compartment's resources, then those they refer to.
pub fn everything(base: &str, page: &Page<'_>, rows: &[Stored], referenced: &[Stored]) -> String {
    let mut entries: Vec<BundleEntry> = rows.iter().map(|r| entry(base, r, "match", None)).collect();
    entries.extend(referenced.iter().map(|r| entry(base, r, "include", None)));
    bundle("searchset", page.total, page.links(base, rows.len()), entries)
}
