//! Scale-out: two `carespace serve` processes, each with its own data folder, on one PostgreSQL database, as
//! behind a load balancer (one public address). What one node does, the other sees at once: a FHIR write, a
//! portal session (and its end), an access token's revocation; and email queued while both run leaves once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::accounts::{PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, register, staff_login};
use crate::helpers::{free_port, new_database, run_carespace, say, start_server, wait_ready};
use crate::smtp::SmtpSink;
use crate::web::Web;

/// Sends `request` and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Creates a Patient (Nia, born 1980-02-03) through the FHIR API at `origin`; returns its id.
async fn create_patient(http: &reqwest::Client, origin: &str, token: &str, family: &str) -> String {
    let patient =
        json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Nia"]}], "birthDate": "1980-02-03"});
    let created = json_of(
        http.post(format!("{origin}/fhir/Patient"))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(patient.to_string()),
    )
    .await;
    created["id"].as_str().expect("created id").to_owned()
}

/// Runs the `carespace` command line on the shared database; returns what it printed.
fn command(dir: &std::path::Path, database_url: &str, args: &[&str], input: &str) -> String {
    let dir = dir.to_string_lossy();
    let env = [
        ("CARESPACE_DATA_DIR", dir.as_ref()),
        ("CARESPACE_DATABASE_URL", database_url),
        ("RUST_LOG", "warn"),
    ];
    let out = run_carespace(&env, args, input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn two_processes_on_one_postgres_share_everything() {
    if std::env::var("CARESPACE_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        say("scale-out test skipped: it needs PostgreSQL (CARESPACE_TEST_POSTGRES_URL is not set)");
        return;
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let database_url = new_database("postgres", dir_a.path()).await;
    let smtp = SmtpSink::start().await;
    let (port_a, port_b) = (free_port(), free_port());
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    // One public address for both, as behind a load balancer (links in email and the token issuer use it).
    let env = [
        ("CARESPACE_SMTP_URL", smtp.url.as_str()),
        ("CARESPACE_BASE_URL", a.as_str()),
    ];
    let mut node_a = start_server(dir_a.path(), &database_url, port_a, &env);
    let mut node_b = start_server(dir_b.path(), &database_url, port_b, &env);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&http, port_a).await;
    wait_ready(&http, port_b).await;

    // Both nodes publish the same signing key, made once in the database.
    assert_eq!(
        json_of(http.get(format!("{a}/oauth/jwks"))).await,
        json_of(http.get(format!("{b}/oauth/jwks"))).await
    );

    // A backend service gets a token from A and uses it at B.
    let registered: Value = serde_json::from_str(&command(
        dir_a.path(),
        &database_url,
        &[
            "client",
            "add",
            "--name",
            "EHR",
            "--secret",
            "--scope",
            "system/*.cruds",
        ],
        "",
    ))
    .unwrap();
    let (client_id, secret) = (
        registered["client_id"].as_str().unwrap(),
        registered["client_secret"].as_str().unwrap(),
    );
    let answer: Value = json_of(
        http.post(format!("{a}/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "system/*.cruds")]),
    )
    .await;
    let token = answer["access_token"].as_str().expect("token").to_owned();
    let fhir = |origin: &str, path: &str| format!("{origin}/fhir/{path}");

    // A write through A is read at once through B, and B's update is A's next version.
    let id = create_patient(&http, &a, &token, "Nodes").await;
    let read = http
        .get(fhir(&b, &format!("Patient/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let mut patient: Value = read.json().await.unwrap();
    assert_eq!(patient["name"][0]["family"], "Nodes");
    patient["gender"] = json!("female");
    let updated = http
        .put(fhir(&b, &format!("Patient/{id}")))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);
    let v2: Value = json_of(
        http.get(fhir(&a, &format!("Patient/{id}/_history/2")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(v2["gender"], "female");

    // Email queued on either node while both run leaves exactly once: the care team invites six patients,
    // half through each node, and both nodes' senders compete for the outbox.
    command(
        dir_a.path(),
        &database_url,
        &["staff", "add", "--email", STAFF_EMAIL, "--name", "Nora Nurse"],
        &format!("{STAFF_PASSWORD}\n"),
    );
    let mut invited = Vec::new();
    for n in 0..6 {
        let origin = if n % 2 == 0 { &a } else { &b };
        let patient = if n == 0 {
            id.clone()
        } else {
            create_patient(&http, origin, &token, &format!("Nodes{n}")).await
        };
        let email = format!("nodes{n}@example.com");
        let mut staff = staff_login(origin).await;
        let page = staff.get("/staff").await;
        let sent = staff
            .submit(
                &page,
                "/staff/invite",
                &[("patient", patient.as_str()), ("email", email.as_str()), ("name", "")],
            )
            .await;
        assert_eq!(sent.status, 303, "{}", sent.text());
        invited.push(email);
    }
    for email in &invited {
        smtp.wait_for(email, 1).await;
    }
    // Longer than both senders' polling interval: a second copy would have left by now.
    tokio::time::sleep(Duration::from_secs(11)).await;
    for email in &invited {
        assert_eq!(smtp.messages_to(email).len(), 1, "{email} got a copy from each node");
    }

    // The first patient registers through B from the link in the email, and logs in through A.
    let link = smtp.messages_to(&invited[0])[0].link(&format!("{a}/register?token="));
    let mut at_b = Web::new(&b);
    let done = register(&mut at_b, &link.replace(&a, &b), "1980-02-03", PASSWORD).await;
    assert_eq!(done.location.as_deref(), Some("/login?registered=1"), "{}", done.text());
    let mut at_a = Web::new(&a);
    let page = at_a.get("/login").await;
    let done = at_a
        .submit(
            &page,
            "/login",
            &[
                ("email", invited[0].as_str()),
                ("password", PASSWORD),
                ("birth_date", "1980-02-03"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text());
    // The session made by A opens the portal at B.
    at_b.cookies = at_a.cookies.clone();
    let health = at_b.get("/").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health.text().contains("Nia Nodes"), "{}", health.text());
    // Logging out at B ends the session at A.
    let logout = at_b.submit(&health, "/logout", &[]).await;
    assert_eq!(logout.status, 303, "{}", logout.text());
    let after = at_a.get("/").await;
    assert_eq!(after.status, 303, "the session still opens the portal at A");
    assert!(after.location.unwrap_or_default().starts_with("/login"));

    // A token revoked at B is refused at A.
    let revoked = http
        .post(format!("{b}/oauth/revoke"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let refused = http
        .get(fhir(&a, &format!("Patient/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    node_a.kill();
    node_b.kill();
}
