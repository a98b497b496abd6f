//! The front door in a real browser: `tests/browser/registration.mjs` (Playwright driving Debian's Chromium)
//! walks invitation email → registration → login → logout by visible labels against a server started here.
//! Skipped, with the reason printed, where Node.js, Chromium or the npm packages are missing, unless
//! CARESPACE_REQUIRE_BROWSER=1 (set by .ci/run) makes a missing piece a failure.

use std::path::Path;

use serde_json::json;

use crate::helpers::{say, spawn_app_with_outbox_folder};

/// What is missing for browser tests, if anything.
fn missing(chromium: &str) -> Option<String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new(chromium).exists() {
        return Some(format!("no Chromium at {chromium} (Debian package chromium)"));
    }
    if !here.join("node_modules/playwright-core").is_dir() {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    None
}

#[tokio::test]
async fn a_person_registers_from_the_invitation_email_and_logs_in() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if let Some(why) = missing(&chromium) {
        assert!(
            std::env::var("CARESPACE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "browser test required but {why}"
        );
        say(&format!("browser test skipped: {why}"));
        return;
    }
    let app = spawn_app_with_outbox_folder("sqlite").await;
    let (staff_email, staff_password) = ("desk@practice.example", "Front-Desk-24!");
    let (ok, out) = app.command_with_input(
        &["staff", "add", "--email", staff_email, "--name", "Dana Desk"],
        &format!("{staff_password}\n"),
    );
    assert!(ok, "{out}");
    app.create(json!({
        "resourceType": "Patient",
        "name": [{"given": ["Mira"], "family": "Castillo"}],
        "birthDate": "1986-11-03",
    }))
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/registration.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASE_URL", &app.origin)
        .env("OUTBOX_DIR", app.dir.path().join("outbox"))
        .env("STAFF_EMAIL", staff_email)
        .env("STAFF_PASSWORD", staff_password)
        .env("PATIENT_NAME", "Mira Castillo")
        .env("PATIENT_EMAIL", "mira.castillo@example.org")
        .env("PATIENT_BIRTH_DATE", "1986-11-03")
        .env("CHROMIUM", &chromium)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the browser walk finished within 2 minutes")
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser walk failed:\n{log}");
    assert!(log.contains("browser walk passed"), "{log}");
}
