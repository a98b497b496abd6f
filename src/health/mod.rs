//! What the portal's Health tab shows, read through the gate as the signed-in person: lab results grouped by
//! test (latest first, with history and panels), and documents with their attachments. Knows FHIR, not HTML.

pub mod export;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::access::Actor;
use crate::error::{Error, Result};
use crate::records::Records;

/// One lab result, ready to show.
#[derive(Debug, Clone)]
pub struct LabResult {
    pub id: String,
    /// The value as people read it (`14.8 g/dL`, `Positive`).
    pub value: String,
    /// The number, for the trend chart.
    pub number: Option<f64>,
    pub range: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// `H`, `L`, `A` ... when out of range (from the result's interpretation, else from its range).
    pub flag: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub when: i64,
}

/// All results of one test, newest first.
#[derive(Debug, Clone)]
pub struct LabTest {
    pub key: String,
    pub name: String,
    /// The panel (DiagnosticReport) its newest result belongs to, e.g. "Complete blood count".
    pub panel: Option<String>,
    pub results: Vec<LabResult>,
}

#[derive(Debug, Clone)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub date: String,
    pub author: String,
}

/// A document's content, to open in the browser or download.
pub struct Attachment {
    pub content_type: String,
    pub title: String,
    pub bytes: Vec<u8>,
}

/// The entries of a search Bundle that matched, and the ones it included.
fn entries(bundle: &str) -> Result<(Vec<Value>, Vec<Value>, i64)> {
    let mut v: Value = serde_json::from_str(bundle).map_err(|e| Error::Store(e.to_string()))?;
    let (mut matched, mut included) = (Vec::new(), Vec::new());
    // Moved out, not cloned: a Health page reads every lab, and copying each resource was a tenth of its time.
    for e in v["entry"].as_array_mut().into_iter().flatten() {
        if e["search"]["mode"] == "include" {
            included.push(e["resource"].take());
        } else {
            matched.push(e["resource"].take());
        }
    }
    Ok((matched, included, v["total"].as_i64().unwrap_or(0)))
}

fn text_of(concept: &Value) -> String {
    concept["text"]
        .as_str()
        .or_else(|| concept["coding"][0]["display"].as_str())
        .or_else(|| concept["coding"][0]["code"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn number(v: &Value) -> Option<f64> {
    v["value"].as_f64()
}

fn quantity_text(q: &Value) -> String {
    let value = q["value"].as_f64().map(|n| n.to_string()).unwrap_or_default();
    let unit = q["unit"].as_str().or_else(|| q["code"].as_str()).unwrap_or("");
    format!("{value} {unit}").trim().to_owned()
}

/// The instant a result is dated by: its effective time, else when it was issued.
fn when(o: &Value) -> (String, i64) {
    let raw = o["effectiveDateTime"]
        .as_str()
        .or_else(|| o["effectivePeriod"]["start"].as_str())
        .or_else(|| o["issued"].as_str())
        .unwrap_or("");
    let ms = crate::fhir::datetime::range(raw).map_or(0, |r| r.0);
    (raw.get(..10).unwrap_or(raw).to_owned(), ms)
}

fn lab_result(o: &Value) -> LabResult {
    let (date, when) = when(o);
    let range = &o["referenceRange"][0];
    let (low, high) = (number(&range["low"]), number(&range["high"]));
    let range_text = match (range["text"].as_str(), low, high) {
        (Some(t), _, _) => t.to_owned(),
        (None, Some(l), Some(h)) => format!("{l}–{h} {}", range["high"]["unit"].as_str().unwrap_or(""))
            .trim()
            .to_owned(),
        (None, Some(l), None) => format!("≥ {l}"),
        (None, None, Some(h)) => format!("≤ {h}"),
        _ => String::new(),
    };
    let value_number = o["valueQuantity"]["value"].as_f64();
    let value = if o["valueQuantity"].is_object() {
        quantity_text(&o["valueQuantity"])
    } else if let Some(s) = o["valueString"].as_str() {
        s.to_owned()
    } else if o["valueCodeableConcept"].is_object() {
        text_of(&o["valueCodeableConcept"])
    } else if let Some(n) = o["valueInteger"].as_i64() {
        n.to_string()
    } else if let Some(b) = o["valueBoolean"].as_bool() {
        if b { "Yes" } else { "No" }.to_owned()
    } else {
        o["dataAbsentReason"]["text"].as_str().unwrap_or("—").to_owned()
    };
    let interpreted = o["interpretation"][0]["coding"][0]["code"]
        .as_str()
        .filter(|c| *c != "N")
        .map(str::to_owned);
    let computed = match (value_number, low, high) {
        (Some(v), Some(l), _) if v < l => Some("L".to_owned()),
        (Some(v), _, Some(h)) if v > h => Some("H".to_owned()),
        _ => None,
    };
    LabResult {
        id: o["id"].as_str().unwrap_or("").to_owned(),
        value,
        number: value_number,
        range: range_text,
        low,
        high,
        flag: interpreted.or(computed),
        date,
        when,
    }
}

/// How a test is known across results: its first coding, else its text.
fn test_key(code: &Value) -> String {
    match (code["coding"][0]["system"].as_str(), code["coding"][0]["code"].as_str()) {
        (system, Some(c)) => format!("{}|{c}", system.unwrap_or("")),
        _ => text_of(code).to_lowercase(),
    }
}

/// Every search page of `rtype` for `params` (the store caps a page; labs can be many).
async fn all_pages(records: &Records, actor: &Actor, rtype: &str, params: &[(&str, String)]) -> Result<Vec<Value>> {
    const PAGE: i64 = 500;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut p: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        p.push(("_count".into(), PAGE.to_string()));
        p.push(("_offset".into(), offset.to_string()));
        let (matched, _, total) = entries(&records.search(actor, rtype, &p, false).await?)?;
        let n = matched.len() as i64;
        out.extend(matched);
        offset += n;
        if n < PAGE || offset >= total {
            return Ok(out);
        }
    }
}

/// The patient's lab results by test, tests ordered by panel and name, results newest first.
pub async fn labs(records: &Records, actor: &Actor, patient: &str) -> Result<Vec<LabTest>> {
    let observations = all_pages(
        records,
        actor,
        "Observation",
        &[
            ("patient", patient.to_owned()),
            ("category", "laboratory".to_owned()),
            ("_sort", "-date".to_owned()),
        ],
    )
    .await?;
    let reports = all_pages(
        records,
        actor,
        "DiagnosticReport",
        &[("patient", patient.to_owned()), ("_sort", "-date".to_owned())],
    )
    .await?;
    // Which panel each result was reported in (the newest report wins).
    let mut panel_of: BTreeMap<String, String> = BTreeMap::new();
    for r in &reports {
        let name = text_of(&r["code"]);
        for member in r["result"].as_array().into_iter().flatten() {
            if let Some(id) = member["reference"]
                .as_str()
                .and_then(|s| s.strip_prefix("Observation/"))
            {
                panel_of.entry(id.to_owned()).or_insert_with(|| name.clone());
            }
        }
    }
    let mut tests: BTreeMap<String, LabTest> = BTreeMap::new();
    for o in &observations {
        let key = test_key(&o["code"]);
        let result = lab_result(o);
        let test = tests.entry(key.clone()).or_insert_with(|| LabTest {
            key,
            name: text_of(&o["code"]),
            panel: panel_of.get(&result.id).cloned(),
            results: Vec::new(),
        });
        test.results.push(result);
    }
    let mut out: Vec<LabTest> = tests.into_values().collect();
    for t in &mut out {
        t.results.sort_by_key(|r| std::cmp::Reverse(r.when));
    }
    out.sort_by(|a, b| (a.panel.is_none(), &a.panel, &a.name).cmp(&(b.panel.is_none(), &b.panel, &b.name)));
    Ok(out)
}

/// The patient's documents, newest first: a page of them (optionally of one type, `system|code`) and the total.
pub async fn documents(
    records: &Records,
    actor: &Actor,
    patient: &str,
    count: i64,
    offset: i64,
    kind: Option<&str>,
) -> Result<(Vec<DocumentSummary>, i64)> {
    let mut params = vec![
        ("patient".to_owned(), patient.to_owned()),
        ("_sort".to_owned(), "-date".to_owned()),
        ("_count".to_owned(), count.to_string()),
        ("_offset".to_owned(), offset.to_string()),
        ("_include".to_owned(), "DocumentReference:author".to_owned()),
        ("_total".to_owned(), "accurate".to_owned()),
    ];
    if let Some(k) = kind.filter(|k| !k.is_empty()) {
        params.push(("type".to_owned(), k.to_owned()));
    }
    let (matched, included, total) = entries(&records.search(actor, "DocumentReference", &params, false).await?)?;
    let name_of = |reference: &str| {
        included
            .iter()
            .find(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or(""),
                    r["id"].as_str().unwrap_or("")
                ) == reference
            })
            .map(crate::fhir::display_name)
    };
    let docs = matched
        .iter()
        .map(|d| {
            let attachment = &d["content"][0]["attachment"];
            let author = &d["author"][0];
            DocumentSummary {
                id: d["id"].as_str().unwrap_or("").to_owned(),
                title: attachment["title"]
                    .as_str()
                    .or_else(|| d["description"].as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| text_of(&d["type"])),
                kind: text_of(&d["type"]),
                date: d["date"]
                    .as_str()
                    .map(|s| s.get(..10).unwrap_or(s).to_owned())
                    .unwrap_or_default(),
                author: author["display"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| author["reference"].as_str().and_then(name_of))
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok((docs, total))
}

/// The document types the patient has, as (`system|code`, words), for the filter.
pub async fn document_types(records: &Records, actor: &Actor, patient: &str) -> Result<Vec<(String, String)>> {
    let all = all_pages(
        records,
        actor,
        "DocumentReference",
        &[("patient", patient.to_owned()), ("_elements", "type".to_owned())],
    )
    .await?;
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for d in &all {
        let coding = &d["type"]["coding"][0];
        if let Some(code) = coding["code"].as_str() {
            types.insert(
                format!("{}|{code}", coding["system"].as_str().unwrap_or("")),
                text_of(&d["type"]),
            );
        }
    }
    let mut out: Vec<(String, String)> = types.into_iter().collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The first attachment of a document: inline data, or the Binary it points to (both read through the gate).
pub async fn attachment(records: &Records, actor: &Actor, document_id: &str) -> Result<Attachment> {
    let doc: Value = serde_json::from_str(&records.read(actor, "DocumentReference", document_id).await?.body)
        .map_err(|e| Error::Store(e.to_string()))?;
    let a = &doc["content"][0]["attachment"];
    let title = a["title"]
        .as_str()
        .or_else(|| doc["description"].as_str())
        .unwrap_or("document")
        .to_owned();
    let missing = || Error::NotFound("This document has no file attached, or its file cannot be found.".into());
    let (content_type, bytes) = if let Some(data) = a["data"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| {
            Error::Unprocessable(vec![crate::error::Issue::new(
                "value",
                "The document's file is damaged and cannot be opened.",
            )])
        })?;
        (
            a["contentType"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            bytes,
        )
    } else if let Some(id) = a["url"]
        .as_str()
        .and_then(|u| u.rsplit_once("Binary/").map(|(_, id)| id.to_owned()))
    {
        let binary = records.read(actor, "Binary", &id).await.map_err(|e| match e {
            Error::NotFound(_) | Error::Gone(_) => missing(),
            other => other,
        })?;
        crate::fhir::binary_content(&binary.body).ok_or_else(missing)?
    } else {
        return Err(missing());
    };
    Ok(Attachment {
        content_type,
        title,
        bytes,
    })
}
