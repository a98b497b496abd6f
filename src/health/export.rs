//! "Download": the patient's whole record as a zip, written entry by entry to any `Write` (the portal streams
//! it to the browser), never held whole in memory: `record/everything.json` (the `$everything` resources as a
//! collection Bundle), `record/<Type>.ndjson` per resource type, every document's file under `documents/`, and
//! `summary.html` (demographics, labs, documents) — the same summary the "View" page shows. "Send Record" writes
//! the same package for a date range, with the patient's notes, every entry AES-256 encrypted ([`Package`]).

use std::collections::BTreeSet;
use std::io::Write;

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use zip::write::SimpleFileOptions;

use super::{DocumentSummary, LabTest};
use crate::access::{self, Actor};
use crate::error::{Error, Result};
use crate::records::Records;

/// Resources fetched per `$everything` page.
const PAGE: i64 = 200;

/// What a package holds beyond the whole record as it is: only what is dated within a range (clinical dates,
/// `YYYY-MM-DD`, both ends included), a password that encrypts every entry (AES-256; entry names are not
/// encrypted, so documents then get neutral names), notes for the recipient.
#[derive(Debug, Default, Clone, Copy)]
pub struct Package<'a> {
    pub range: Option<(&'a str, &'a str)>,
    pub password: Option<&'a str>,
    pub notes: Option<&'a str>,
}

fn zip_error(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("writing the download failed: {e}"))
}

/// One `$everything` page: its resources.
async fn page(
    records: &Records,
    actor: &Actor,
    patient: &str,
    range: Option<(&str, &str)>,
    offset: i64,
    kind: Option<&str>,
) -> Result<Vec<Value>> {
    let mut params = vec![
        ("_count".to_owned(), PAGE.to_string()),
        ("_offset".to_owned(), offset.to_string()),
    ];
    if let Some((start, end)) = range {
        params.push(("start".to_owned(), start.to_owned()));
        params.push(("end".to_owned(), end.to_owned()));
    }
    if let Some(k) = kind {
        params.push(("_type".to_owned(), k.to_owned()));
    }
    let bundle: Value = serde_json::from_str(&records.everything(actor, patient, &params).await?)
        .map_err(|e| Error::Store(e.to_string()))?;
    Ok(bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect())
}

/// A file name from a title: letters, digits, dashes; never a path.
fn file_name(title: &str) -> String {
    let cleaned: String = title
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "document".to_owned()
    } else {
        trimmed.chars().take(80).collect()
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/html" => "html",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "application/json" | "application/fhir+json" => "json",
        "application/xml" | "text/xml" => "xml",
        _ => "bin",
    }
}

/// The human-readable summary: demographics, the latest of each lab test, and the documents.
pub fn summary(patient: &Value, labs: &[LabTest], documents: &[DocumentSummary], practice: &str) -> Markup {
    let full_name = crate::fhir::display_name(patient);
    html! {
        section.summary {
            h2 { "Patient" }
            dl {
                dt { "Name" } dd { (full_name) }
                dt { "Date of birth" } dd { (patient["birthDate"].as_str().unwrap_or("")) }
                @if let Some(g) = patient["gender"].as_str() { dt { "Gender" } dd { (g) } }
                dt { "Practice" } dd { (practice) }
            }
            h2 { "Lab results (latest of each test)" }
            @if labs.is_empty() { p { "No lab results." } }
            @else {
                table {
                    thead { tr { th { "Test" } th { "Result" } th { "Reference range" } th { "Flag" } th { "Date" } } }
                    tbody {
                        @for t in labs {
                            @let r = &t.results[0];
                            tr { td { (t.name) } td { (r.value) } td { (r.range) } td { (r.flag.as_deref().unwrap_or("")) } td { (r.date) } }
                        }
                    }
                }
            }
            h2 { "Documents" }
            @if documents.is_empty() { p { "No documents." } }
            @else {
                table {
                    thead { tr { th { "Title" } th { "Type" } th { "Date" } th { "Author" } } }
                    tbody { @for d in documents { tr { td { (d.title) } td { (d.kind) } td { (d.date) } td { (d.author) } } } }
                }
            }
        }
    }
}

/// Everything the summary needs, read through the gate.
pub async fn summary_data(
    records: &Records,
    actor: &Actor,
    patient: &str,
    range: Option<(&str, &str)>,
) -> Result<(Value, Vec<LabTest>, Vec<DocumentSummary>)> {
    let resource = records.read(actor, "Patient", patient).await?.json()?;
    let labs = super::labs(records, actor, patient).await?;
    let mut documents = Vec::new();
    loop {
        let (page, total) = super::documents(records, actor, patient, PAGE, documents.len() as i64, None).await?;
        let done = page.is_empty();
        documents.extend(page);
        if done || documents.len() as i64 >= total {
            break;
        }
    }
    if let Some((start, end)) = range {
        let within = |date: &str| date.get(..10).is_some_and(|d| (start..=end).contains(&d));
        let mut labs = labs;
        for test in &mut labs {
            test.results.retain(|r| within(&r.date));
        }
        labs.retain(|t| !t.results.is_empty());
        documents.retain(|d| within(&d.date));
        return Ok((resource, labs, documents));
    }
    Ok((resource, labs, documents))
}

/// What a written Bundle held: its patient-data types, its documents, the directory resources, and (for a
/// range) the files of its documents.
pub struct Contents {
    pub types: BTreeSet<String>,
    pub documents: Vec<String>,
    pub directory: Vec<Value>,
    pub binaries: BTreeSet<String>,
}

/// Whether a resource carries a clinical date (the same search parameters `$everything`'s range reads).
fn dated(records: &Records, r: &Value) -> bool {
    let rtype = r["resourceType"].as_str().unwrap_or("");
    crate::fhir::extract::index(records.registry(), rtype, r, records.base())
        .iter()
        .any(|e| crate::store::CLINICAL_DATE_PARAMS.contains(&e.param.as_str()))
}

/// For a package limited to a range: `$everything` keeps undated resources, a range package does not (the
/// patient chose dates); the Patient stays, and a file only with a document in the range.
fn in_range_package(records: &Records, r: &Value, binaries: &BTreeSet<String>) -> bool {
    match r["resourceType"].as_str().unwrap_or("") {
        "Patient" => true,
        "Binary" => binaries.contains(r["id"].as_str().unwrap_or("")),
        _ => dated(records, r),
    }
}

/// The Binary ids a DocumentReference's attachments point at.
fn files_of(document: &Value) -> impl Iterator<Item = String> + '_ {
    document["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["attachment"]["url"].as_str())
        .filter_map(|u| u.rsplit_once("Binary/").map(|(_, id)| id.to_owned()))
}

/// Writes the record (or the part dated in `range`) as a collection Bundle to `out`, page by page. Blocking
/// writes: run on a blocking thread (`rt` runs the reads).
pub fn write_bundle(
    records: &Records,
    actor: &Actor,
    patient: &str,
    range: Option<(&str, &str)>,
    rt: &tokio::runtime::Handle,
    out: &mut impl Write,
) -> Result<Contents> {
    out.write_all(br#"{"resourceType":"Bundle","type":"collection","entry":["#)
        .map_err(zip_error)?;
    let mut types: BTreeSet<String> = BTreeSet::new();
    let mut documents: Vec<String> = Vec::new();
    // Who treated the patient, where: few, referenced from many pages; kept once, written at the end.
    let mut directory: Vec<Value> = Vec::new();
    // A range package holds files back until it knows which documents are in it.
    let mut held: Vec<Value> = Vec::new();
    let mut binaries: BTreeSet<String> = BTreeSet::new();
    let mut offset = 0;
    let mut first = true;
    let mut entry = |out: &mut dyn Write, r: &Value| -> Result<()> {
        let rtype = r["resourceType"].as_str().unwrap_or("");
        let entry =
            serde_json::json!({ "fullUrl": format!("{rtype}/{}", r["id"].as_str().unwrap_or("")), "resource": r });
        if !first {
            out.write_all(b",").map_err(zip_error)?;
        }
        first = false;
        out.write_all(entry.to_string().as_bytes()).map_err(zip_error)
    };
    loop {
        let resources = rt.block_on(page(records, actor, patient, range, offset, None))?;
        let mut in_compartment = 0;
        for r in &resources {
            let rtype = r["resourceType"].as_str().unwrap_or("").to_owned();
            if access::DIRECTORY_TYPES.contains(&rtype.as_str()) {
                if !directory
                    .iter()
                    .any(|d| d["resourceType"] == r["resourceType"] && d["id"] == r["id"])
                {
                    directory.push(r.clone());
                }
                continue;
            }
            in_compartment += 1;
            if range.is_some() && rtype == "Binary" {
                held.push(r.clone());
                continue;
            }
            if range.is_some() && !in_range_package(records, r, &binaries) {
                continue;
            }
            if rtype == "DocumentReference" {
                documents.push(r["id"].as_str().unwrap_or("").to_owned());
                binaries.extend(files_of(r));
            }
            entry(out, r)?;
            types.insert(rtype);
        }
        offset += PAGE;
        if in_compartment < PAGE {
            break;
        }
    }
    for r in held
        .iter()
        .filter(|r| binaries.contains(r["id"].as_str().unwrap_or("")))
    {
        entry(out, r)?;
        types.insert("Binary".to_owned());
    }
    for r in &directory {
        entry(out, r)?;
    }
    out.write_all(b"]}").map_err(zip_error)?;
    Ok(Contents {
        types,
        documents,
        directory,
        binaries,
    })
}

/// Writes the zip of the patient's whole record to `out`. Blocking writes: run on a blocking thread (`rt`
/// runs the reads).
pub fn write_zip<W: Write>(
    records: &Records,
    actor: &Actor,
    patient: &str,
    practice: &str,
    package: Package<'_>,
    rt: &tokio::runtime::Handle,
    out: W,
) -> Result<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let mut options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    if let Some(password) = package.password {
        options = options.with_aes_encryption(zip::AesMode::Aes256, password);
    }
    let range = package.range;
    // 1. The Bundle, page by page; remember which types and documents there are.
    zip.start_file("record/everything.json", options).map_err(zip_error)?;
    let Contents {
        types,
        documents,
        directory,
        binaries,
    } = write_bundle(records, actor, patient, range, rt, &mut zip)?;
    // 2. One NDJSON file per type.
    let directory_types: BTreeSet<&str> = directory.iter().filter_map(|r| r["resourceType"].as_str()).collect();
    for rtype in directory_types {
        zip.start_file(format!("record/{rtype}.ndjson"), options)
            .map_err(zip_error)?;
        for r in directory.iter().filter(|r| r["resourceType"] == rtype) {
            zip.write_all(r.to_string().as_bytes()).map_err(zip_error)?;
            zip.write_all(b"\n").map_err(zip_error)?;
        }
    }
    for rtype in &types {
        zip.start_file(format!("record/{rtype}.ndjson"), options)
            .map_err(zip_error)?;
        let mut offset = 0;
        loop {
            let resources = rt.block_on(page(records, actor, patient, range, offset, Some(rtype)))?;
            let of_type: Vec<&Value> = resources
                .iter()
                .filter(|r| r["resourceType"] == rtype.as_str())
                .collect();
            let fetched = of_type.len() as i64;
            for r in of_type
                .into_iter()
                .filter(|r| range.is_none() || in_range_package(records, r, &binaries))
            {
                zip.write_all(r.to_string().as_bytes()).map_err(zip_error)?;
                zip.write_all(b"\n").map_err(zip_error)?;
            }
            offset += PAGE;
            if fetched < PAGE {
                break;
            }
        }
    }
    // 3. Every document's file.
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (n, id) in documents.iter().enumerate() {
        let Ok(a) = rt.block_on(super::attachment(records, actor, id)) else {
            continue; // a document without a readable file is still in the Bundle
        };
        // Entry names stay readable in an encrypted zip: no titles there.
        let base = if package.password.is_some() {
            format!("document-{}", n + 1)
        } else {
            file_name(&a.title)
        };
        let mut name = format!("documents/{base}.{}", extension(&a.content_type));
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("documents/{base}-{n}.{}", extension(&a.content_type));
            n += 1;
        }
        zip.start_file(name, options).map_err(zip_error)?;
        zip.write_all(&a.bytes).map_err(zip_error)?;
    }
    // 4. The summary people read.
    let (resource, labs, docs) = rt.block_on(summary_data(records, actor, patient, range))?;
    let page_html = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Health record summary" } }
            body { h1 { "Health record summary" } (summary(&resource, &labs, &docs, practice)) }
        }
    };
    zip.start_file("summary.html", options).map_err(zip_error)?;
    zip.write_all(page_html.into_string().as_bytes()).map_err(zip_error)?;
    if let Some(notes) = package.notes.filter(|n| !n.trim().is_empty()) {
        zip.start_file("notes.txt", options).map_err(zip_error)?;
        zip.write_all(notes.as_bytes()).map_err(zip_error)?;
    }
    zip.finish().map_err(zip_error)?;
    Ok(())
}
