//! Send Record as a patient and a provider use it: the form refuses bad fields each by name; a good one emails
//! the provider (real SMTP) an AES-256 zip that 7-Zip opens with the password (and not without it), holding
//! exactly the records dated in the range; the password is in no email; the disclosure is audited and listed.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::accounts::{PASSWORD, account_events, login, registered_patient, staff_session};
use crate::helpers::{TestApp, engines, say, spawn_app};
use crate::web::Web;

pub const PROVIDER: &str = "dr.lee@clinic.example";
pub const ZIP_PASSWORD: &str = "Harbor-Lights-42!";

/// 7-Zip's `7z`, if installed (CI installs Debian's p7zip-full and requires it).
fn seven_zip() -> Option<&'static str> {
    let found = Command::new("7z").arg("i").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CARESPACE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "7z (Debian p7zip-full) is required in CI"
        );
    }
    found.then_some("7z")
}

fn unzip(zip: &Path, password: &str, into: &Path) -> bool {
    Command::new("7z")
        .arg("x")
        .arg(format!("-p{password}"))
        .arg(format!("-o{}", into.display()))
        .arg("-y")
        .arg(zip)
        .output()
        .expect("run 7z")
        .status
        .success()
}

#[tokio::test]
async fn a_patient_sends_an_encrypted_record_for_a_date_range() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let a = registered_patient(&app, &mut staff, "Amsel", "amsel@example.org", "1961-01-01").await;
    let b = registered_patient(&app, &mut staff, "Brandt", "brandt@example.org", "1962-02-02").await;
    let early = crate::health::hemoglobin(&app, &a, 11.1, "2026-01-10").await;
    let inside = crate::health::hemoglobin(&app, &a, 13.4, "2026-09-10").await;
    crate::health::hemoglobin(&app, &b, 15.9, "2026-09-11").await;
    let pdf = "JVBERi0xLjQgZGVtbw==";
    let kind = ("11506-3", "Progress note");
    crate::health::document(&app, &a, 1, "2026-02-01T09:00:00Z", "application/pdf", pdf, kind).await;
    // Undated: a payer's coverage is in the record but in no date range.
    app.create(serde_json::json!({"resourceType": "Coverage", "status": "active",
        "beneficiary": {"reference": format!("Patient/{a}")}, "payor": [{"display": "Acme Health"}]}))
        .await;
    let doc = crate::health::document(&app, &a, 2, "2026-08-01T09:00:00Z", "application/pdf", pdf, kind).await;

    let (mut alice, _) = login(&app, "amsel@example.org", PASSWORD, "1961-01-01").await;
    let form = alice.get("/send-record").await;
    assert_eq!(form.status, 200, "{}", form.text());
    let bad = alice
        .submit(
            &form,
            "/send-record",
            &[
                ("recipient", "nobody"),
                ("start", "2026-12-31"),
                ("end", "2026-01-01"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    for field in ["recipient", "end", "password"] {
        assert!(bad.field_error(field).is_some(), "{field}: {}", bad.body);
    }
    assert!(!bad.body.contains("value=\"short\""), "a password is never sent back");
    let sent = alice
        .submit(
            &form,
            "/send-record",
            &[
                ("recipient", PROVIDER),
                ("start", "2026-06-01"),
                ("end", "2026-12-31"),
                ("notes", "Please review the <b>September</b> blood count."),
                ("password", ZIP_PASSWORD),
                ("confirm", ZIP_PASSWORD),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert!(sent.text().contains(PROVIDER));

    let mail = app.smtp.wait_for(PROVIDER, 1).await;
    assert!(mail.subject().contains("sent you health records"), "{}", mail.subject());
    let text = mail.decoded();
    assert!(
        text.contains("Please review the <b>September</b> blood count."),
        "the notes: {text}"
    );
    assert!(text.contains("2026-06-01") && text.contains("2026-12-31"));
    assert!(!text.contains(ZIP_PASSWORD), "the password is never in the email");
    let zip = mail.attachment("health-record.zip").expect("the package is attached");
    assert!(
        !String::from_utf8_lossy(&zip).contains("13.4"),
        "the package is encrypted"
    );

    if seven_zip().is_none() {
        say("7z is not installed (Debian p7zip-full): the package was not opened");
    } else {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("health-record.zip");
        std::fs::write(&file, &zip).unwrap();
        assert!(
            !unzip(&file, "Wrong-Password-1!", &dir.path().join("wrong")),
            "a wrong password opens nothing"
        );
        let out = dir.path().join("open");
        assert!(unzip(&file, ZIP_PASSWORD, &out), "7-Zip opens it with the password");
        let bundle: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("record/everything.json")).unwrap()).unwrap();
        let ids = |t: &str| -> Vec<String> {
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == t)
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids("Observation"),
            vec![inside.clone()],
            "only the results dated in the range"
        );
        assert_eq!(
            ids("DocumentReference"),
            vec![doc],
            "only the documents dated in the range"
        );
        assert_eq!(ids("Patient"), vec![a.clone()]);
        assert_eq!(ids("Binary").len(), 1, "only the file of the document in the range");
        assert!(
            ids("RelatedPerson").is_empty() && ids("Coverage").is_empty(),
            "nothing undated"
        );
        assert!(!ids("Observation").contains(&early));
        for entry in bundle["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            let rtype = resource["resourceType"].as_str().unwrap();
            let (status, _) = app.get(&format!("{rtype}/{}", resource["id"].as_str().unwrap())).await;
            assert_eq!(status, 200, "{rtype} parses back and exists");
        }
        let notes = std::fs::read_to_string(out.join("notes.txt")).unwrap();
        assert!(notes.contains("September"));
        let summary = std::fs::read_to_string(out.join("summary.html")).unwrap();
        assert!(
            summary.contains("13.4") && !summary.contains("11.1"),
            "the summary covers the range"
        );
        assert!(
            out.join("documents/document-1.pdf").exists(),
            "documents under neutral names"
        );
    }

    // Audited as a disclosure; listed for the patient; not for another patient.
    assert!(account_events(&app, &a).await.iter().any(|e| e == "record-sent"));
    let (_, trail) = app.get(&format!("AuditEvent?patient={a}&_count=500")).await;
    assert!(trail.to_string().contains(&format!("sent to {PROVIDER}")));
    let list = alice.get("/sent-records").await;
    assert!(list.text().contains(PROVIDER) && list.text().contains("2026-06-01 to 2026-12-31"));
    let (mut bruno, _) = login(&app, "brandt@example.org", PASSWORD, "1962-02-02").await;
    assert!(!bruno.get("/sent-records").await.text().contains(PROVIDER));

    // The SMART Health Link in the same email: passcode flag, expiry; the manifest from any HTTP client.
    let (url, key, payload) = decode_shlink(&text);
    assert_eq!(payload["flag"], "P");
    assert!(payload["exp"].as_i64().unwrap() > 1_700_000_000);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.post(&url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, _) = post(serde_json::json!({"passcode": ZIP_PASSWORD})).await;
    assert_eq!(status, 400, "a recipient is required");
    let (status, wrong) = post(serde_json::json!({"recipient": "Dr. Lee", "passcode": "nope"})).await;
    assert_eq!((status, wrong["remainingAttempts"].as_i64()), (401, Some(9)), "{wrong}");
    let (status, manifest) = post(serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD})).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["files"][0]["contentType"], "application/fhir+json");
    let embedded = manifest["files"][0]["embedded"].as_str().unwrap();
    let linked = decrypt(embedded, &key);
    match jwcrypto_decrypt(embedded, &payload["key"]) {
        Some(by_jwcrypto) => assert_eq!(by_jwcrypto, linked, "Python's jwcrypto reads the same Bundle"),
        None => say("Python's jwcrypto is not installed: the JWE was checked with aes-gcm only"),
    }
    let observations: Vec<&str> = linked["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(observations, vec![inside.as_str()], "the link holds the same records");
    let binaries = linked["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Binary")
        .count();
    assert_eq!(binaries, 1, "the link carries only the in-range document's file");
    let (_, by_location) =
        post(serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD, "embeddedLengthMax": 10})).await;
    let location = by_location["files"][0]["location"]
        .as_str()
        .expect("a location for large files");
    let jwe = http.get(location).send().await.unwrap().text().await.unwrap();
    assert_eq!(decrypt(&jwe, &key), linked);
    assert!(account_events(&app, &a).await.iter().any(|e| e == "record-retrieved"));

    // Wrong passcodes lock the link, even sent all at once: of 30 parallel guesses only the 9 attempts left
    // are checked; a deactivated or expired link answers 404.
    let guesses: Vec<_> = (0..30)
        .map(|_| tokio::spawn(post(serde_json::json!({"recipient": "x", "passcode": "nope"}))))
        .collect();
    let mut checked = 0;
    for g in guesses {
        let (status, _) = g.await.unwrap();
        assert!(status == 401 || status == 404, "{status}");
        checked += usize::from(status == 401);
    }
    assert_eq!(checked, 9, "only the attempts left were checked");
    let (status, _) = post(serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD})).await;
    assert_eq!(status, 404, "locked after ten wrong passcodes");
    assert!(alice.get("/sent-records").await.text().contains("Locked"));
    let second = send(&app, &mut alice, 2).await;
    let (url2, _, _) = decode_shlink(&second);
    let list = alice.get("/sent-records").await;
    let id = first_share_id(&list.body);
    let done = alice.submit(&list, "/sent-records/deactivate", &[("id", &id)]).await;
    assert_eq!(done.status, 303);
    let r = http
        .post(&url2)
        .json(&serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "deactivated");
    let third = send(&app, &mut alice, 3).await;
    let (url3, _, _) = decode_shlink(&third);
    app.state.clock.advance(31 * 24 * 3600 * 1000);
    let r = http
        .post(&url3)
        .json(&serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "expired");
}

/// Sends the same request again (the provider's `n`th email); returns the email's text.
/// A link deactivated before its email went out (the provider's mail server turned it away for now) withdraws
/// the email; the other letter, left active, goes out once the server takes mail again.
#[tokio::test]
async fn deactivating_a_link_withdraws_its_waiting_email() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let mut staff = staff_session(&app).await;
        let a = registered_patient(&app, &mut staff, "Amsel", "amsel@example.org", "1961-01-01").await;
        crate::health::hemoglobin(&app, &a, 13.4, "2026-09-10").await;
        let (mut alice, _) = login(&app, "amsel@example.org", PASSWORD, "1961-01-01").await;
        app.smtp.refuse(true);
        for _ in 0..2 {
            assert_eq!(submit_send(&mut alice).await, 200, "{engine}");
        }
        app.smtp.wait_for_refusals(2).await;
        let list = alice.get("/sent-records").await;
        assert!(
            list.text()
                .contains("If its email has not gone out yet, it is not sent"),
            "{engine}"
        );
        let id = first_share_id(&list.body);
        assert_eq!(
            alice
                .submit(&list, "/sent-records/deactivate", &[("id", &id)])
                .await
                .status,
            303
        );

        app.smtp.refuse(false);
        app.state.clock.advance(2 * 3600 * 1000);
        app.state.mailer.deliver_due().await.unwrap();
        let letter = app.smtp.wait_for(PROVIDER, 1).await.decoded();
        app.state.mailer.deliver_due().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(
            app.smtp.messages_to(PROVIDER).len(),
            1,
            "{engine}: the withdrawn email went out"
        );
        let (url, _, _) = decode_shlink(&letter);
        let r = reqwest::Client::new()
            .post(&url)
            .json(&serde_json::json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "{engine}: the email that went out is the active link's"
        );
    }
}

/// Sends the record from June to December to [`PROVIDER`]; returns the answer's status.
async fn submit_send(web: &mut Web) -> u16 {
    let form = web.get("/send-record").await;
    let fields = [
        ("recipient", PROVIDER),
        ("start", "2026-06-01"),
        ("end", "2026-12-31"),
        ("notes", ""),
        ("password", ZIP_PASSWORD),
        ("confirm", ZIP_PASSWORD),
    ];
    web.submit(&form, "/send-record", &fields).await.status
}

/// The id in the first "Deactivate link" form of a Sent records page.
fn first_share_id(list: &str) -> String {
    let id_marker = "name=\"id\" value=\"";
    let start = list.find(id_marker).expect("a Deactivate form") + id_marker.len();
    list[start..].split('"').next().unwrap().to_owned()
}

async fn send(app: &TestApp, web: &mut Web, n: usize) -> String {
    assert_eq!(submit_send(web).await, 200);
    app.smtp.wait_for(PROVIDER, n).await.decoded()
}

/// The manifest URL, the key and the payload of the `shlink:/…` in an email's text.
pub fn decode_shlink(text: &str) -> (String, Vec<u8>, Value) {
    use base64::Engine as _;
    let start = text.find("shlink:/").expect("a SMART Health Link in the email") + "shlink:/".len();
    let encoded: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload["key"].as_str().unwrap())
        .unwrap();
    (payload["url"].as_str().unwrap().to_owned(), key, payload)
}

/// Decrypts a compact JWE with Python's jwcrypto (a JOSE library independent of ours), when installed (CI
/// installs it and requires it).
fn jwcrypto_decrypt(jwe: &str, key: &Value) -> Option<Value> {
    use std::io::Write as _;
    let script = "import sys\nfrom jwcrypto import jwe, jwk\n\
                  token = jwe.JWE()\n\
                  token.deserialize(sys.stdin.read(), key=jwk.JWK(kty='oct', k=sys.argv[1]))\n\
                  sys.stdout.write(token.payload.decode())\n";
    let available = Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var("CARESPACE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "Python's jwcrypto is required in CI"
        );
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", script, key.as_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(jwe.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jwcrypto could not decrypt the file");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Decrypts a compact JWE (`dir`, `A256GCM`) with RustCrypto's aes-gcm, not the server's ring.
fn decrypt(jwe: &str, key: &[u8]) -> Value {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use base64::Engine as _;
    let parts: Vec<&str> = jwe.split('.').collect();
    assert_eq!(parts.len(), 5, "compact JWE");
    let d = |p: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap();
    let header: Value = serde_json::from_slice(&d(parts[0])).unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["enc"].as_str()),
        (Some("dir"), Some("A256GCM"))
    );
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(key).unwrap();
    let mut sealed = d(parts[3]);
    sealed.extend(d(parts[4]));
    let nonce: [u8; 12] = d(parts[2]).try_into().expect("a 96-bit IV");
    let plain = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &sealed,
                aad: parts[0].as_bytes(),
            },
        )
        .expect("the key in the link opens the file");
    serde_json::from_slice(&plain).unwrap()
}
