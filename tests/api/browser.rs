//! Real browsers: scripts in `tests/browser/` (Playwright driving Debian's Chromium) walk the portal and a
//! SMART app against a server started here. Skipped, with the reason printed, where Node.js, Chromium or the npm
//! packages are missing, unless CARESPACE_REQUIRE_BROWSER=1 (set by .ci/run) makes a missing piece a failure.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::accounts::{PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, registered_patient, staff_session};
use crate::helpers::{say, spawn_app, spawn_app_with_outbox_folder};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Whether browser tests can run here; says why not (and fails when they are required).
fn browser_ready() -> bool {
    let why = if std::process::Command::new("node").arg("--version").output().is_err() {
        "node is not installed".to_owned()
    } else if !Path::new(&chromium()).exists() {
        format!("no Chromium at {} (Debian package chromium)", chromium())
    } else if !browser_dir().join("node_modules/playwright-core").is_dir()
        || !browser_dir().join("node_modules/fhirclient").is_dir()
    {
        "the npm packages are not installed (npm ci --prefix tests/browser)".to_owned()
    } else {
        return true;
    };
    assert!(
        std::env::var("CARESPACE_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "browser test required but {why}"
    );
    say(&format!("browser test skipped: {why}"));
    false
}

/// Runs `tests/browser/<script>` with `env`; asserts it ends well and printed `passed`.
async fn walk(script: &str, env: &[(&str, String)]) {
    let mut command = tokio::process::Command::new("node");
    command.arg(browser_dir().join(script)).env("CHROMIUM", chromium());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the browser walk finished within 2 minutes")
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && log.contains("walk passed"),
        "{script} failed:\n{log}"
    );
}

#[tokio::test]
async fn a_person_registers_from_the_invitation_email_and_logs_in() {
    if !browser_ready() {
        return;
    }
    let app = spawn_app_with_outbox_folder("sqlite").await;
    let (staff_email, staff_password) = ("desk@practice.example", "Front-Desk-24!");
    let (ok, out) = app
        .command_with_input(
            &["staff", "add", "--email", staff_email, "--name", "Dana Desk"],
            &format!("{staff_password}\n"),
        )
        .await;
    assert!(ok, "{out}");
    app.create(json!({
        "resourceType": "Patient",
        "name": [{"given": ["Mira"], "family": "Castillo"}],
        "birthDate": "1986-11-03",
    }))
    .await;
    walk(
        "registration.mjs",
        &[
            ("BASE_URL", app.origin.clone()),
            ("OUTBOX_DIR", app.dir.path().join("outbox").display().to_string()),
            ("STAFF_EMAIL", staff_email.into()),
            ("STAFF_PASSWORD", staff_password.into()),
            ("PATIENT_NAME", "Mira Castillo".into()),
            ("PATIENT_EMAIL", "mira.castillo@example.org".into()),
            ("PATIENT_BIRTH_DATE", "1986-11-03".into()),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_smart_js_client_completes_a_standalone_launch_and_reads_observations() {
    if !browser_ready() {
        return;
    }
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Okafor", "okafor@example.org", "1972-02-02").await;
    let other = registered_patient(&app, &mut staff, "Else", "else@example.org", "1973-03-03").await;
    for (p, code) in [(&me, "glucose"), (&me, "potassium"), (&other, "not-mine")] {
        app.create(json!({"resourceType": "Observation", "status": "final", "code": {"text": code}, "subject": {"reference": format!("Patient/{p}")}}))
            .await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, out) = app
        .command(&[
            "client",
            "add",
            "--name",
            "Lab Viewer",
            "--public",
            "--redirect-uri",
            &format!("http://127.0.0.1:{port}/index.html"),
            "--scope",
            "launch/patient openid fhirUser patient/*.rs",
        ])
        .await;
    assert!(ok, "{out}");
    let client_id = serde_json::from_str::<Value>(out.trim()).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    walk(
        "smart-app.mjs",
        &[
            ("BASE_URL", app.origin.clone()),
            ("APP_PORT", port.to_string()),
            ("CLIENT_ID", client_id),
            ("PATIENT_EMAIL", "okafor@example.org".into()),
            ("PATIENT_PASSWORD", PASSWORD.into()),
            ("PATIENT_BIRTH_DATE", "1972-02-02".into()),
            ("PATIENT_ID", me.clone()),
            ("EXPECTED_OBSERVATIONS", "glucose,potassium".into()),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_patient_uses_the_health_tab_in_a_browser_with_no_accessibility_violations() {
    if !browser_ready() {
        return;
    }
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Vidal", "vidal@example.org", "1966-06-16").await;
    for (value, date) in [(13.1, "2026-02-01"), (11.4, "2026-06-01"), (12.9, "2026-10-01")] {
        crate::health::hemoglobin(&app, &me, value, date).await;
    }
    for n in 0..7 {
        crate::health::document(
            &app,
            &me,
            n,
            &format!("2026-0{}-15T09:00:00Z", n + 1),
            "application/pdf",
            "JVBERi0xLjQgZGVtbw==",
            ("11506-3", "Progress note"),
        )
        .await;
    }
    // Screenshots land where CI keeps its output (target/), not in the source tree.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    walk(
        "health.mjs",
        &[
            ("BASE_URL", app.origin.clone()),
            ("PATIENT_EMAIL", "vidal@example.org".into()),
            ("PATIENT_PASSWORD", PASSWORD.into()),
            ("PATIENT_BIRTH_DATE", "1966-06-16".into()),
            ("TEST_NAME", "Hemoglobin".into()),
            ("LATEST_VALUE", "12.9 g/dL".into()),
            ("HISTORY_COUNT", "3".into()),
            ("DOCUMENT_COUNT", "7".into()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
    // The walk sent the record to a provider: they open its SMART Health Link in the viewer.
    let mail = app.smtp.wait_for("dr.lee@clinic.example", 1).await;
    let viewer = mail.link(&format!("{}/shl/view#shlink:/", app.origin));
    walk(
        "shl-viewer.mjs",
        &[
            ("VIEWER_URL", viewer),
            ("PASSCODE", "Harbor-Lights-42!".into()),
            ("EXPECTED_TEXT", "Hemoglobin: 12.9 g/dL".into()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_patient_reads_replies_and_writes_and_the_care_team_sees_both() {
    if !browser_ready() {
        return;
    }
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Roth", "roth@example.org", "1958-03-03").await;
    crate::messages::staff_writes(
        &mut staff,
        &me,
        "health-question",
        "Your scan results",
        "<script>alert('x')</script> The scan looks normal.",
    )
    .await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    walk(
        "messages.mjs",
        &[
            ("BASE_URL", app.origin.clone()),
            ("PATIENT_EMAIL", "roth@example.org".into()),
            ("PATIENT_PASSWORD", PASSWORD.into()),
            ("PATIENT_BIRTH_DATE", "1958-03-03".into()),
            ("STAFF_EMAIL", STAFF_EMAIL.into()),
            ("STAFF_PASSWORD", STAFF_PASSWORD.into()),
            ("SUBJECT", "Your scan results".into()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_patient_grants_family_access_and_the_person_logs_in() {
    if !browser_ready() {
        return;
    }
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Roth", "roth@example.org", "1958-03-03").await;
    crate::health::hemoglobin(&app, &me, 12.5, "2026-09-09").await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let common = |phase: &str| {
        vec![
            ("BASE_URL", app.origin.clone()),
            ("PATIENT_NAME", "Pat Roth".to_owned()),
            ("PATIENT_EMAIL", "roth@example.org".into()),
            ("PATIENT_PASSWORD", PASSWORD.into()),
            ("PATIENT_BIRTH_DATE", "1958-03-03".into()),
            ("PROXY_EMAIL", "hanna@example.org".into()),
            ("PROXY_BIRTH_DATE", "1961-12-24".into()),
            ("LATEST_VALUE", "12.5 g/dL".into()),
            ("PHASE", phase.to_owned()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ]
    };
    walk("proxies.mjs", &common("grant")).await;
    let link = app
        .smtp
        .wait_for("hanna@example.org", 1)
        .await
        .link(&format!("{}/register?token=", app.origin));
    let mut env = common("accept");
    env.push(("LINK", link));
    walk("proxies.mjs", &env).await;
}
