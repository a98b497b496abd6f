//! The portal's Health tab as a patient uses it: latest lab results by panel with their history and trend,
//! the six newest documents and "View All Documents", opening a document, Resources; never another
//! patient's data (two patients with the same tests), and every view audited.

use serde_json::json;

use crate::accounts::{PASSWORD, login, registered_patient, staff_session};
use crate::helpers::{TestApp, spawn_app};

pub async fn hemoglobin(app: &TestApp, patient: &str, value: f64, date: &str) -> String {
    app.create(json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}], "text": "Hemoglobin"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "referenceRange": [{"low": {"value": 12.0, "unit": "g/dL"}, "high": {"value": 15.5, "unit": "g/dL"}}]
    }))
    .await
}

pub async fn document(
    app: &TestApp,
    patient: &str,
    n: usize,
    date: &str,
    content_type: &str,
    data: &str,
    kind: (&str, &str),
) -> String {
    // The file belongs to the patient's record (securityContext), so the patient may open it.
    let binary = app
        .create(
            json!({"resourceType": "Binary", "contentType": content_type, "data": data,
            "securityContext": {"reference": format!("Patient/{patient}")}}),
        )
        .await;
    app.create(json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": kind.0, "display": kind.1}], "text": kind.1},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": date,
        "author": [{"display": "Dr. Adaeze Okafor"}],
        "content": [{"attachment": {"contentType": content_type, "url": format!("Binary/{binary}"), "title": format!("Document {n}")}}]
    }))
    .await
}

#[tokio::test]
async fn a_patient_sees_their_labs_and_documents_and_nobody_elses() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let a = registered_patient(&app, &mut staff, "Amsel", "amsel@example.org", "1961-01-01").await;
    let b = registered_patient(&app, &mut staff, "Brandt", "brandt@example.org", "1962-02-02").await;
    let mut a_results = Vec::new();
    for (value, date) in [(13.9, "2026-01-10"), (11.2, "2026-05-10"), (12.7, "2026-09-10")] {
        a_results.push(hemoglobin(&app, &a, value, date).await);
    }
    hemoglobin(&app, &b, 16.4, "2026-10-01").await;
    app.create(json!({
        "resourceType": "DiagnosticReport", "status": "final",
        "code": {"text": "Complete blood count"},
        "subject": {"reference": format!("Patient/{a}")},
        "effectiveDateTime": "2026-09-10",
        "result": [{"reference": format!("Observation/{}", a_results[2])}]
    }))
    .await;
    let pdf = "JVBERi0xLjQgZGVtbw=="; // "%PDF-1.4 demo"
    let mut a_docs = Vec::new();
    for n in 0..8 {
        let kind = if n % 2 == 0 {
            ("11506-3", "Progress note")
        } else {
            ("18842-5", "Discharge summary")
        };
        a_docs.push(
            document(
                &app,
                &a,
                n,
                &format!("2026-0{}-15T09:00:00Z", n + 1),
                "application/pdf",
                pdf,
                kind,
            )
            .await,
        );
    }
    let b_doc = document(
        &app,
        &b,
        99,
        "2026-10-10T09:00:00Z",
        "text/plain",
        "c2VjcmV0",
        ("11506-3", "Progress note"),
    )
    .await;

    let mut anonymous = app.web();
    assert_eq!(anonymous.get("/").await.location.as_deref(), Some("/login"));
    assert_eq!(
        anonymous.get("/documents").await.location.as_deref(),
        Some("/login?next=%2Fdocuments")
    );

    let (mut web, _) = login(&app, "amsel@example.org", PASSWORD, "1961-01-01").await;
    let health = web.get("/").await;
    assert_eq!(health.status, 200);
    let text = health.text();
    assert!(text.contains("Complete blood count"), "panel heading: {text}");
    // The latest value first, with its range and date; the history newest first; B's value nowhere.
    let latest = text.find("12.7 g/dL").expect("latest value");
    assert!(text.contains("12–15.5 g/dL") && text.contains("2026-09-10"), "{text}");
    let history: Vec<usize> = ["2026-09-10 12.7 g/dL", "2026-05-10 11.2 g/dL L", "2026-01-10 13.9 g/dL"]
        .iter()
        .map(|h| text.find(h).unwrap_or_else(|| panic!("history row {h} in {text}")))
        .collect();
    assert!(history.windows(2).all(|w| w[0] < w[1]), "newest first");
    assert!(latest > 0);
    assert!(health.body.contains("<svg class=\"trend\""), "trend chart");
    assert!(!text.contains("16.4"), "another patient's result leaked");
    // Exactly the six newest documents, then all eight.
    let links = |body: &str| body.matches("href=\"/documents/").count();
    assert_eq!(links(&health.body), 6);
    assert!(
        health.body.contains(&format!("/documents/{}", a_docs[7])),
        "newest first"
    );
    assert!(!health.body.contains(&format!("/documents/{}", a_docs[0])));
    assert!(text.contains("View All Documents"));
    let all = web.get("/documents").await;
    assert_eq!(links(&all.body), 8, "{}", all.text());
    assert!(!all.body.contains(&b_doc));
    let notes = web.get("/documents?type=http%3A%2F%2Floinc.org%7C11506-3").await;
    assert_eq!(links(&notes.body), 4, "type filter");
    // Opening a PDF shows the PDF; another patient's document is not found.
    let opened = web.get(&format!("/documents/{}", a_docs[3])).await;
    assert_eq!(opened.status, 200);
    assert_eq!(opened.headers["content-type"], "application/pdf");
    assert!(
        opened.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(opened.body, "%PDF-1.4 demo");
    let theirs = web.get(&format!("/documents/{b_doc}")).await;
    assert_eq!(theirs.status, 404);
    assert!(!theirs.body.contains("secret"));
    assert!(theirs.text().contains("This document cannot be opened"));
    // Resources.
    let resources = web.get("/resources").await.text();
    for name in ["National Cancer Institute", "American Cancer Society", "CancerCare"] {
        assert!(resources.contains(name), "{name}");
    }
    // Download: a zip with the whole record as a Bundle, NDJSON per type, every document file, a summary.
    let (status, kind, bytes) = web.get_bytes("/download").await;
    assert_eq!((status, kind.as_str()), (200, "application/zip"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let files = zip
        .file_names()
        .filter(|n| n.as_ref().is_ok_and(|n| n.starts_with("documents/")))
        .count();
    assert_eq!(files, 8, "every document's file");
    let mut read = |name: &str| {
        use std::io::Read as _;
        let mut text = String::new();
        zip.by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let bundle: serde_json::Value = serde_json::from_str(&read("record/everything.json")).expect("the Bundle parses");
    let in_zip: std::collections::BTreeSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    let (_, everything) = app.get(&format!("Patient/{a}/$everything?_count=1000")).await;
    for e in everything["entry"].as_array().unwrap() {
        let r = format!(
            "{}/{}",
            e["resource"]["resourceType"].as_str().unwrap(),
            e["resource"]["id"].as_str().unwrap()
        );
        assert!(in_zip.contains(&r), "{r} missing from the download");
    }
    assert!(!in_zip.iter().any(|r| r.contains(&b)), "nothing of the other patient");
    // Every resource parses back through the server's own validation (as a new resource).
    for e in bundle["entry"].as_array().unwrap() {
        let mut resource = e["resource"].clone();
        resource.as_object_mut().unwrap().remove("meta");
        let rtype = resource["resourceType"].as_str().unwrap().to_owned();
        if rtype == "Patient" || rtype == "AuditEvent" {
            continue;
        }
        let (status, _, outcome) = app.post(&rtype, &resource).await;
        assert_eq!(status, 201, "{rtype}: {outcome}");
    }
    assert_eq!(read("record/Observation.ndjson").lines().count(), 3);
    assert_eq!(read("record/DocumentReference.ndjson").lines().count(), 8);

    let summary = read("summary.html");
    assert!(
        summary.contains("Hemoglobin") && summary.contains("Pat Amsel") && summary.contains("12.7 g/dL"),
        "{summary}"
    );
    let view = web.get("/summary").await.text();
    assert!(
        view.contains("Health record summary") && view.contains("12.7 g/dL") && !view.contains("16.4"),
        "{view}"
    );
    // The views were audited as the patient.
    let (_, events) = app.get(&format!("AuditEvent?patient={a}&_count=500")).await;
    let by_patient = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["agent"][0]["who"]["reference"] == format!("Patient/{a}"))
        .count();
    assert!(by_patient >= 4, "page views audited: {by_patient}");
}
