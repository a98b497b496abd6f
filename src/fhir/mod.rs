//! Glue around fhir-sdk and the FHIR wire format: validation with good errors, raw JSON handling, search
//! parameters and their grammar, OperationOutcome and Bundle shapes. Knows no accounts and no HTTP.

pub mod datetime;
pub mod extract;
pub mod json;
pub mod params;
pub mod parse;
mod path;
pub mod profiles;
pub mod search;
pub mod types;

use serde_json::{Value, json};

use crate::error::Issue;

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
