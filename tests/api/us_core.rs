//! The search combinations US Core 7.0 marks SHALL, run against Inferno's reference patient 85 and compared
//! with what a plain scan of the imported file says they must return.

use serde_json::Value;

use crate::helpers::{TestApp, engines, interop_dir, spawn_app};
use crate::interop::expected;

fn codes(v: &Value) -> Vec<String> {
    let concepts: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    concepts
        .iter()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

fn date_of(r: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| r[*k].as_str().or_else(|| r[*k]["start"].as_str()))
        .unwrap_or("")
        .to_owned()
}

async fn ids_of(app: &TestApp, query: &str) -> Vec<String> {
    let (status, bundle) = app.get(query).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    assert!(
        bundle["total"].as_i64().unwrap() < 1000,
        "{query}: one page is enough here"
    );
    let mut ids = crate::helpers::ids(&bundle);
    ids.sort();
    ids
}

#[tokio::test]
async fn us_core_shall_searches_return_exactly_the_matching_resources() {
    let Some(dir) = interop_dir() else { return };
    let file = dir.join("inferno/uscore_bundle_patient_85.json");
    let resources: Vec<(String, Value)> = expected(&std::fs::read_to_string(&file).unwrap())
        .into_iter()
        .map(|(k, text)| {
            let mut v: Value = serde_json::from_str(&text).unwrap();
            v["id"] = Value::String(k.split_once('/').unwrap().1.to_owned());
            (k, v)
        })
        .collect();
    let of = |rtype: &str, keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = resources
            .iter()
            .filter(|(k, v)| k.starts_with(&format!("{rtype}/")) && keep(v))
            .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mine = |v: &Value| v["subject"]["reference"] == "Patient/85" || v["patient"]["reference"] == "Patient/85";
    for engine in engines() {
        let app = spawn_app(engine).await;
        let (ok, output) = app.command(&["import", &file.display().to_string()]).await;
        assert!(ok, "{output}");
        let cases: Vec<(String, Vec<String>)> = vec![
            ("Patient?_id=85".into(), vec!["85".into()]),
            ("Patient?identifier=http://hospital.smarthealthit.org|d831ec91-c7a3-4a61-9312-7ff0c4a32134".into(), vec!["85".into()]),
            ("Patient?identifier=999-47-5768".into(), vec!["85".into()]),
            ("Patient?name=lucien".into(), vec!["85".into()]),
            ("Patient?gender=male&name=bosco".into(), vec!["85".into()]),
            ("Patient?birthdate=ge1900-01-01&name=Lucien408".into(), vec!["85".into()]),
            ("Patient?birthdate=lt1900-01-01&name=Lucien408".into(), vec![]),
            ("Observation?patient=85&category=laboratory".into(), of("Observation", &|v| mine(v) && codes(&v["category"]).contains(&"laboratory".into()))),
            ("Observation?patient=Patient/85&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".into(), of("Observation", &|v| mine(v) && codes(&v["category"]).contains(&"vital-signs".into()))),
            ("Observation?patient=85&code=http://loinc.org|9843-4".into(), of("Observation", &|v| mine(v) && codes(&v["code"]).contains(&"9843-4".into()))),
            ("Observation?patient=85&category=vital-signs&date=ge2018-01-01T00:00:00Z".into(), of("Observation", &|v| mine(v) && codes(&v["category"]).contains(&"vital-signs".into()) && date_of(v, &["effectiveDateTime", "effectivePeriod", "effectiveInstant"]).as_str() >= "2018-01-01")),
            ("Observation?patient=85&category=vital-signs&date=lt2018-01-01T00:00:00Z".into(), of("Observation", &|v| mine(v) && codes(&v["category"]).contains(&"vital-signs".into()) && date_of(v, &["effectiveDateTime", "effectivePeriod", "effectiveInstant"]).as_str() < "2018-01-01")),
            ("Observation?patient=85&category=laboratory&status=final,amended,corrected".into(), of("Observation", &|v| mine(v) && codes(&v["category"]).contains(&"laboratory".into()) && matches!(v["status"].as_str(), Some("final" | "amended" | "corrected")))),
            ("DocumentReference?patient=85".into(), of("DocumentReference", &mine)),
            ("DocumentReference?_id=82a60fe5-1c39-7674-1cbc-cd41ae7f5626".into(), vec!["82a60fe5-1c39-7674-1cbc-cd41ae7f5626".into()]),
            ("DocumentReference?patient=85&category=clinical-note".into(), of("DocumentReference", &|v| mine(v) && codes(&v["category"]).contains(&"clinical-note".into()))),
            ("DocumentReference?patient=85&type=http://loinc.org|11506-3".into(), of("DocumentReference", &|v| mine(v) && codes(&v["type"]).contains(&"11506-3".into()))),
            ("DocumentReference?patient=85&category=clinical-note&period=gt1950-01-01T00:00:00Z".into(), of("DocumentReference", &|v| mine(v) && codes(&v["category"]).contains(&"clinical-note".into()) && v["context"]["period"]["end"].as_str().unwrap_or("") > "1950-01-01")),
            ("DocumentReference?patient=85&category=clinical-note&date=gt1950-01-01T00:00:00Z".into(), of("DocumentReference", &|v| mine(v) && codes(&v["category"]).contains(&"clinical-note".into()) && v["date"].as_str().unwrap_or("") > "1950-01-01")),
            ("Condition?patient=85&category=encounter-diagnosis".into(), of("Condition", &|v| mine(v) && codes(&v["category"]).contains(&"encounter-diagnosis".into()))),
            ("Encounter?patient=85&date=ge1960-01-01T00:00:00Z".into(), of("Encounter", &|v| mine(v) && v["period"]["end"].as_str().or(v["period"]["start"].as_str()).unwrap_or("") >= "1960-01-01")),
            ("MedicationRequest?patient=85&intent=order".into(), of("MedicationRequest", &|v| mine(v) && v["intent"] == "order")),
            ("MedicationRequest?patient=85&intent=order&status=active,stopped".into(), of("MedicationRequest", &|v| mine(v) && v["intent"] == "order" && matches!(v["status"].as_str(), Some("active" | "stopped")))),
            ("Immunization?patient=85".into(), of("Immunization", &mine)),
            ("Practitioner?_id=c38e2d6b-b2d5-3f8e-acae-3044eeb5edbb".into(), vec!["c38e2d6b-b2d5-3f8e-acae-3044eeb5edbb".into()]),
        ];
        for (query, want) in cases {
            assert!(
                !want.is_empty() || query.contains("lt1900"),
                "{query}: the data should have matches"
            );
            assert_eq!(ids_of(&app, &query).await, want, "{engine}: {query}");
        }
        // _revinclude=Provenance:target brings the Provenance that targets the patient.
        let (_, bundle) = app.get("Patient?_id=85&_revinclude=Provenance:target").await;
        let included: Vec<&Value> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .collect();
        assert_eq!(
            included.len(),
            of("Provenance", &|v| v["target"].to_string().contains("\"Patient/85\"")).len()
        );
        assert!(included.iter().all(|e| e["resource"]["resourceType"] == "Provenance"));
    }
}
