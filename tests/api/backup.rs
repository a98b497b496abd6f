//! `carespace backup` copies the SQLite database while the server runs; `carespace restore` puts a backup back,
//! refusing while a server uses the database and refusing files that are not CareSpace backups.

use std::process::Command;

use serde_json::json;

use crate::helpers::{fhir_client, free_port, new_database, start_server, system_token, wait_ready};

fn carespace(dir: &std::path::Path, database_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carespace"));
    c.env("CARESPACE_DATA_DIR", dir)
        .env("CARESPACE_DATABASE_URL", database_url)
        .env("RUST_BACKTRACE", "0");
    c
}

#[tokio::test]
async fn backup_while_serving_and_restore_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = new_database("sqlite", dir.path()).await;
    let port = free_port();
    let start = || start_server(dir.path(), &database_url, port, &[]);
    let probe = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut server = start();
    wait_ready(&probe, port).await;
    let client = fhir_client(&system_token(&format!("http://127.0.0.1:{port}"), dir.path(), &database_url).await);
    let put = |id: &str| {
        client
            .put(format!("{base}/Patient/{id}"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "id": id}).to_string())
            .send()
    };
    let status = |id: String| {
        let url = format!("{base}/Patient/{id}");
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };

    assert_eq!(put("before").await.unwrap().status().as_u16(), 201);
    let backup = dir.path().join("backup.db");
    let out = carespace(dir.path(), &database_url)
        .arg("backup")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = carespace(dir.path(), &database_url)
        .arg("backup")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(!again.status.success(), "a backup never overwrites a file");
    assert_eq!(put("after").await.unwrap().status().as_u16(), 201);

    let refused = carespace(dir.path(), &database_url)
        .arg("restore")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.kill();

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    assert!(
        !carespace(dir.path(), &database_url)
            .arg("restore")
            .arg(&junk)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = carespace(dir.path(), &database_url)
        .arg("restore")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut server = start();
    wait_ready(&probe, port).await;
    assert_eq!(status("before".into()).await, 200);
    assert_eq!(
        status("after".into()).await,
        404,
        "the restore brings back the state of the backup"
    );
    server.kill();
}
