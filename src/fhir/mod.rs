//! Glue around fhir-sdk and the FHIR wire format: validation with good errors, raw JSON handling, search
//! parameters and their grammar, OperationOutcome and Bundle shapes. Knows no accounts and no HTTP.

pub mod datetime;
pub mod extract;
#[cfg(test)]
mod fuzz;
pub mod json;
mod narrative;
pub mod params;
pub mod parse;
mod path;
pub mod profiles;
pub mod search;
pub mod types;

use serde_json::{Value, json};

use crate::error::Issue;

/// How a person or organization is called, for people to read: the first HumanName's text, else its given
/// and family names; an Organization's `name` string.
pub fn display_name(resource: &Value) -> String {
    if let Some(name) = resource["name"].as_str() {
        return name.to_owned();
    }
    let Some(name) = resource["name"].as_array().and_then(|n| n.first()) else {
        return String::new();
    };
    if let Some(text) = name["text"].as_str() {
        return text.to_owned();
    }
    let mut parts: Vec<&str> = name["prefix"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(name["given"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    parts.extend(name["family"].as_str());
    parts.join(" ")
}

/// The content type and decoded bytes of a Binary resource's JSON, for serving it in its native form.
pub fn binary_content(binary_json: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let v: Value = serde_json::from_str(binary_json).ok()?;
    let content_type = v.get("contentType")?.as_str()?.to_owned();
    let data = v.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.split_whitespace().collect::<String>())
        .ok()?;
    Some((content_type, bytes))
}

/// An OperationOutcome for `issues` at `severity` (`error`, `warning`, `information`).
pub fn operation_outcome(severity: &str, issues: &[Issue]) -> Value {
    let issue: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({ "severity": severity, "code": i.code, "diagnostics": i.diagnostics });
            if let Some(path) = &i.expression {
                v["expression"] = json!([path]);
            }
            v
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issue })
}
