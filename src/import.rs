//! `carespace import`: loads Bundles (transaction, batch, collection, searchset) and NDJSON files through the
//! same records rules as the API. Each file stands alone: a broken one is reported and the rest still load.
//! Re-importing is idempotent: resources keep their ids (from the resource or its `urn:uuid:` fullUrl).

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::access::Actor;
use crate::error::{Error, Result};
use crate::records::Records;
use crate::records::transaction::Ids;

#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub resources: usize,
    pub failed: Vec<(PathBuf, String)>,
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
            Ok(n) => {
                summary.files += 1;
                summary.resources += n;
            }
            Err(e) => summary.failed.push((file.clone(), e.to_string())),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary
}

async fn import_file(records: &Records, actor: &Actor, file: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::NotFound(format!("{}: {e}", file.display())))?;
    if file.extension().is_some_and(|e| e == "ndjson") {
        let mut n = 0;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            import_one(records, actor, line)
                .await
                .map_err(|e| Error::Store(format!("line {}: {e}", i + 1)))?;
            n += 1;
        }
        return Ok(n);
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::Store(format!("malformed JSON: {e}")))?;
    match (
        value.get("resourceType").and_then(Value::as_str),
        value.get("type").and_then(Value::as_str),
    ) {
        (Some("Bundle"), Some("transaction")) => {
            let n = value.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
            records.transaction(actor, &text, Ids::FromFullUrl).await?;
            Ok(n)
        }
        (Some("Bundle"), Some("batch" | "collection" | "searchset")) => {
            // Each entry becomes a PUT in one transaction, so the file loads whole or not at all.
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
                    let id = resource.get("id").and_then(Value::as_str).map(str::to_owned);
                    let full_url = e.get("fullUrl").cloned().unwrap_or(Value::Null);
                    let request = match id {
                        Some(id) => json!({ "method": "PUT", "url": format!("{rtype}/{id}") }),
                        None => json!({ "method": "POST", "url": rtype }),
                    };
                    Some(json!({ "fullUrl": full_url, "resource": resource, "request": request }))
                })
                .map(|mut e| {
                    if e["fullUrl"].is_null() {
                        e.as_object_mut().map(|o| o.remove("fullUrl"));
                    }
                    e
                })
                .collect();
            let n = tx.len();
            let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": tx });
            records
                .transaction(actor, &bundle.to_string(), Ids::FromFullUrl)
                .await?;
            Ok(n)
        }
        _ => {
            import_one(records, actor, &text).await?;
            Ok(1)
        }
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
