use serde_json::json;

use crate::helpers::{engines, spawn_app};

#[tokio::test]
async fn crud_versions_history_and_errors() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let (status, headers, created) = app
            .post(
                "Patient",
                &json!({"resourceType": "Patient", "name": [{"family": "Lee"}]}),
            )
            .await;
        assert_eq!(status, 201);
        assert_eq!(headers["etag"], "W/\"1\"");
        assert!(headers["location"].to_str().unwrap().contains("/_history/1"));
        let id = created["id"].as_str().unwrap().to_owned();

        let (status, _, updated) = app
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id, "name": [{"family": "Li"}]}),
            )
            .await;
        assert_eq!((status, updated["meta"]["versionId"].as_str()), (200, Some("2")));
        let (status, v1) = app.get(&format!("Patient/{id}/_history/1")).await;
        assert_eq!((status, v1["name"][0]["family"].as_str()), (200, Some("Lee")));

        // If-Match with a stale version is refused.
        let stale = app
            .request(reqwest::Method::PUT, &format!("Patient/{id}"))
            .header("if-match", "W/\"1\"")
            .body(json!({"resourceType": "Patient", "id": id}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status().as_u16(), 412, "{engine}");

        let (status, history) = app.get(&format!("Patient/{id}/_history")).await;
        assert_eq!((status, history["total"].as_i64()), (200, Some(2)));

        let deleted = app
            .client
            .delete(format!("{}/Patient/{id}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status().as_u16(), 204);
        assert_eq!(app.get(&format!("Patient/{id}")).await.0, 410);
        assert_eq!(app.get("Patient/does-not-exist").await.0, 404);

        // Create-on-update with a client id, numbers keep their JSON form.
        let obs = r#"{"resourceType": "Observation", "id": "hb1", "status": "final", "code": {"text": "Hb"}, "valueQuantity": {"value": 13.50}}"#;
        let r = app
            .request(reqwest::Method::PUT, "Observation/hb1")
            .body(obs)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let text = app
            .client
            .get(format!("{}/Observation/hb1", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("13.50"), "{text}");

        let (status, _, outcome) = app
            .post("Patient", &json!({"resourceType": "Patient", "unknownElement": 1}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.unknownElement");
        let r = app
            .client
            .post(format!("{}/Patient", app.base))
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 415);
        let r = app
            .request(reqwest::Method::POST, "Patient")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
}

#[tokio::test]
async fn transaction_rewrites_references_and_is_all_or_nothing() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}, "request": {"method": "POST", "url": "Observation"}}
        ]});
        let (status, _, response) = app.post("", &tx).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["type"], "transaction-response");
        let patient_id = response["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            response["entry"][1]["resource"]["subject"]["reference"],
            format!("Patient/{patient_id}")
        );
        assert_eq!(response["entry"][0]["response"]["status"], "201 Created");

        let mut bad = tx.clone();
        bad["entry"][1]["resource"]["status"] = json!("nonsense");
        let (status, _, outcome) = app.post("", &bad).await;
        assert_eq!(status, 400);
        assert!(
            outcome["issue"][0]["expression"][0]
                .as_str()
                .unwrap()
                .starts_with("Bundle.entry[1]")
        );
        let (_, all) = app.get("Patient?family=Tx").await;
        assert_eq!(all["total"], 1, "a failed transaction stored nothing");
        // ifNoneExist that matches: references to the entry point at the existing resource; conditional
        // references resolve to their one match; a conditional update takes its match's id.
        let existing = app
            .create(json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}))
            .await;
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|7"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "a"}, "subject": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "b"}, "subject": {"reference": "Patient?identifier=urn:mrn|7"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}], "active": true},
             "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|7"}}
        ]});
        let (status, _, response) = app.post("", &tx).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(
            response["entry"][1]["resource"]["subject"]["reference"],
            format!("Patient/{existing}")
        );
        assert_eq!(
            response["entry"][2]["resource"]["subject"]["reference"],
            format!("Patient/{existing}")
        );
        assert_eq!(response["entry"][3]["resource"]["id"], existing.as_str());
        assert_eq!(response["entry"][3]["resource"]["active"], true);
        // DELETE with a stale ifMatch fails the whole transaction.
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": format!("Patient/{existing}"), "ifMatch": "W/\"1\""}}
        ]});
        assert_eq!(app.post("", &tx).await.0, 412);
        // An unknown criteria parameter is refused rather than matching everything.
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Patient?identifer=urn:mrn|7"}}
        ]});
        assert_eq!(app.post("", &tx).await.0, 400);
        assert_eq!(app.get(&format!("Patient/{existing}")).await.0, 200);
    }
}

/// The published CapabilityStatement is exactly what `/metadata` serves. After a deliberate change, run this
/// test with CARESPACE_UPDATE_CAPABILITY=1 to rewrite the file, and review the diff.
#[tokio::test]
async fn published_capability_statement_matches_metadata() {
    let app = spawn_app("sqlite").await;
    let r = app.client.get(format!("{}/metadata", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    // Published with the default base URL in its endpoints.
    let text = r.text().await.unwrap().replace(&app.origin, "http://127.0.0.1:8080");
    let served: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served["fhirVersion"], "4.0.1");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/capability-statement/CapabilityStatement.json"
    );
    if std::env::var("CARESPACE_UPDATE_CAPABILITY").is_ok() {
        std::fs::write(file, serde_json::to_string_pretty(&served).unwrap() + "\n").unwrap();
    }
    let published: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(
        published, served,
        "capability-statement/CapabilityStatement.json differs from /metadata"
    );
}

#[tokio::test]
async fn errors_are_operation_outcomes_with_the_right_status() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let outcome_status = |r: &serde_json::Value| r["resourceType"] == "OperationOutcome";

        // 422: a resource claiming our lab profile without a LOINC code and an effective time; nothing is stored.
        let lab = json!({"resourceType": "Observation", "id": "bad-lab", "status": "final",
        "meta": {"profile": ["http://carespace.example/fhir/StructureDefinition/carespace-lab-observation"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"text": "Hb"}, "subject": {"reference": "Patient/x"}});
        let (status, _, outcome) = app.put("Observation/bad-lab", &lab).await;
        assert_eq!(status, 422, "{outcome}");
        let paths: Vec<&str> = outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["expression"][0].as_str())
            .collect();
        assert!(
            paths.contains(&"Observation.code") && paths.contains(&"Observation.effective[x]"),
            "{outcome}"
        );
        assert_eq!(app.get("Observation/bad-lab").await.0, 404);

        // 413: a body over the limit (16 MiB by default).
        let big = format!(
            "{{\"resourceType\":\"Basic\",\"code\":{{\"text\":\"{}\"}}}}",
            "x".repeat(17 * 1024 * 1024)
        );
        let r = app
            .request(reqwest::Method::POST, "Basic")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 413);
        assert!(outcome_status(&r.json().await.unwrap()));

        // 405 and 404 on routes.
        let r = app.client.patch(format!("{}/Patient", app.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        assert!(outcome_status(&r.json().await.unwrap()));
        let (status, outcome) = app.get("NotAType/1").await;
        assert_eq!((status, outcome_status(&outcome)), (404, true));
        let (status, _, outcome) = app
            .post("MedicinalProduct", &json!({"resourceType": "MedicinalProduct"}))
            .await;
        assert_eq!((status, outcome_status(&outcome)), (404, true));

        // FHIR JSON only: asking for XML gets 406.
        let r = app
            .client
            .get(format!("{}/metadata", app.base))
            .header("accept", "application/fhir+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 406);
        assert_eq!(app.get("metadata?_format=xml").await.0, 406);
        assert_eq!(app.get("metadata?_format=json").await.0, 200);

        // Prefer: return=minimal answers without a body; return=OperationOutcome with one.
        let r = app
            .client
            .post(format!("{}/Patient", app.base))
            .header("content-type", "application/fhir+json; fhirVersion=4.0")
            .header("prefer", "return=minimal")
            .body(json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert!(r.headers().contains_key("location"));
        assert!(r.text().await.unwrap().is_empty());

        // If-None-Exist: a match answers 200 with the existing resource and creates nothing.
        let r = app
            .request(reqwest::Method::POST, "Patient")
            .header("if-none-exist", "identifier=urn:x|1")
            .body(json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let (_, all) = app.get("Patient?identifier=urn:x|1").await;
        assert_eq!(all["total"], 1);

        // POST _search with a form body answers like GET.
        let r = app
            .client
            .post(format!("{}/Patient/_search", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("identifier=urn%3Ax%7C1")
            .send()
            .await
            .unwrap();
        let bundle: serde_json::Value = r.json().await.unwrap();
        assert_eq!(bundle["total"], 1);

        // A Binary asked for without a FHIR media type comes back as itself.
        let pdf = b"%PDF-1.4 demo";
        let binary =
            json!({"resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQgZGVtbw=="});
        let id = app.create(binary).await;
        let native = reqwest::Client::new()
            .get(format!("{}/Binary/{id}", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(native.headers()["content-type"], "application/pdf");
        assert!(
            native.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("sandbox")
        );
        assert_eq!(native.bytes().await.unwrap().as_ref(), pdf);
        let (_, as_fhir) = app.get(&format!("Binary/{id}")).await;
        assert_eq!(as_fhir["resourceType"], "Binary");

        // Every access was audited, and AuditEvents are searchable.
        let (_, audit) = app.get("AuditEvent?_summary=count").await;
        assert!(audit["total"].as_i64().unwrap() >= 4, "{audit}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app("sqlite").await;
    let root = app.base.trim_end_matches("/fhir");
    for probe in ["healthz", "readyz"] {
        let r = app.client.get(format!("{root}/{probe}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{probe}");
    }
    app.get("Patient?name=x").await;
    let metrics = app
        .client
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"carespace_http_request_duration_seconds_count{method="GET",route="/fhir/{rtype}",status="200"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"carespace_store_operation_duration_seconds_count{engine="sqlite",op="search"}"#),
        "{metrics}"
    );
}

/// Oversized or pathological input is answered with a clear 4xx, never a crash or a 5xx.
#[tokio::test]
async fn pathological_requests_get_clear_refusals() {
    let app = spawn_app("sqlite").await;
    // JSON nested far deeper than any resource.
    let deep = format!(
        "{{\"resourceType\":\"Basic\",\"code\":{}{}}}",
        "{\"extension\":[".repeat(300),
        "]}".repeat(300)
    );
    let r = app
        .request(reqwest::Method::POST, "Basic")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Too many parameters, too many alternatives, a huge _count.
    let many: String = (0..150).map(|i| format!("code=c{i}")).collect::<Vec<_>>().join("&");
    assert_eq!(app.get(&format!("Observation?{many}")).await.0, 400);
    let alternatives: String = (0..150).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
    assert_eq!(app.get(&format!("Observation?code={alternatives}")).await.0, 400);
    // A huge _count gets pages of at most 1,000 (with a link to the next), and includes are capped too.
    let (ok, out) = app
        .command(&[
            "generate",
            "--patients",
            "1",
            "--labs-per-patient",
            "1100",
            "--docs-per-patient",
            "0",
            "--seed",
            "4",
        ])
        .await;
    assert!(ok, "{out}");
    let (status, bundle) = app.get("Observation?_count=100000").await;
    assert_eq!(status, 200);
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(1000));
    assert!(
        bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );
    let includes = "_revinclude=Observation:subject&_revinclude=Observation:patient&_revinclude:iterate=Observation:subject\
                    &_include=Patient:general-practitioner";
    let (status, bundle) = app.get(&format!("Patient?_id=g4-p0&{includes}")).await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().map_or(0, Vec::len);
    assert!((1000..=3001).contains(&entries), "{entries} entries");
    // Headers past our 32 KiB limit are refused (431), far larger ones by the HTTP layer; the server carries on.
    for size in [40_000, 200_000] {
        let r = app
            .client
            .get(format!("{}/metadata", app.base))
            .header("x-big", "a".repeat(size))
            .send()
            .await;
        match r {
            Ok(r) => assert_eq!(r.status().as_u16(), 431, "{size}"),
            Err(e) => assert!(size > 100_000, "{size}: {e}"),
        }
    }
    assert_eq!(app.get("metadata").await.0, 200);
    // A portal form larger than any of ours.
    let r = reqwest::Client::new()
        .post(format!("{}/login", app.origin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={}", "a".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Not JSON at all, and a JSON array instead of a resource.
    let r = app
        .request(reqwest::Method::POST, "Patient")
        .body("\u{0}\u{1}binary")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = app
        .request(reqwest::Method::POST, "Patient")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn generated_records_are_realistic_and_searchable() {
    let app = spawn_app("sqlite").await;
    let args = [
        "generate",
        "--patients",
        "2",
        "--labs-per-patient",
        "30",
        "--docs-per-patient",
        "4",
        "--seed",
        "9",
    ];
    let (ok, out) = app.command(&args).await;
    assert!(ok && out.contains("2 patients"), "{out}");
    let (status, labs) = app
        .get("Observation?patient=g9-p1&category=laboratory&_sort=-date&_count=50")
        .await;
    assert_eq!((status, labs["total"].as_i64()), (200, Some(30)), "{labs}");
    assert!(labs["entry"][0]["resource"]["referenceRange"][0]["low"]["value"].is_number());
    let (_, docs) = app.get("DocumentReference?patient=g9-p1&_sort=-date&_count=6").await;
    assert_eq!(docs["total"], 4);
    let (_, panels) = app.get("DiagnosticReport?patient=g9-p0").await;
    assert_eq!(panels["total"], 8, "30 results in panels of four");
    // The same numbers again write the same records (new versions, nothing added).
    assert!(app.command(&args).await.0);
    let (_, again) = app.get("Observation?patient=g9-p1&_summary=count").await;
    assert_eq!(again["total"], 30);
}
