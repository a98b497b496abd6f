use base64::Engine as _;
use serde_json::json;

use crate::helpers::{engines, ids, spawn_app};

/// One patient's search sorted by one date (walked on the date index): a resource ranks by its latest end
/// descending and its earliest start ascending, ties go by creation, matches without the date come last
/// either way, and pages across that boundary and past the end hold every match once with the right total.
#[tokio::test]
async fn one_patients_date_sort_ranks_by_extremes_and_puts_undated_last() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let p = app
            .create(json!({"resourceType": "Patient", "birthDate": "1960-01-01"}))
            .await;
        let goal = |status: &str, dues: &[&str]| {
            let mut goal = json!({"resourceType": "Goal", "lifecycleStatus": status,
                "description": {"text": "walk"}, "subject": {"reference": format!("Patient/{p}")}});
            if !dues.is_empty() {
                goal["target"] = dues.iter().map(|d| json!({"dueDate": d})).collect();
            }
            goal
        };
        let wide = app.create(goal("active", &["2025-01-01", "2026-06-01"])).await;
        let mid = app.create(goal("active", &["2025-12-01"])).await;
        let tie = app.create(goal("active", &["2025-12-01"])).await;
        let late = app.create(goal("active", &["2025-06-01"])).await;
        let undated = [
            app.create(goal("active", &[])).await,
            app.create(goal("active", &[])).await,
        ];
        app.create(goal("cancelled", &["2030-01-01"])).await;
        let search = format!("Goal?patient={p}&lifecycle-status:not=cancelled");
        let by = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<Vec<_>>();
        let newest = by(&[&wide, &mid, &tie, &late, &undated[0], &undated[1]]);
        let oldest = by(&[&wide, &late, &mid, &tie, &undated[0], &undated[1]]);
        for (sort, want) in [("-target-date", &newest), ("target-date", &oldest)] {
            let (status, all) = app.get(&format!("{search}&_sort={sort}")).await;
            assert_eq!((status, &ids(&all)), (200, want), "{sort}: {all}");
            // Pages of one and of two, following `next`: each page counts all six.
            for size in [1, 2] {
                let (_, mut page) = app.get(&format!("{search}&_sort={sort}&_count={size}")).await;
                let mut walked = Vec::new();
                loop {
                    assert_eq!(page["total"], 6, "{page}");
                    walked.extend(ids(&page));
                    let links = page["link"].as_array().unwrap();
                    let Some(next) = links.iter().find(|l| l["relation"] == "next") else {
                        break;
                    };
                    let url = next["url"].as_str().unwrap().to_owned();
                    page = app.client.get(url).send().await.unwrap().json().await.unwrap();
                }
                assert_eq!(&walked, want, "{sort}, pages of {size}");
            }
            for (offset, total) in [
                (3, "accurate"),
                (3, "none"),
                (4, "accurate"),
                (5, "accurate"),
                (7, "accurate"),
            ] {
                let (_, r) = app
                    .get(&format!(
                        "{search}&_sort={sort}&_count=2&_offset={offset}&_total={total}"
                    ))
                    .await;
                let end = want.len().min(offset + 2);
                assert_eq!(ids(&r), want[offset.min(end)..end], "{sort} offset {offset}: {r}");
                let counted = if total == "none" { None } else { Some(6) };
                assert_eq!(r["total"].as_i64(), counted, "{sort} offset {offset}");
            }
        }
    }
}

#[tokio::test]
async fn searches_by_token_date_string_reference_and_never_mixes_patients() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let a = app.create(json!({"resourceType": "Patient", "name": [{"family": "Ångström", "given": ["Eva"]}], "gender": "female", "birthDate": "1970-05-01"})).await;
        let b = app
            .create(
                json!({"resourceType": "Patient", "name": [{"family": "Berg"}], "gender": "male", "birthDate": "1980"}),
            )
            .await;
        let lab = |patient: &str, code: &str, date: &str, value: f64| {
            json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": date,
                "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}})
        };
        let a1 = app.create(lab(&a, "718-7", "2024-01-10T09:00:00Z", 12.0)).await;
        let a2 = app.create(lab(&a, "718-7", "2025-03-01T09:00:00Z", 14.5)).await;
        let b1 = app.create(lab(&b, "718-7", "2024-06-01T09:00:00Z", 13.0)).await;

        let (_, r) = app
            .get(&format!("Observation?patient={a}&category=laboratory&_sort=-date"))
            .await;
        assert_eq!(ids(&r), vec![a2.clone(), a1.clone()]);
        assert_eq!(r["total"], 2);
        let (_, r) = app
            .get(&format!("Observation?patient=Patient/{b}&code=http://loinc.org|718-7"))
            .await;
        assert_eq!(ids(&r), vec![b1.clone()]);
        let (_, r) = app.get("Observation?code=718-7&date=ge2024-06&_sort=date").await;
        assert_eq!(ids(&r), vec![b1.clone(), a2.clone()]);
        let (_, r) = app.get("Observation?date=2024&_sort=date").await;
        assert_eq!(ids(&r), vec![a1.clone(), b1.clone()]);
        let (_, r) = app.get("Observation?value-quantity=gt13.5").await;
        assert_eq!(ids(&r), vec![a2.clone()]);
        let (_, r) = app.get(&format!("Observation?patient={a}&value-quantity=ne12.0")).await;
        assert_eq!(ids(&r), vec![a2.clone()]);
        let (_, r) = app
            .get(&format!("Observation?patient={a}&value-quantity=12&date=ne2025"))
            .await;
        assert_eq!(ids(&r), vec![a1.clone()]);
        let (_, r) = app.get("Patient?name=angstrom").await;
        assert_eq!(ids(&r), vec![a.clone()]);
        let (_, r) = app.get("Patient?name:contains=NGSTR").await;
        assert_eq!(ids(&r), vec![a.clone()]);
        let (_, r) = app.get("Patient?name:contains=%25").await;
        assert!(ids(&r).is_empty(), "% is a character, not a wildcard");
        let (_, r) = app.get("Patient?name:exact=Berg&gender=male").await;
        assert_eq!(ids(&r), vec![b.clone()]);
        let (_, r) = app.get("Patient?birthdate=lt1975&gender=female,male").await;
        assert_eq!(ids(&r), vec![a.clone()]);
        let (_, r) = app.get(&format!("Observation?patient={a}&_count=1&_sort=date")).await;
        assert_eq!(ids(&r), vec![a1.clone()]);
        let next = r["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let page2: serde_json::Value = app.client.get(next).send().await.unwrap().json().await.unwrap();
        assert_eq!(ids(&page2), vec![a2.clone()]);
        // Every page counts all matches, also one past the end (no rows to carry the count).
        assert_eq!((r["total"].as_i64(), page2["total"].as_i64()), (Some(2), Some(2)));
        let (_, past) = app
            .get(&format!("Observation?patient={a}&_count=1&_offset=5&_sort=date"))
            .await;
        assert_eq!((past["total"].as_i64(), ids(&past).len()), (Some(2), 0), "{past}");
        // sa / eb / ap, _lastUpdated, and :identifier on references.
        let (_, r) = app.get("Observation?date=sa2024-12-31&_sort=date").await;
        assert_eq!(ids(&r), vec![a2.clone()]);
        let (_, r) = app.get("Observation?date=eb2024-02-01").await;
        assert_eq!(ids(&r), vec![a1.clone()]);
        let (_, r) = app.get("Observation?date=ap2024-06-01&_sort=date").await;
        assert!(ids(&r).contains(&b1) && !ids(&r).contains(&a2), "{r}");
        let (_, r) = app.get("Observation?_lastUpdated=gt2020-01-01&_summary=count").await;
        assert_eq!(r["total"], 3);
        let (_, r) = app.get("Observation?_lastUpdated=lt2020-01-01&_summary=count").await;
        assert_eq!(r["total"], 0);
        let mut by_identifier = lab(&a, "4548-4", "2025-05-01T09:00:00Z", 6.1);
        by_identifier["subject"] = json!({"identifier": {"system": "urn:mrn", "value": "A-1"}});
        let x = app.create(by_identifier).await;
        let (_, r) = app.get("Observation?subject:identifier=urn:mrn|A-1").await;
        assert_eq!(ids(&r), vec![x.clone()]);
        app.client
            .delete(format!("{}/Observation/{x}", app.base))
            .send()
            .await
            .unwrap();
        let (_, r) = app.get(&format!("Observation?patient={a}&_summary=count")).await;
        assert_eq!((r["total"].as_i64(), ids(&r).len()), (Some(2), 0));
        let (_, r) = app
            .get(&format!("Observation?_id={a1}&_include=Observation:patient"))
            .await;
        assert_eq!(r["entry"].as_array().unwrap().len(), 2);

        // Whatever the parameters, one patient's search never returns the other's resources.
        for q in [
            "",
            "&code=718-7",
            "&date=ge2000",
            "&_sort=-date&_count=1000",
            "&status=final,amended",
        ] {
            let (_, r) = app.get(&format!("Observation?patient={a}{q}")).await;
            assert!(!ids(&r).contains(&b1), "{q}");
        }
        let (_, everything) = app.get(&format!("Patient/{a}/$everything")).await;
        let mut got = ids(&everything);
        got.sort();
        let mut want = vec![a.clone(), a1.clone(), a2.clone()];
        want.sort();
        assert_eq!(got, want);
        let (_, typed) = app.get(&format!("Patient/{a}/$everything?_type=Observation")).await;
        assert_eq!(typed["total"], 2);
        let (_, dated) = app.get(&format!("Patient/{a}/$everything?start=2025-01-01")).await;
        let mut got = ids(&dated);
        got.sort();
        let mut want = vec![a.clone(), a2.clone()];
        want.sort();
        assert_eq!(
            got, want,
            "start keeps the Patient (no clinical date) and the 2025 result"
        );
        let (_, ended) = app
            .get(&format!("Patient/{a}/$everything?end=2024-12-31&_type=Observation"))
            .await;
        assert_eq!(ids(&ended), vec![a1.clone()]);
        let (_, since) = app
            .get(&format!("Patient/{a}/$everything?_since=2999-01-01T00:00:00Z"))
            .await;
        assert_eq!(since["total"], 0);
        let (_, paged) = app.get(&format!("Patient/{a}/$everything?_count=2")).await;
        assert_eq!((ids(&paged).len(), paged["total"].as_i64()), (2, Some(3)));
        assert!(
            paged["link"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["relation"] == "next")
        );
        assert_eq!(app.get("Observation?date=notadate").await.0, 400);
        // Unknown parameters are ignored and reported in an outcome entry, or refused with handling=strict.
        let (_, lenient) = app.get(&format!("Observation?patient={a}&colour=blue")).await;
        assert_eq!(lenient["total"], 2);
        assert!(
            lenient["entry"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["search"]["mode"] == "outcome")
        );
        assert!(!lenient["link"][0]["url"].as_str().unwrap().contains("colour"));
        let strict = app
            .client
            .get(format!("{}/Observation?patient={a}&colour=blue", app.base))
            .header("prefer", "handling=strict")
            .send()
            .await
            .unwrap();
        assert_eq!(strict.status().as_u16(), 400);
        // _elements keeps the asked elements and marks the result SUBSETTED.
        let (_, slim) = app.get(&format!("Observation?_id={b1}&_elements=status")).await;
        let resource = &slim["entry"][0]["resource"];
        assert_eq!(
            (resource["status"].as_str(), resource.get("code")),
            (Some("final"), None)
        );
        assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
        // $everything also brings what the record refers to that is no patient's: here, who performed a test.
        let doctor = app
            .create(json!({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]}))
            .await;
        let mut with_performer = lab(&a, "2345-7", "2025-04-01T09:00:00Z", 90.0);
        with_performer["performer"] = json!([{"reference": format!("Practitioner/{doctor}")}]);
        app.create(with_performer).await;
        let (_, everything) = app.get(&format!("Patient/{a}/$everything")).await;
        let included: Vec<&serde_json::Value> = everything["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .collect();
        assert_eq!(included.len(), 1);
        assert_eq!(included[0]["resource"]["id"], doctor.as_str());
        assert_eq!(everything["total"], 4);
        // Very long values are stored whole and still found (the index keeps a bounded prefix).
        let long = format!("Long{}", "é".repeat(3000));
        let long_id = app
            .create(json!({"resourceType": "Patient", "name": [{"family": long}]}))
            .await;
        let (_, r) = app.get("Patient?family=longeee").await;
        assert_eq!(ids(&r), vec![long_id.clone()], "{engine}");
        let (_, read) = app.get(&format!("Patient/{long_id}")).await;
        assert_eq!(read["name"][0]["family"].as_str().map(str::len), Some(long.len()));
    }
}

/// The search parameters the foundation promises for each resource type, one query each.
#[tokio::test]
async fn each_promised_search_parameter_answers() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let p = app
            .create(
                json!({"resourceType": "Patient", "name": [{"family": "Ng", "given": ["Ann"]}], "gender": "female",
            "birthDate": "1970-01-02", "identifier": [{"system": "urn:mrn", "value": "9"}],
            "telecom": [{"system": "email", "value": "ann@example.com"}]}),
            )
            .await;
        let doctor = app.create(json!({"resourceType": "Practitioner", "name": [{"family": "Okafor"}], "identifier": [{"system": "urn:npi", "value": "1"}]})).await;
        let org = app.create(json!({"resourceType": "Organization", "name": "Riverside Clinic", "identifier": [{"system": "urn:org", "value": "r"}]})).await;
        let friend = app.create(json!({"resourceType": "RelatedPerson", "patient": {"reference": format!("Patient/{p}")},
            "name": [{"family": "Ng", "given": ["Bo"]}], "birthDate": "1969-05-05", "telecom": [{"system": "email", "value": "bo@example.com"}]})).await;
        let doc = app
            .create(json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "category": [{"coding": [{"system": "urn:cat", "code": "note"}]}],
            "subject": {"reference": format!("Patient/{p}")}, "date": "2025-01-02T10:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}))
            .await;
        let first = app
            .create(json!({"resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": "urn:msg", "code": "rx"}]}],
            "subject": {"reference": format!("Patient/{p}")}, "sender": {"reference": format!("Practitioner/{doctor}")},
            "recipient": [{"reference": format!("Patient/{p}")}], "sent": "2025-02-01T10:00:00Z",
            "payload": [{"contentString": "hello"}]}))
            .await;
        let reply = app
            .create(json!({"resourceType": "Communication", "status": "completed",
            "subject": {"reference": format!("Patient/{p}")}, "sender": {"reference": format!("Patient/{p}")},
            "inResponseTo": [{"reference": format!("Communication/{first}")}], "sent": "2025-02-02T10:00:00Z",
            "payload": [{"contentString": "thanks"}]}))
            .await;
        let cases: Vec<(String, Vec<&String>)> = vec![
            ("Patient?family=ng&given=ann".to_owned(), vec![&p]),
            ("Patient?birthdate=1970-01-02&gender=female".to_owned(), vec![&p]),
            ("Patient?identifier=urn:mrn|9".to_owned(), vec![&p]),
            ("Patient?email=ann@example.com".to_owned(), vec![&p]),
            ("Patient?gender=|female".to_owned(), vec![&p]),
            ("Practitioner?name=okafor".to_owned(), vec![&doctor]),
            ("Practitioner?identifier=urn:npi|1".to_owned(), vec![&doctor]),
            ("Organization?name=riverside".to_owned(), vec![&org]),
            ("Organization?identifier=r".to_owned(), vec![&org]),
            (format!("RelatedPerson?patient={p}&email=bo@example.com"), vec![&friend]),
            ("RelatedPerson?birthdate=1969-05-05&name=bo".to_owned(), vec![&friend]),
            (
                format!("DocumentReference?subject=Patient/{p}&type=11506-3&category=note&status=current&date=2025-01"),
                vec![&doc],
            ),
            (
                format!("Communication?patient={p}&category=rx&sender=Practitioner/{doctor}&sent=ge2025-02-01"),
                vec![&first],
            ),
            (
                format!("Communication?recipient=Patient/{p}&status=completed"),
                vec![&first],
            ),
            (
                format!("Communication?in-response-to=Communication/{first}"),
                vec![&reply],
            ),
        ];
        for (query, want) in cases {
            let (status, bundle) = app.get(&query).await;
            assert_eq!(status, 200, "{engine} {query}: {bundle}");
            let want: Vec<String> = want.into_iter().cloned().collect();
            assert_eq!(ids(&bundle), want, "{engine} {query}");
        }
        // AuditEvent: patient, entity, date and type answer too (the reads above were audited).
        let (_, audits) = app
            .get(&format!(
                "AuditEvent?patient={p}&entity=Communication/{first}&type=rest&date=ge2020"
            ))
            .await;
        assert!(audits["total"].as_i64().unwrap() >= 1, "{engine}: {audits}");
        let (_, agent) = app.get("AuditEvent?agent:missing=true&_summary=count").await;
        assert!(agent["total"].as_i64().unwrap() >= 1, "{engine}: {agent}");

        // A search's event names the patient, the query and how many of each kind it returned, not each one.
        let (_, found) = app
            .get(&format!("Communication?patient={p}&_include=Communication:sender"))
            .await;
        assert_eq!(ids(&found).len(), 2, "{engine}: {found}");
        let (_, newest) = app
            .get(&format!(
                "AuditEvent?patient={p}&subtype=search-type&_sort=-date&_count=1"
            ))
            .await;
        let entities = newest["entry"][0]["resource"]["entity"].as_array().unwrap().clone();
        let described: Vec<&str> = entities.iter().filter_map(|e| e["description"].as_str()).collect();
        assert_eq!(
            described,
            ["2 Communication resources", "1 Practitioner resource"],
            "{engine}: {entities:?}"
        );
        assert!(
            entities.iter().all(|e| e["what"]["reference"]
                .as_str()
                .is_none_or(|r| r.starts_with("Patient/"))),
            "{engine}: {entities:?}"
        );
        let query = entities.iter().find_map(|e| e["query"].as_str()).expect("the query");
        let query = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(query).unwrap()).unwrap();
        assert!(query.contains(&format!("patient={p}")), "{engine}: {query}");
    }
}
