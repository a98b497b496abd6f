//! Friends and family as they use it: the patient grants access by email and birth date; the person registers
//! from the emailed invitation (a wrong birth date is refused), logs in and sees the patient's labs and
//! messages, writes for them (recorded as themselves), cannot manage access; someone with two records
//! chooses and switches; the patient sees who looked; revoking ends the open session at once.

use crate::accounts::{PASSWORD, account_events, login, register, registered_patient, staff_session};
use serde_json::Value;

use crate::helpers::{TestApp, engines, fhir_client, spawn_app};
use crate::messages::staff_writes;
use crate::smart_apps::token_for_record;
use crate::web::{Page, Web};

const FRIDA: &str = "frida@example.org";
const FRIDA_BIRTH: &str = "1990-05-05";

pub async fn grant(web: &mut Web, fields: &[(&str, &str)]) -> Page {
    let page = web.get("/manage-users").await;
    assert_eq!(page.status, 200, "{}", page.text());
    web.submit(&page, "/manage-users/grant", fields).await
}

/// The RelatedPerson id of the grant listed for `email` (its revoke form).
pub fn related_person(page: &Page, email: &str) -> String {
    let row = page
        .body
        .split("<tr>")
        .skip(1)
        .find(|r| r.contains(email))
        .expect("a row for the email");
    let marker = "name=\"related_person\" value=\"";
    let start = row.find(marker).expect("a form") + marker.len();
    row[start..].split('"').next().unwrap().to_owned()
}

async fn post(web: &mut Web, action: &str, fields: &[(&str, &str)]) -> Page {
    let page = web.get("/manage-users").await;
    web.submit(&page, action, fields).await
}

#[tokio::test]
async fn family_gets_access_uses_it_and_loses_it_when_revoked() {
    for engine in engines() {
        family(engine).await;
    }
}

async fn family(engine: &str) {
    let app = spawn_app(engine).await;
    let mut staff = staff_session(&app).await;
    let a = registered_patient(&app, &mut staff, "Amsel", "amsel@example.org", "1961-01-01").await;
    let b = registered_patient(&app, &mut staff, "Brandt", "brandt@example.org", "1962-02-02").await;
    crate::health::hemoglobin(&app, &a, 13.3, "2026-09-01").await;
    crate::health::hemoglobin(&app, &b, 15.1, "2026-09-02").await;
    staff_writes(&mut staff, &a, "health-question", "Results for Pat", "All fine.").await;

    // The patient grants access; each bad field is named.
    let (mut alice, _) = login(&app, "amsel@example.org", PASSWORD, "1961-01-01").await;
    let bad = grant(
        &mut alice,
        &[
            ("email", "not-an-email"),
            ("birth_date", ""),
            ("name", ""),
            ("relationship", ""),
        ],
    )
    .await;
    assert_eq!(bad.status, 422, "{engine}");
    assert!(bad.field_error("email").is_some(), "{engine}: {}", bad.body);
    let own = grant(
        &mut alice,
        &[("email", "amsel@example.org"), ("birth_date", FRIDA_BIRTH)],
    )
    .await;
    assert!(own.field_error("email").is_some(), "{engine}: not to oneself");
    let done = grant(
        &mut alice,
        &[
            ("email", FRIDA),
            ("birth_date", FRIDA_BIRTH),
            ("name", "Frida Amsel"),
            ("relationship", "SIB"),
        ],
    )
    .await;
    assert_eq!(done.status, 200, "{engine}: {}", done.text());
    assert!(
        done.text().contains("Invited") && done.text().contains("Sibling"),
        "{engine}: {}",
        done.text()
    );
    let again = grant(&mut alice, &[("email", FRIDA), ("birth_date", FRIDA_BIRTH)]).await;
    assert!(again.field_error("email").is_some(), "{engine}: one grant per person");
    let rp = related_person(&done, FRIDA);
    let (_, related) = app.get(&format!("RelatedPerson/{rp}")).await;
    assert_eq!(related["patient"]["reference"], format!("Patient/{a}"), "{engine}");
    assert_eq!(
        (related["active"].as_bool(), related["birthDate"].as_str()),
        (Some(true), Some(FRIDA_BIRTH)),
        "{engine}"
    );

    // The invitation: a wrong birth date is refused, the right one registers.
    let mail = app.smtp.wait_for(FRIDA, 1).await;
    assert!(
        mail.subject().contains("given you access"),
        "{engine}: {}",
        mail.subject()
    );
    let link = mail.link(&format!("{}/register?token=", app.origin));
    let wrong = register(&mut app.web(), &link, "1990-06-06", PASSWORD).await;
    assert_eq!(wrong.status, 422, "{engine}");
    assert!(wrong.field_error("birth_date").is_some(), "{engine}");
    let ok = register(&mut app.web(), &link, FRIDA_BIRTH, PASSWORD).await;
    assert_eq!(
        ok.location.as_deref(),
        Some("/login?registered=1"),
        "{engine}: {}",
        ok.text()
    );
    assert!(alice.get("/manage-users").await.text().contains("Active"), "{engine}");

    // The proxy logs in (wrong birth date: refused) and sees the patient's record, not anyone else's.
    let (_, refused) = login(&app, FRIDA, PASSWORD, "1990-06-06").await;
    assert_eq!(refused.status, 401, "{engine}");
    let (mut frida, done) = login(&app, FRIDA, PASSWORD, FRIDA_BIRTH).await;
    assert_eq!(done.status, 303, "{engine}: {}", done.text());
    let health = frida.get("/").await;
    assert_eq!(health.status, 200, "{engine}: {}", health.text());
    assert!(
        health.text().contains("You are viewing the record of Pat Amsel"),
        "{engine}: {}",
        health.text()
    );
    assert!(
        health.text().contains("13.3 g/dL") && !health.text().contains("15.1"),
        "{engine}"
    );
    // Sending the record for the patient: the letter says who sent it, for whom.
    let form = frida.get("/send-record").await;
    let fields = [
        ("recipient", "dr.kin@clinic.example"),
        ("start", "2026-01-01"),
        ("end", "2026-12-31"),
        ("notes", "For the appointment."),
        ("password", "Harbor-Lights-42!"),
        ("confirm", "Harbor-Lights-42!"),
    ];
    let sent = frida.submit(&form, "/send-record", &fields).await;
    assert_eq!(sent.status, 200, "{engine}: {}", sent.text());
    let letter = app.smtp.wait_for("dr.kin@clinic.example", 1).await;
    assert!(
        letter
            .subject()
            .starts_with("Frida Amsel sent you health records of Pat Amsel ("),
        "{engine}: {}",
        letter.subject()
    );
    let text = letter.decoded();
    assert!(
        text.contains("Frida Amsel, acting for Pat Amsel") && text.contains("Notes from Frida Amsel:"),
        "{engine}: {text}"
    );
    let inbox = frida.get("/messages").await;
    assert!(inbox.text().contains("Results for Pat"), "{engine}");
    assert_eq!(
        frida.get("/manage-users").await.status,
        403,
        "{engine}: only the patient manages access"
    );
    let form = frida.get("/messages/new").await;
    let sent = frida
        .submit(
            &form,
            "/messages/new",
            &[
                ("category", "rx-question"),
                ("subject", "For my sister"),
                ("body", "She needs a refill."),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{engine}: {}", sent.text());
    let id = sent.location.unwrap().rsplit('/').next().unwrap().to_owned();
    let (_, message) = app.get(&format!("Communication/{id}")).await;
    assert_eq!(
        message["sender"]["reference"],
        format!("RelatedPerson/{rp}"),
        "{engine}: written by the proxy"
    );
    assert_eq!(message["subject"]["reference"], format!("Patient/{a}"), "{engine}");

    // The care team's new message is announced to the proxy too.
    staff_writes(&mut staff, &a, "health-question", "Follow-up", "See you soon.").await;
    let note = app.smtp.wait_for(FRIDA, 2).await;
    assert!(note.subject().contains("new message"), "{engine}: {}", note.subject());

    // The trail names the proxy; the patient sees them among those who looked.
    let events = account_events(&app, &a).await;
    for code in ["proxy-granted", "proxy-accepted"] {
        assert!(events.iter().any(|e| e == code), "{engine}: {code} in {events:?}");
    }
    let (_, trail) = app.get(&format!("AuditEvent?patient={a}&_count=500")).await;
    assert!(
        trail.to_string().contains(&format!("RelatedPerson/{rp}")),
        "{engine}: the proxy is the agent of what they did"
    );
    let managed = alice.get("/manage-users").await;
    assert!(
        managed.text().contains("Frida Amsel (family and friends)"),
        "{engine}: {}",
        managed.text()
    );

    // A second patient grants access to the same person: they choose, and switch.
    let (mut bruno, _) = login(&app, "brandt@example.org", PASSWORD, "1962-02-02").await;
    let done = grant(&mut bruno, &[("email", FRIDA), ("birth_date", FRIDA_BIRTH)]).await;
    assert_eq!(done.status, 200, "{engine}: {}", done.text());
    let mail = app.smtp.wait_for(FRIDA, 3).await;
    assert!(
        mail.decoded().contains("/login"),
        "{engine}: an existing account is told to log in"
    );
    assert!(
        !frida.get("/records").await.text().contains("Pat Brandt"),
        "{engine}: a new grant opens at the next login, which accepts it"
    );
    let (mut frida2, done) = login(&app, FRIDA, PASSWORD, FRIDA_BIRTH).await;
    assert_eq!(done.status, 303, "{engine}");
    assert_eq!(
        frida2.get("/").await.location.as_deref(),
        Some("/records"),
        "{engine}: two records, choose"
    );
    let choose = frida2.get("/records").await;
    assert!(
        choose.text().contains("Pat Amsel") && choose.text().contains("Pat Brandt"),
        "{engine}: {}",
        choose.text()
    );
    let opened = frida2.submit(&choose, "/records", &[("patient", &b)]).await;
    assert_eq!(opened.location.as_deref(), Some("/"), "{engine}");
    let health = frida2.get("/").await;
    assert!(
        health.text().contains("15.1 g/dL") && !health.text().contains("13.3"),
        "{engine}"
    );
    let elsewhere = frida2.submit(&choose, "/records", &[("patient", "someone-else")]).await;
    assert_eq!(elsewhere.status, 404, "{engine}: only records granted");

    // A SMART app authorized by the proxy: they pick the record; fhirUser is their RelatedPerson.
    let scopes = ["launch/patient", "openid", "fhirUser", "patient/Observation.rs"];
    let (token_a, user) = token_for_record(&app, &scopes, FRIDA, FRIDA_BIRTH, Some(&a)).await;
    assert!(
        user.as_deref()
            .is_some_and(|u| u.ends_with(&format!("/RelatedPerson/{rp}\""))),
        "{engine}: {user:?}"
    );
    let (token_b, _) = token_for_record(&app, &scopes, FRIDA, FRIDA_BIRTH, Some(&b)).await;
    let fhir_base = format!("{}/fhir", app.origin);
    let values = |bundle: &Value| -> Vec<f64> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["valueQuantity"]["value"].as_f64())
            .collect()
    };
    let read = |token: String| {
        let url = format!("{fhir_base}/Observation");
        async move {
            let r = fhir_client(&token).get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Through an app as through the portal, a proxy never reads who else has access or the audit trail,
    // and writes nothing but messages.
    let wide = [
        "launch/patient",
        "patient/RelatedPerson.rs",
        "patient/AuditEvent.rs",
        "patient/Observation.cu",
    ];
    let (token_wide, _) = token_for_record(&app, &wide, FRIDA, FRIDA_BIRTH, Some(&a)).await;
    let wide_client = fhir_client(&token_wide);
    for path in ["RelatedPerson", "AuditEvent"] {
        let r = wide_client.get(format!("{fhir_base}/{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{engine}: {path}");
    }
    let lab = serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "Made up"},
        "subject": {"reference": format!("Patient/{a}")}});
    let r = wide_client
        .post(format!("{fhir_base}/Observation"))
        .header("content-type", "application/fhir+json")
        .body(lab.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "{engine}: no clinical writes");
    let (status, seen_a) = read(token_a.clone()).await;
    assert_eq!((status, values(&seen_a)), (200, vec![13.3]), "{engine}: only A's");
    let (_, seen_b) = read(token_b.clone()).await;
    assert_eq!(values(&seen_b), vec![15.1], "{engine}: only B's");

    // Revoking ends access at once, in the session that has the record open.
    let revoked = post(&mut alice, "/manage-users/revoke", &[("related_person", &rp)]).await;
    assert_eq!(revoked.status, 200, "{engine}: {}", revoked.text());
    assert!(revoked.text().contains("Revoked"), "{engine}");
    let after = frida.get("/").await;
    assert_ne!(after.status, 200, "{engine}: the revoked record no longer opens");
    let (_, related) = app.get(&format!("RelatedPerson/{rp}")).await;
    assert_eq!(related["active"], false, "{engine}");
    let choose = frida2.get("/records").await;
    assert!(
        !choose.text().contains("Pat Amsel") && choose.text().contains("Pat Brandt"),
        "{engine}"
    );
    assert_eq!(
        read(token_a).await.0,
        401,
        "{engine}: the app's token through the grant stops too"
    );
    assert_eq!(read(token_b).await.0, 200, "{engine}: the other grant stands");
    assert!(
        account_events(&app, &a).await.iter().any(|e| e == "proxy-revoked"),
        "{engine}"
    );
    check_resend(&app, &mut alice).await;

    // The care team sees who has access to a patient's record and can revoke it.
    let page = staff.get("/staff").await;
    assert!(
        page.text().contains("Family access: cousin@example.org (Invited)"),
        "{engine}: {}",
        page.text()
    );
    let marker = "name=\"related_person\" value=\"";
    let form = page
        .body
        .split("/staff/revoke-access")
        .find(|f| f.contains("cousin@example.org"))
        .unwrap();
    let start = form.find(marker).unwrap() + marker.len();
    let cousin = form[start..].split('"').next().unwrap().to_owned();
    let done = staff
        .submit(
            &page,
            "/staff/revoke-access",
            &[("patient", &a), ("related_person", &cousin)],
        )
        .await;
    assert_eq!(done.status, 303, "{engine}: {}", done.text());
    let managed = alice.get("/manage-users").await;
    let row = managed
        .body
        .split("<tr>")
        .find(|r| r.contains("cousin@example.org"))
        .unwrap();
    assert!(row.contains("Revoked"), "{engine}: {row}");
}

/// "Resend invite" replaces the link: the old one stops working.
async fn check_resend(app: &TestApp, alice: &mut Web) {
    let email = "cousin@example.org";
    let done = grant(alice, &[("email", email), ("birth_date", "1970-07-07")]).await;
    let rp = related_person(&done, email);
    let first = app
        .smtp
        .wait_for(email, 1)
        .await
        .link(&format!("{}/register?token=", app.origin));
    let resent = post(alice, "/manage-users/resend", &[("related_person", &rp)]).await;
    assert!(resent.text().contains("Invitation sent again"), "{}", resent.text());
    let second = app
        .smtp
        .wait_for(email, 2)
        .await
        .link(&format!("{}/register?token=", app.origin));
    assert_ne!(first, second);
    let old = app.web().get(&first).await;
    assert_ne!(old.status, 200, "the replaced link is closed");
}
