//! Acknowledged writes survive `kill -9`: the real server process is killed in the middle of concurrent
//! creates, updates, transactions and reads, restarted, and every write it answered 2xx to is there with its
//! version history and its audit record; no transaction is half there; every answered read is in the audit
//! trail (on SQLite reads' records are journaled first and moved in after the restart).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{authorized, engines, free_port, get_json, new_database, start_server, system_token, wait_ready};

/// (id, version, marker) of each acknowledged write.
type Acked = Arc<Mutex<Vec<(String, i64, i64)>>>;

/// Creates a resource, then updates it again and again, recording every 2xx answer, until the server dies.
async fn writer(client: reqwest::Client, base: String, worker: i64, acked: Acked) {
    let mut marker = worker * 1_000_000;
    let body = |marker: i64| json!({"resourceType": "Basic", "code": {"text": "durability"}, "identifier": [{"value": marker.to_string()}]});
    let Ok(r) = client
        .post(format!("{base}/Basic"))
        .header("content-type", "application/fhir+json")
        .body(body(marker).to_string())
        .send()
        .await
    else {
        return;
    };
    if !r.status().is_success() {
        return;
    }
    let Ok(created) = r.json::<Value>().await else { return };
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    acked.lock().unwrap().push((id.clone(), 1, marker));
    loop {
        marker += 1;
        let sent = client
            .put(format!("{base}/Basic/{id}"))
            .header("content-type", "application/fhir+json")
            .body({
                let mut b = body(marker);
                b["id"] = json!(id);
                b.to_string()
            });
        let Ok(r) = sent.send().await else { return };
        if !r.status().is_success() {
            return;
        }
        let Ok(updated) = r.json::<Value>().await else { return };
        let version: i64 = updated["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        acked.lock().unwrap().push((id.clone(), version, marker));
    }
}

/// Transaction Bundles of three Practitioners sharing a marker, one after another until the server dies; records
/// every marker sent and whether its answer was 2xx.
async fn transactions(client: reqwest::Client, base: String, worker: i64, sent: Arc<Mutex<Vec<(String, bool)>>>) {
    for n in 0.. {
        let marker = format!("tx-{worker}-{n}");
        let entry = json!({"resource": {"resourceType": "Practitioner", "identifier": [{"value": marker}]},
            "request": {"method": "POST", "url": "Practitioner"}});
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry, entry]});
        sent.lock().unwrap().push((marker.clone(), false));
        let answer = client
            .post(&base)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                if let Some(last) = sent.lock().unwrap().last_mut() {
                    last.1 = true;
                }
            }
            _ => return,
        }
    }
}

/// Reads `url` again and again until the server dies, counting the reads answered 200 (its audit record was
/// durable before the status line was sent, whether or not the body then arrived).
async fn reader(client: reqwest::Client, url: String, answered: Arc<AtomicUsize>) {
    while let Ok(r) = client.get(&url).send().await {
        if r.status() != 200 {
            return;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        if r.bytes().await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let database_url = new_database(engine, dir.path()).await;
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut client = probe.clone();
        let acked: Acked = Arc::default();
        let bundles: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let mut read_targets: Vec<(String, Arc<AtomicUsize>)> = Vec::new();
        for round in 0..3u64 {
            let port = free_port();
            let mut server = start_server(dir.path(), &database_url, port, &[]);
            wait_ready(&probe, port).await;
            if round == 0 {
                client =
                    authorized(&system_token(&format!("http://127.0.0.1:{port}"), dir.path(), &database_url).await);
            }
            let base = format!("http://127.0.0.1:{port}/fhir");
            let mut writers: Vec<_> = (0..4)
                .map(|w| {
                    tokio::spawn(writer(
                        client.clone(),
                        base.clone(),
                        (round * 4 + w) as i64,
                        acked.clone(),
                    ))
                })
                .collect();
            let target: Value = client
                .post(format!("{base}/Basic"))
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType": "Basic", "code": {"text": "read target"}}).to_string())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = target["id"].as_str().unwrap().to_owned();
            let answered = Arc::new(AtomicUsize::new(0));
            writers.push(tokio::spawn(reader(
                client.clone(),
                format!("{base}/Basic/{id}"),
                answered.clone(),
            )));
            read_targets.push((id, answered));
            writers.push(tokio::spawn(transactions(
                client.clone(),
                base.clone(),
                round as i64,
                bundles.clone(),
            )));
            tokio::time::sleep(Duration::from_millis(300 + 250 * round)).await;
            server.kill();
            for w in writers {
                w.await.unwrap();
            }
        }
        let port = free_port();
        let mut server = start_server(dir.path(), &database_url, port, &[]);
        wait_ready(&client, port).await;
        let base = format!("http://127.0.0.1:{port}/fhir");
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 20,
            "{engine}: only {} writes were acknowledged",
            acked.len()
        );
        for (id, version, marker) in &acked {
            let r = client
                .get(format!("{base}/Basic/{id}/_history/{version}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                200,
                "{engine}: acknowledged Basic/{id} v{version} is lost"
            );
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                v["identifier"][0]["value"],
                marker.to_string(),
                "{engine}: Basic/{id} v{version}"
            );
        }
        // Histories have no holes: versions 1..=n, and the current version is the newest acknowledged or one
        // more (a write that committed but whose answer was cut by the kill).
        let mut ids: Vec<&String> = acked.iter().map(|(id, ..)| id).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let newest = acked
                .iter()
                .filter(|(i, ..)| i == id)
                .map(|(_, v, _)| *v)
                .max()
                .unwrap();
            let history: Value = get_json(&client, format!("{base}/Basic/{id}/_history?_count=1000")).await;
            let total = history["total"].as_i64().unwrap();
            assert!(
                total == newest || total == newest + 1,
                "{engine}: Basic/{id} has {total} versions, newest acknowledged {newest}"
            );
            let mut versions: Vec<i64> = history["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().parse().unwrap())
                .collect();
            versions.sort();
            assert_eq!(versions, (1..=total).collect::<Vec<_>>(), "{engine}: Basic/{id}");
        }
        // Every acknowledged write is in the audit trail (written in the same transaction).
        for (id, version, _) in acked.iter().filter(|(_, v, _)| *v == 1) {
            let trail: Value = get_json(&client, format!("{base}/AuditEvent?entity=Basic/{id}&_count=1000")).await;
            assert!(
                trail["total"].as_i64().is_some_and(|t| t >= *version),
                "{engine}: the creation of Basic/{id} is not in the audit trail"
            );
        }
        // Every answered read is in the audit trail, with the target's creation.
        for (id, answered) in &read_targets {
            let answered = answered.load(Ordering::SeqCst);
            assert!(answered > 0, "{engine}: no read of Basic/{id} was answered");
            let trail: Value = get_json(&client, format!("{base}/AuditEvent?entity=Basic/{id}&_summary=count")).await;
            let total = trail["total"].as_u64().unwrap_or(0) as usize;
            assert!(
                total > answered,
                "{engine}: {answered} reads of Basic/{id} were answered, the trail has {total} events with its creation"
            );
        }
        // A transaction is all or nothing: three resources for each acknowledged Bundle, three or none for
        // one cut by the kill.
        let bundles = bundles.lock().unwrap().clone();
        assert!(
            bundles.iter().any(|(_, ok)| *ok),
            "{engine}: no transaction was acknowledged"
        );
        for (marker, acknowledged) in &bundles {
            let found: Value = get_json(
                &client,
                format!("{base}/Practitioner?identifier={marker}&_summary=count"),
            )
            .await;
            let total = found["total"].as_i64().unwrap_or(-1);
            if *acknowledged {
                assert_eq!(total, 3, "{engine}: acknowledged transaction {marker}");
            } else {
                assert!(
                    total == 0 || total == 3,
                    "{engine}: transaction {marker} is half there ({total})"
                );
            }
        }
        server.kill();
    }
}

/// Concurrent updates that all name the same version with If-Match: exactly one succeeds.
#[tokio::test]
async fn concurrent_if_match_updates_never_both_succeed() {
    for engine in engines() {
        let app = crate::helpers::spawn_app(engine).await;
        let id = app
            .create(json!({"resourceType": "Basic", "code": {"text": "race"}}))
            .await;
        let attempts = (0..8).map(|n| {
            let client = app.client.clone();
            let url = format!("{}/Basic/{id}", app.base);
            let body = json!({"resourceType": "Basic", "id": id, "code": {"text": format!("writer {n}")}}).to_string();
            tokio::spawn(async move {
                let r = client
                    .put(url)
                    .header("content-type", "application/fhir+json")
                    .header("if-match", "W/\"1\"")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        });
        let mut statuses = Vec::new();
        for a in attempts {
            statuses.push(a.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{engine}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 412),
            "{engine}: {statuses:?}"
        );
        let (_, history) = app.get(&format!("Basic/{id}/_history")).await;
        assert_eq!(history["total"], 2);
    }
}
