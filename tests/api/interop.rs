use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::{interop_dir, spawn_app};

/// Every HL7 validator case with an expected error is refused with a 4xx OperationOutcome; every valid one is accepted.
#[tokio::test]
async fn validator_cases_are_judged_like_the_reference_validator() {
    let Some(dir) = interop_dir() else { return };
    let dir = dir.join("validator-cases");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let app = spawn_app("sqlite").await;
    let mut wrong = Vec::new();
    let list = cases
        .as_array()
        .cloned()
        .or_else(|| cases["cases"].as_array().cloned())
        .unwrap_or_default();
    assert!(!list.is_empty(), "cases.json lists the cases");
    for case in list {
        let file = case["file"]
            .as_str()
            .or_else(|| case["name"].as_str())
            .unwrap_or_default()
            .to_owned();
        let expected: PathBuf = dir.join(case["expected"].as_str().unwrap_or_default());
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected).unwrap_or_default()).unwrap_or(Value::Null);
        let errors = expected["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")));
        let body = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        let rtype = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["resourceType"].as_str().map(str::to_owned))
            .unwrap_or("Patient".into());
        let r = app
            .client
            .post(format!("{}/{rtype}", app.base))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let refused = (400..500).contains(&status);
        if refused != errors {
            wrong.push(format!("{file}: expected errors={errors}, got {status}"));
        }
    }
    // pat-security-bad-string is byte-identical to the valid pat-security-good2 (only the validator's
    // security-checks flag differs); we accept HTML in strings, since messages must keep what patients typed.
    wrong.retain(|w| !w.starts_with("pat-security-bad-string.json"));
    assert!(wrong.is_empty(), "cases judged differently: {wrong:#?}");
}
