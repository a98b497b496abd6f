//! What the portal's Health tab shows, read through the gate as the signed-in person: lab results grouped by
//! test (latest first, with history and panels), and documents with their attachments. Knows FHIR, not HTML.

pub mod export;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::access::Actor;
use crate::error::{Error, Result};
use crate::records::{Records, Stored};

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

/// The parts of FHIR resources the Health tab shows, read straight from each stored body: a Health page reads
/// every lab result, and building each one's whole JSON tree (then freeing it) was most of its time
/// (docs/benchmarks.md). Fields of other shapes than FHIR's are refused when a resource is stored, so a body
/// that does not read here is left out (with a warning) rather than failing the page.
mod view {
    use serde::Deserialize;
    use serde_json::Number;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Coding {
        pub system: Option<String>,
        pub code: Option<String>,
        pub display: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Concept {
        pub text: Option<String>,
        pub coding: Vec<Coding>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Quantity {
        pub value: Option<Number>,
        pub unit: Option<String>,
        pub code: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Range {
        pub low: Quantity,
        pub high: Quantity,
        pub text: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Period {
        pub start: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Reference {
        pub reference: Option<String>,
        pub display: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Observation {
        pub id: String,
        pub code: Concept,
        pub effective_date_time: Option<String>,
        pub effective_period: Period,
        pub issued: Option<String>,
        pub reference_range: Vec<Range>,
        pub value_quantity: Option<Quantity>,
        pub value_string: Option<String>,
        pub value_codeable_concept: Option<Concept>,
        pub value_integer: Option<Number>,
        pub value_boolean: Option<bool>,
        pub data_absent_reason: Concept,
        pub interpretation: Vec<Concept>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct DiagnosticReport {
        pub code: Concept,
        pub result: Vec<Reference>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Attachment {
        pub title: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Content {
        pub attachment: Attachment,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct DocumentReference {
        pub id: String,
        #[serde(rename = "type")]
        pub kind: Concept,
        pub description: Option<String>,
        pub date: Option<String>,
        pub content: Vec<Content>,
        pub author: Vec<Reference>,
    }

    impl Concept {
        /// The words for it: its text, else its first coding's display, else that coding's code.
        pub fn words(&self) -> String {
            let first = self.coding.first();
            self.text
                .as_deref()
                .or_else(|| first.and_then(|c| c.display.as_deref()))
                .or_else(|| first.and_then(|c| c.code.as_deref()))
                .unwrap_or("")
                .to_owned()
        }

        /// Its first coding as `system|code`, when that has a code.
        pub fn key(&self) -> Option<String> {
            let first = self.coding.first()?;
            Some(format!(
                "{}|{}",
                first.system.as_deref().unwrap_or(""),
                first.code.as_deref()?
            ))
        }
    }

    impl Quantity {
        pub fn number(&self) -> Option<f64> {
            self.value.as_ref().and_then(Number::as_f64)
        }

        /// As people read it: `14.8 g/dL`.
        pub fn text(&self) -> String {
            let value = self.number().map(|n| n.to_string()).unwrap_or_default();
            let unit = self.unit.as_deref().or(self.code.as_deref()).unwrap_or("");
            format!("{value} {unit}").trim().to_owned()
        }
    }
}

/// Each stored resource read as `T`; one that does not read is logged and left out.
fn read_as<T: serde::de::DeserializeOwned>(rows: &[Stored]) -> Vec<T> {
    rows.iter()
        .filter_map(|r| match serde_json::from_str(&r.body) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(resource = %format!("{}/{}", r.rtype, r.id), error = %e, "a resource the Health tab could not read was left out");
                None
            }
        })
        .collect()
}

/// The instant a result is dated by: its effective time, else when it was issued.
fn when(o: &view::Observation) -> (String, i64) {
    let raw = o
        .effective_date_time
        .as_deref()
        .or(o.effective_period.start.as_deref())
        .or(o.issued.as_deref())
        .unwrap_or("");
    let ms = crate::fhir::datetime::range(raw).map_or(0, |r| r.0);
    (raw.get(..10).unwrap_or(raw).to_owned(), ms)
}

fn lab_result(o: &view::Observation) -> LabResult {
    let (date, when) = when(o);
    let range = o.reference_range.first();
    let (low, high) = range.map_or((None, None), |r| (r.low.number(), r.high.number()));
    let range_text = match (range.and_then(|r| r.text.as_deref()), low, high) {
        (Some(t), _, _) => t.to_owned(),
        (None, Some(l), Some(h)) => {
            let unit = range.and_then(|r| r.high.unit.as_deref()).unwrap_or("");
            format!("{l}–{h} {unit}").trim().to_owned()
        }
        (None, Some(l), None) => format!("≥ {l}"),
        (None, None, Some(h)) => format!("≤ {h}"),
        _ => String::new(),
    };
    let value_number = o.value_quantity.as_ref().and_then(view::Quantity::number);
    let value = if let Some(q) = &o.value_quantity {
        q.text()
    } else if let Some(s) = &o.value_string {
        s.clone()
    } else if let Some(c) = &o.value_codeable_concept {
        c.words()
    } else if let Some(n) = &o.value_integer {
        n.to_string()
    } else if let Some(b) = o.value_boolean {
        if b { "Yes" } else { "No" }.to_owned()
    } else {
        o.data_absent_reason.text.clone().unwrap_or_else(|| "—".to_owned())
    };
    let interpreted = o
        .interpretation
        .first()
        .and_then(|i| i.coding.first())
        .and_then(|c| c.code.as_deref())
        .filter(|c| *c != "N")
        .map(str::to_owned);
    let computed = match (value_number, low, high) {
        (Some(v), Some(l), _) if v < l => Some("L".to_owned()),
        (Some(v), _, Some(h)) if v > h => Some("H".to_owned()),
        _ => None,
    };
    LabResult {
        id: o.id.clone(),
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
fn test_key(code: &view::Concept) -> String {
    code.key().unwrap_or_else(|| code.words().to_lowercase())
}

/// Every search page of `rtype` for `params` (the store caps a page; labs can be many).
async fn all_pages(records: &Records, actor: &Actor, rtype: &str, params: &[(&str, String)]) -> Result<Vec<Stored>> {
    const PAGE: i64 = 500;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut p: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        p.push(("_count".into(), PAGE.to_string()));
        p.push(("_offset".into(), offset.to_string()));
        let found = records.find(actor, rtype, &p).await?;
        let n = found.matches.len() as i64;
        out.extend(found.matches);
        offset += n;
        if n < PAGE || found.total.is_some_and(|t| offset >= t) {
            return Ok(out);
        }
    }
}

/// The patient's lab results by test, tests ordered by panel and name, results newest first.
pub async fn labs(records: &Records, actor: &Actor, patient: &str) -> Result<Vec<LabTest>> {
    let observations: Vec<view::Observation> = read_as(
        &all_pages(
            records,
            actor,
            "Observation",
            &[
                ("patient", patient.to_owned()),
                ("category", "laboratory".to_owned()),
                ("_sort", "-date".to_owned()),
            ],
        )
        .await?,
    );
    let reports: Vec<view::DiagnosticReport> = read_as(
        &all_pages(
            records,
            actor,
            "DiagnosticReport",
            &[("patient", patient.to_owned()), ("_sort", "-date".to_owned())],
        )
        .await?,
    );
    // Which panel each result was reported in (the newest report wins).
    let mut panel_of: BTreeMap<String, String> = BTreeMap::new();
    for r in &reports {
        let name = r.code.words();
        for member in &r.result {
            if let Some(id) = member.reference.as_deref().and_then(|s| s.strip_prefix("Observation/")) {
                panel_of.entry(id.to_owned()).or_insert_with(|| name.clone());
            }
        }
    }
    let mut tests: BTreeMap<String, LabTest> = BTreeMap::new();
    for o in &observations {
        let key = test_key(&o.code);
        let result = lab_result(o);
        let test = tests.entry(key.clone()).or_insert_with(|| LabTest {
            key,
            name: o.code.words(),
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
    let found = records.find(actor, "DocumentReference", &params).await?;
    let name_of = |reference: &str| {
        let (rtype, id) = reference.split_once('/')?;
        let author = found.included.iter().find(|r| r.rtype == rtype && r.id == id)?;
        let body: Value = serde_json::from_str(&author.body).ok()?;
        Some(crate::fhir::display_name(&body))
    };
    let docs = read_as::<view::DocumentReference>(&found.matches)
        .into_iter()
        .map(|d| {
            let attachment = d.content.first().map(|c| &c.attachment);
            let author = d.author.first();
            DocumentSummary {
                title: attachment
                    .and_then(|a| a.title.clone())
                    .or_else(|| d.description.clone())
                    .unwrap_or_else(|| d.kind.words()),
                kind: d.kind.words(),
                date: d
                    .date
                    .as_deref()
                    .map(|s| s.get(..10).unwrap_or(s).to_owned())
                    .unwrap_or_default(),
                author: author
                    .and_then(|a| a.display.clone())
                    .or_else(|| author.and_then(|a| a.reference.as_deref()).and_then(name_of))
                    .unwrap_or_default(),
                id: d.id,
            }
        })
        .collect();
    Ok((docs, found.total.unwrap_or(0)))
}

/// The document types the patient has, as (`system|code`, words), for the filter.
pub async fn document_types(records: &Records, actor: &Actor, patient: &str) -> Result<Vec<(String, String)>> {
    let all = all_pages(records, actor, "DocumentReference", &[("patient", patient.to_owned())]).await?;
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for d in read_as::<view::DocumentReference>(&all) {
        if let Some(key) = d.kind.key() {
            types.insert(key, d.kind.words());
        }
    }
    let mut out: Vec<(String, String)> = types.into_iter().collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The first attachment of a document: inline data, or the Binary it points to (both read through the gate).
pub async fn attachment(records: &Records, actor: &Actor, document_id: &str) -> Result<Attachment> {
    let doc = records.read(actor, "DocumentReference", document_id).await?.json()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(observation: Value) -> LabResult {
        lab_result(&serde_json::from_value(observation).expect("an Observation view"))
    }

    #[test]
    fn quantities_show_value_unit_range_and_a_computed_flag() {
        let r = result(serde_json::json!({
            "id": "hgb", "effectiveDateTime": "2026-03-04T08:00:00Z",
            "valueQuantity": {"value": 16.2, "unit": "g/dL"},
            "referenceRange": [{"low": {"value": 12, "unit": "g/dL"}, "high": {"value": 15.5, "unit": "g/dL"}}]
        }));
        assert_eq!(
            (
                r.id.as_str(),
                r.value.as_str(),
                r.number,
                r.range.as_str(),
                r.flag.as_deref(),
                r.date.as_str()
            ),
            ("hgb", "16.2 g/dL", Some(16.2), "12–15.5 g/dL", Some("H"), "2026-03-04")
        );
        assert!(r.when > 0);
        let low = result(serde_json::json!({"valueQuantity": {"value": 3, "code": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.5}}]}));
        assert_eq!(
            (low.value.as_str(), low.range.as_str(), low.flag.as_deref()),
            ("3 mmol/L", "≥ 3.5", Some("L"))
        );
    }

    #[test]
    fn the_interpretation_and_a_range_text_win_over_what_is_computed() {
        let r = result(serde_json::json!({
            "valueQuantity": {"value": 1}, "referenceRange": [{"high": {"value": 5}, "text": "under 5"}],
            "interpretation": [{"coding": [{"code": "A"}]}]
        }));
        assert_eq!((r.range.as_str(), r.flag.as_deref()), ("under 5", Some("A")));
        let normal = result(
            serde_json::json!({"valueQuantity": {"value": 9}, "referenceRange": [{"high": {"value": 5}}],
            "interpretation": [{"coding": [{"code": "N"}]}]}),
        );
        assert_eq!((normal.range.as_str(), normal.flag.as_deref()), ("≤ 5", Some("H")));
    }

    #[test]
    fn other_value_kinds_read_as_words() {
        let value = |v: Value| result(v).value;
        assert_eq!(value(serde_json::json!({"valueString": "Positive"})), "Positive");
        assert_eq!(
            value(
                serde_json::json!({"valueCodeableConcept": {"coding": [{"code": "260385009", "display": "Negative"}]}})
            ),
            "Negative"
        );
        assert_eq!(value(serde_json::json!({"valueInteger": 7})), "7");
        assert_eq!(value(serde_json::json!({"valueBoolean": false})), "No");
        assert_eq!(
            value(serde_json::json!({"dataAbsentReason": {"text": "Sample hemolyzed"}})),
            "Sample hemolyzed"
        );
        assert_eq!(value(serde_json::json!({})), "—");
    }

    #[test]
    fn a_result_is_dated_by_its_period_else_when_issued() {
        assert_eq!(
            result(serde_json::json!({"effectivePeriod": {"start": "2025-01-02T10:00:00Z"}})).date,
            "2025-01-02"
        );
        assert_eq!(
            result(serde_json::json!({"issued": "2024-05-06T07:08:09Z"})).date,
            "2024-05-06"
        );
    }

    #[test]
    fn tests_are_known_by_their_first_coding_else_their_words() {
        let concept = |v: Value| -> view::Concept { serde_json::from_value(v).expect("a concept") };
        assert_eq!(
            test_key(&concept(
                serde_json::json!({"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hb"})
            )),
            "http://loinc.org|718-7"
        );
        assert_eq!(
            test_key(&concept(serde_json::json!({"text": "Stool Culture"}))),
            "stool culture"
        );
        assert_eq!(concept(serde_json::json!({"coding": [{"code": "x"}]})).words(), "x");
    }
}
