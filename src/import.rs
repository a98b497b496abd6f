//! `carespace import`: loads Bundles (transaction, batch, collection, searchset) and NDJSON files through the
//! same records rules as the API. A Bundle loads whole when it can; otherwise entry by entry, and each entry
//! that fails is reported with its path while the rest still load. Re-importing is idempotent: resources keep
//! their ids (from the resource or its `urn:uuid:` fullUrl), so a second import updates instead of duplicating.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::access::Actor;
use crate::error::{Error, Result};
use crate::records::Records;
use crate::records::transaction::Loaded;

#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub resources: usize,
    /// What failed: a whole file, or one entry or line of it.
    pub failed: Vec<(PathBuf, String)>,
}

/// The demo practice (`fixtures/demo.json`, written by `fixtures/generate.py`), shipped in the binary.
const DEMO: &str = include_str!("../fixtures/demo.json");

/// The people of the demo practice, as `Type/id` references in file order.
pub fn demo_people() -> Result<Vec<String>> {
    let bundle: Value = serde_json::from_str(DEMO).map_err(|e| Error::Store(e.to_string()))?;
    Ok(bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Patient" || r["resourceType"] == "Practitioner")
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect())
}

/// Loads the demo practice when the store holds no Patient yet; returns whether it did.
pub async fn demo(records: &Records) -> Result<bool> {
    if !records.is_empty().await? {
        return Ok(false);
    }
    let loaded = records.import_transaction(&Actor::system("demo"), DEMO).await?;
    if let Some((entry, err)) = loaded.failed.first() {
        return Err(Error::Store(format!("demo data entry {entry} failed: {err}")));
    }
    Ok(true)
}

/// Every `.json` and `.ndjson` file under `paths` (directories are walked), sorted.
pub fn collect(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            out.extend(collect(&entries)?);
        } else if p.extension().is_some_and(|e| e == "json" || e == "ndjson") || !p.exists() {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub async fn import(records: &Records, files: &[PathBuf], progress: bool) -> Summary {
    let actor = Actor::system("import");
    let bar = if progress {
        ProgressBar::new(files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut summary = Summary::default();
    for file in files {
        bar.set_message(
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        match import_file(records, &actor, file).await {
            Ok(loaded) => {
                summary.files += 1;
                summary.resources += loaded.resources;
                for (entry, err) in loaded.failed {
                    summary.failed.push((file.clone(), format!("entry {entry}: {err}")));
                }
            }
            Err(e) => summary.failed.push((file.clone(), e.to_string())),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary
}

async fn import_file(records: &Records, actor: &Actor, file: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::NotFound(format!("{}: {e}", file.display())))?;
    if file.extension().is_some_and(|e| e == "ndjson") {
        let mut loaded = Loaded::default();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match import_one(records, actor, line).await {
                Ok(()) => loaded.resources += 1,
                Err(e) => loaded.failed.push((i + 1, e)),
            }
        }
        return Ok(loaded);
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::Store(format!("malformed JSON: {e}")))?;
    match (
        value.get("resourceType").and_then(Value::as_str),
        value.get("type").and_then(Value::as_str),
    ) {
        (Some("Bundle"), Some("transaction")) => records.import_transaction(actor, &text).await,
        (Some("Bundle"), Some("batch" | "collection" | "searchset")) => {
            // Each entry becomes a PUT by its id (POST when it has none) of one transaction.
            let entries = value
                .get("entry")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let tx: Vec<Value> = entries
                .into_iter()
                .filter_map(|e| {
                    let resource = e.get("resource")?.clone();
                    let rtype = resource.get("resourceType")?.as_str()?.to_owned();
                    let request = match resource.get("id").and_then(Value::as_str) {
                        Some(id) => json!({ "method": "PUT", "url": format!("{rtype}/{id}") }),
                        None => json!({ "method": "POST", "url": rtype }),
                    };
                    let mut entry = json!({ "resource": resource, "request": request });
                    if let Some(full_url) = e.get("fullUrl") {
                        entry["fullUrl"] = full_url.clone();
                    }
                    Some(entry)
                })
                .collect();
            let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": tx });
            records.import_transaction(actor, &bundle.to_string()).await
        }
        _ => import_one(records, actor, &text).await.map(|()| Loaded {
            resources: 1,
            failed: Vec::new(),
        }),
    }
}

/// One resource: PUT by its id when it has one (idempotent), else created.
async fn import_one(records: &Records, actor: &Actor, text: &str) -> Result<()> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Store(format!("malformed JSON: {e}")))?;
    let rtype = crate::fhir::parse::resource_type(&value)?;
    match value.get("id").and_then(Value::as_str) {
        Some(id) => records.update(actor, &rtype, id, text, None).await.map(drop),
        None => records.create(actor, &rtype, text).await.map(drop),
    }
}
