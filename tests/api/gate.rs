//! The access gate: an actor limited to one patient sees that patient's compartment and nothing else, whatever
//! the interaction or parameters — filtered in the query, so totals and paging cannot leak either.

use carespace::access::Actor;
use carespace::error::Error;
use serde_json::{Value, json};

use crate::helpers::{engines, spawn_app};

fn params(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn match_ids(bundle: &str) -> (Vec<String>, i64) {
    let v: Value = serde_json::from_str(bundle).unwrap();
    (crate::helpers::ids(&v), v["total"].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn a_patient_actor_reaches_only_their_own_compartment() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let a = app
            .create(json!({"resourceType": "Patient", "name": [{"family": "Same"}]}))
            .await;
        let b = app
            .create(json!({"resourceType": "Patient", "name": [{"family": "Same"}]}))
            .await;
        let lab = |p: &str, performer: &str| {
            json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "subject": {"reference": format!("Patient/{p}")}, "performer": [{"reference": format!("Patient/{performer}")}],
                "effectiveDateTime": "2024-01-01"})
        };
        let mut a_obs = Vec::new();
        for _ in 0..3 {
            a_obs.push(app.create(lab(&a, &a)).await);
        }
        let b_obs = app.create(lab(&b, &b)).await;
        // B's observation names A as performer: it is in both compartments, so A may see it.
        let shared = app.create(lab(&b, &a)).await;
        let records = &app.state.records;
        let alice = Actor::Patient { patient_id: a.clone() };
        // The practice directory (who treated whom) is readable by a patient; it holds no patient's data.
        let doctor = app
            .create(json!({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]}))
            .await;
        assert!(records.read(&alice, "Practitioner", &doctor).await.is_ok(), "{engine}");
        assert!(
            records
                .update(
                    &alice,
                    "Practitioner",
                    &doctor,
                    &json!({"resourceType": "Practitioner", "id": doctor}).to_string(),
                    None
                )
                .await
                .is_err(),
            "{engine}"
        );

        let mut visible = a_obs.clone();
        visible.push(shared.clone());
        visible.sort();
        for q in [
            "",
            "code=718-7",
            "subject=Patient/{b}",
            "patient={b}",
            "date=2024",
            "_sort=-date",
            "_count=1",
            "_summary=count",
            "_id={b_obs}",
        ] {
            let q = q.replace("{b}", &b).replace("{b_obs}", &b_obs);
            let (mut ids, total) = match_ids(&records.search(&alice, "Observation", &params(&q), false).await.unwrap());
            ids.sort();
            assert!(!ids.contains(&b_obs), "{engine} {q}");
            assert!(ids.iter().all(|id| visible.contains(id)), "{engine} {q}: {ids:?}");
            let expected_total = match q.as_str() {
                "_count=1" | "_summary=count" | "" | "code=718-7" | "date=2024" | "_sort=-date" => 4,
                _ if q.starts_with("_id=") => 0,
                _ => 1, // subject/patient = B: only the shared one
            };
            assert_eq!(total, expected_total, "{engine} {q}");
        }
        let (patients, total) = match_ids(
            &records
                .search(&alice, "Patient", &params("family=Same"), false)
                .await
                .unwrap(),
        );
        assert_eq!((patients, total), (vec![a.clone()], 1), "{engine}");

        assert!(matches!(
            records.read(&alice, "Observation", &b_obs).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            records.read(&alice, "Patient", &b).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            records.vread(&alice, "Observation", &b_obs, 1).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            records.history(&alice, Some("Observation"), Some(&b_obs), &[]).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            records.everything(&alice, &b, &[]).await,
            Err(Error::NotFound(_))
        ));
        assert!(records.read(&alice, "Observation", &shared).await.is_ok());

        let (everything, total) = match_ids(&records.everything(&alice, &a, &[]).await.unwrap());
        assert_eq!(total, 5, "{engine}: A, A's three labs and the shared one");
        assert!(!everything.contains(&b_obs) && !everything.contains(&b));

        // _include of the shared observation's subject (B) is not granted; the type history shows only A's.
        let bundle: Value = serde_json::from_str(
            &records
                .search(
                    &alice,
                    "Observation",
                    &params(&format!("_id={shared}&_include=Observation:subject")),
                    false,
                )
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["resource"]["id"] != b.as_str()),
            "{engine}: {bundle}"
        );
        let history: Value =
            serde_json::from_str(&records.history(&alice, Some("Observation"), None, &[]).await.unwrap()).unwrap();
        assert_eq!(history["total"], 4, "{engine}");

        // A message between A and B is in both compartments: A may read it but neither rewrite nor delete it
        // (a patient's side never changes a sent message, only records once that it was received).
        let message = json!({"resourceType": "Communication", "status": "completed",
            "subject": {"reference": format!("Patient/{a}")}, "recipient": [{"reference": format!("Patient/{b}")}],
            "payload": [{"contentString": "hello"}]});
        let shared_message = app.create(message.clone()).await;
        assert!(records.read(&alice, "Communication", &shared_message).await.is_ok());
        let mut edited = message.clone();
        edited["id"] = json!(shared_message);
        edited["payload"][0]["contentString"] = json!("changed");
        let update = records
            .update(&alice, "Communication", &shared_message, &edited.to_string(), None)
            .await;
        assert!(matches!(update, Err(Error::Forbidden(_))), "{engine}: {update:?}");
        edited.as_object_mut().unwrap().remove("recipient"); // taking B out of it is no way in either
        let update = records
            .update(&alice, "Communication", &shared_message, &edited.to_string(), None)
            .await;
        assert!(matches!(update, Err(Error::Forbidden(_))), "{engine}: {update:?}");
        let delete = records.delete(&alice, "Communication", &shared_message).await;
        assert!(matches!(delete, Err(Error::Forbidden(_))), "{engine}: {delete:?}");
        // Another patient's resource is "not found" even to a conditional update: no version comparison
        // (412 "is at version n") gives its existence away.
        let theirs = app
            .create(json!({"resourceType": "Communication", "status": "completed", "subject": {"reference": format!("Patient/{b}")}}))
            .await;
        let claim = json!({"resourceType": "Communication", "id": theirs, "status": "completed", "subject": {"reference": format!("Patient/{a}")}});
        for version in [None, Some(1), Some(7)] {
            let update = records
                .update(&alice, "Communication", &theirs, &claim.to_string(), version)
                .await;
            assert!(
                matches!(update, Err(Error::NotFound(_))),
                "{engine} {version:?}: {update:?}"
            );
        }
        assert!(
            records
                .create(&alice, "Communication", &message.to_string())
                .await
                .is_err(),
            "{engine}: not into B's record"
        );
        let kept = records.read(&alice, "Communication", &shared_message).await.unwrap();
        assert!(kept.body.contains("hello") && kept.version == 1, "{engine}");

        // One system search over both patients: each patient's audit trail names only their own resources.
        let (_, _) = app.get("Observation?code=718-7").await;
        let trail: Value = serde_json::from_str(
            &records
                .search(&alice, "AuditEvent", &params("_count=1000"), false)
                .await
                .unwrap(),
        )
        .unwrap();
        let text = trail.to_string();
        assert!(
            !text.contains(&b_obs) && !text.contains(&format!("Patient/{b}")),
            "{engine}: A's audit trail shows B"
        );
        assert!(
            text.contains(&a_obs[0]),
            "{engine}: A's audit trail lacks A's own reads"
        );

        // A result filed to the wrong patient and moved: each sees only the versions that were theirs.
        let misfiled = app.create(lab(&a, &a)).await;
        let mut moved = lab(&b, &b);
        moved["id"] = json!(misfiled);
        assert_eq!(app.put(&format!("Observation/{misfiled}"), &moved).await.0, 200);
        let bob = Actor::Patient { patient_id: b.clone() };
        assert!(
            records.vread(&alice, "Observation", &misfiled, 1).await.is_ok(),
            "{engine}"
        );
        assert!(matches!(
            records.vread(&alice, "Observation", &misfiled, 2).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            records.vread(&bob, "Observation", &misfiled, 1).await,
            Err(Error::NotFound(_))
        ));
        assert!(records.read(&bob, "Observation", &misfiled).await.is_ok());
        let theirs = |actor: &Actor| {
            let actor = actor.clone();
            let id = misfiled.clone();
            async move {
                let h: Value = serde_json::from_str(
                    &records
                        .history(&actor, Some("Observation"), Some(&id), &[])
                        .await
                        .unwrap(),
                )
                .unwrap();
                h["total"].as_i64().unwrap()
            }
        };
        assert_eq!((theirs(&alice).await, theirs(&bob).await), (1, 1), "{engine}");

        // A patient may not write clinical data.
        assert!(matches!(
            records.create(&alice, "Observation", &lab(&a, &a).to_string()).await,
            Err(Error::Forbidden(_))
        ));
        // And the reads were audited with A as the patient.
        let audit: Value = serde_json::from_str(
            &records
                .search(
                    &alice,
                    "AuditEvent",
                    &params(&format!("patient={a}&_summary=count")),
                    false,
                )
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(audit["total"].as_i64().unwrap() >= 10, "{engine}: {audit}");
    }
}
