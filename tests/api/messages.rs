//! Secure messaging as its users drive it: the care team writes (staff page), the patient is told by email
//! (no content), reads, replies once, cannot re-reply (portal and FHIR API alike), composes in each category;
//! the care team sees unread replies first and answers; another patient reaches none of it.

use serde_json::{Value, json};

use crate::accounts::{PASSWORD, login, registered_patient, staff_session};
use crate::helpers::{engines, fhir_client, spawn_app};
use crate::smart_apps::patient_token;
use crate::web::{Page, Web};

const RE_REPLY: &str = "You cannot re-reply to a message";

/// The id a redirect after sending points at (`/messages/<id>` or `/staff/messages/<id>`).
fn sent_id(done: &Page) -> String {
    assert_eq!(done.status, 303, "{}", done.text());
    let to = done.location.clone().expect("a redirect");
    to.rsplit('/').next().unwrap().split('#').next().unwrap().to_owned()
}

pub async fn staff_writes(staff: &mut Web, patient: &str, category: &str, subject: &str, body: &str) -> String {
    let path = format!("/staff/patients/{patient}/message");
    let form = staff.get(&path).await;
    assert_eq!(form.status, 200, "{}", form.text());
    sent_id(
        &staff
            .submit(
                &form,
                &path,
                &[("category", category), ("subject", subject), ("body", body)],
            )
            .await,
    )
}

async fn reply(web: &mut Web, root: &str, id: &str, body: &str) -> Page {
    let page = web.get(&format!("{root}/{id}")).await;
    let csrf = page.hidden("csrf").expect("csrf");
    web.post_raw(&format!("{root}/{id}/reply"), &[("csrf", &csrf), ("body", body)])
        .await
}

async fn fhir_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/fhir+json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn care_team_and_patient_converse_and_no_one_else_can_see_it() {
    for engine in engines() {
        conversation(engine).await;
    }
}

async fn conversation(engine: &str) {
    let app = spawn_app(engine).await;
    let mut staff = staff_session(&app).await;
    let a = registered_patient(&app, &mut staff, "Amsel", "amsel@example.org", "1961-01-01").await;
    let b = registered_patient(&app, &mut staff, "Brandt", "brandt@example.org", "1962-02-02").await;

    // The care team writes; the patient is told by email, without the content.
    let hostile = "<script>alert('x')</script><img src=x onerror=alert(1)> Take one tablet daily.";
    let first = staff_writes(&mut staff, &a, "rx-question", "Your prescription", hostile).await;
    let mail = app.smtp.wait_for("amsel@example.org", 2).await;
    assert!(mail.subject().contains("new message"), "{engine}: {}", mail.subject());
    let text = mail.decoded();
    assert!(text.contains(&format!("/messages/{first}")), "{engine}: {text}");
    assert!(
        !text.contains("tablet") && !text.contains("prescription"),
        "{engine}: no content in email: {text}"
    );

    // Inbox: newest first, unread marker; opening reads it (and shows the HTML literally).
    let (mut alice, done) = login(&app, "amsel@example.org", PASSWORD, "1961-01-01").await;
    assert_eq!(done.status, 303, "{engine}: {}", done.text());
    let inbox = alice.get("/messages").await;
    assert_eq!(inbox.status, 200, "{engine}");
    assert!(
        inbox.body.contains("Your prescription") && inbox.body.contains("Unread"),
        "{engine}: {}",
        inbox.body
    );
    let opened = alice.get(&format!("/messages/{first}")).await;
    assert_eq!(opened.status, 200, "{engine}: {}", opened.text());
    assert!(
        opened.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
            || opened.body.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "{engine}: shown as text: {}",
        opened.body
    );
    assert!(
        !opened.body.contains("<script>alert") && !opened.body.contains("<img src=x"),
        "{engine}"
    );
    assert!(
        opened.body.contains(&format!("action=\"/messages/{first}/reply\"")),
        "{engine}: a Reply form"
    );
    assert!(
        !alice.get("/messages").await.body.contains("Unread"),
        "{engine}: read once opened"
    );
    let (_, stored) = app.get(&format!("Communication/{first}")).await;
    assert!(
        stored["received"].is_string(),
        "{engine}: opening records `received`: {stored}"
    );
    assert_eq!(stored["meta"]["versionId"], "2", "{engine}");
    alice.get(&format!("/messages/{first}")).await;
    let (_, stored) = app.get(&format!("Communication/{first}")).await;
    assert_eq!(
        stored["meta"]["versionId"], "2",
        "{engine}: not rewritten on every open"
    );

    // One reply; then neither a second reply nor a reply to the reply.
    let empty = reply(&mut alice, "/messages", &first, "   ").await;
    assert_eq!(empty.status, 422, "{engine}");
    assert!(empty.field_error("body").is_some(), "{engine}: {}", empty.body);
    let answered = reply(&mut alice, "/messages", &first, "Thank you, will do.").await;
    let my_reply = sent_id(&answered);
    let shown = alice.get(&format!("/messages/{my_reply}")).await;
    assert!(
        shown.body.contains("Thank you, will do.") && shown.body.contains("Take one tablet daily."),
        "{engine}: the whole thread"
    );
    assert!(
        !shown.body.contains("/reply\""),
        "{engine}: no Reply button once answered: {}",
        shown.body
    );
    for target in [&first, &my_reply] {
        let csrf = shown.hidden("csrf").unwrap();
        let again = alice
            .post_raw(
                &format!("/messages/{target}/reply"),
                &[("csrf", &csrf), ("body", "One more thing")],
            )
            .await;
        assert_eq!(again.status, 422, "{engine}: {}", again.text());
        assert!(again.text().contains(RE_REPLY), "{engine}: {}", again.text());
    }
    let (_, reply_json) = app.get(&format!("Communication/{my_reply}")).await;
    assert_eq!(
        reply_json["inResponseTo"][0]["reference"],
        format!("Communication/{first}"),
        "{engine}"
    );
    assert_eq!(reply_json["sender"]["reference"], format!("Patient/{a}"), "{engine}");
    assert_eq!(
        reply_json["recipient"][0]["reference"], "Organization/practice",
        "{engine}"
    );
    assert_eq!(reply_json["topic"]["text"], "Re: Your prescription", "{engine}");

    // The FHIR API keeps the same rules for an app acting for the patient.
    let fhir_base = format!("{}/fhir", app.origin);
    let token = patient_token(
        &app,
        &["launch/patient", "openid", "fhirUser", "patient/Communication.crs"],
        "amsel@example.org",
        "1961-01-01",
    )
    .await;
    let fhir = fhir_client(&token);
    let message = |answers: Option<&str>| {
        let mut m = json!({"resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": "http://carespace.example/fhir/CodeSystem/message-category", "code": "health-question"}]}],
            "subject": {"reference": format!("Patient/{a}")}, "topic": {"text": "From my app"},
            "sender": {"reference": format!("Patient/{a}")}, "recipient": [{"reference": "Organization/practice"}],
            "sent": "2026-11-26T10:00:00Z", "payload": [{"contentString": "Sent by an app"}]});
        if let Some(id) = answers {
            m["inResponseTo"] = json!([{"reference": format!("Communication/{id}")}]);
        }
        m
    };
    for target in [&first, &my_reply] {
        let (status, outcome) = fhir_json(
            &fhir,
            reqwest::Method::POST,
            format!("{fhir_base}/Communication"),
            Some(&message(Some(target))),
        )
        .await;
        assert_eq!(status, 422, "{engine}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{engine}");
        assert!(outcome.to_string().contains(RE_REPLY), "{engine}: {outcome}");
    }
    let (status, created) = fhir_json(
        &fhir,
        reqwest::Method::POST,
        format!("{fhir_base}/Communication"),
        Some(&message(None)),
    )
    .await;
    assert_eq!(status, 201, "{engine}: {created}");
    assert!(
        created["meta"]["profile"]
            .to_string()
            .contains("carespace-portal-message"),
        "{engine}: {created}"
    );
    let mut forged = message(None);
    forged["sender"] = json!({"reference": "Practitioner/someone"});
    let (status, _) = fhir_json(
        &fhir,
        reqwest::Method::POST,
        format!("{fhir_base}/Communication"),
        Some(&forged),
    )
    .await;
    assert_eq!(status, 422, "{engine}: the sender is the writer");
    let mut edited = reply_json.clone();
    edited["payload"][0]["contentString"] = json!("rewritten");
    let (status, _) = fhir_json(
        &fhir,
        reqwest::Method::PUT,
        format!("{fhir_base}/Communication/{my_reply}"),
        Some(&edited),
    )
    .await;
    assert_eq!(status, 403, "{engine}: a sent message is not rewritten");
    let (status, _) = fhir_json(
        &fhir,
        reqwest::Method::DELETE,
        format!("{fhir_base}/Communication/{my_reply}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{engine}: nor deleted");
    let (status, mine) = fhir_json(
        &fhir,
        reqwest::Method::GET,
        format!("{fhir_base}/Communication?patient={a}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{engine}");
    assert_eq!(mine["total"], 3, "{engine}: the app reads the same messages: {mine}");

    // Compose in each category; every field is required.
    let form = alice.get("/messages/new").await;
    assert!(
        form.body.contains("Rx question") && form.body.contains("Health question"),
        "{engine}"
    );
    let blank = alice
        .submit(
            &form,
            "/messages/new",
            &[("category", ""), ("subject", " "), ("body", "")],
        )
        .await;
    assert_eq!(blank.status, 422, "{engine}");
    for field in ["category", "subject", "body"] {
        assert!(
            blank.field_error(field).is_some(),
            "{engine}: {field} message: {}",
            blank.body
        );
    }
    let long = "x".repeat(121);
    let too_long = alice
        .submit(
            &form,
            "/messages/new",
            &[("category", "rx-question"), ("subject", &long), ("body", "b")],
        )
        .await;
    assert!(
        too_long.field_error("subject").is_some_and(|e| e.contains("120")),
        "{engine}: {}",
        too_long.body
    );
    let unknown = alice
        .submit(
            &form,
            "/messages/new",
            &[("category", "billing"), ("subject", "s"), ("body", "b")],
        )
        .await;
    assert!(unknown.field_error("category").is_some(), "{engine}");
    let rx = sent_id(
        &alice
            .submit(
                &form,
                "/messages/new",
                &[
                    ("category", "rx-question"),
                    ("subject", "Refill please"),
                    ("body", "My refill ran out."),
                ],
            )
            .await,
    );
    let health = sent_id(
        &alice
            .submit(
                &form,
                "/messages/new",
                &[
                    ("category", "health-question"),
                    ("subject", "Headaches"),
                    ("body", "Since Monday."),
                ],
            )
            .await,
    );
    let sent = alice.get("/messages?box=sent").await;
    for words in ["Refill please", "Headaches", "Re: Your prescription", "From my app"] {
        assert!(sent.body.contains(words), "{engine}: {words} in Sent: {}", sent.body);
    }
    let (_, rx_json) = app.get(&format!("Communication/{rx}")).await;
    assert_eq!(rx_json["category"][0]["coding"][0]["code"], "rx-question", "{engine}");

    // The care team: unread first, filter by category, read, answer; the patient may answer that once.
    let list = staff.get("/staff/messages").await;
    let unread = list.body.split("id=\"earlier\"").next().unwrap().to_owned();
    for words in ["Refill please", "Headaches", "Re: Your prescription", "Pat Amsel"] {
        assert!(unread.contains(words), "{engine}: {words} unread: {}", list.body);
    }
    let rx_only = staff.get("/staff/messages?category=rx-question").await;
    assert!(
        rx_only.body.contains("Refill please") && !rx_only.body.contains("Headaches"),
        "{engine}"
    );
    let answer = reply(&mut staff, "/staff/messages", &health, "Please come in tomorrow at 9.").await;
    let staff_answer = sent_id(&answer);
    let list = staff.get("/staff/messages").await;
    let unread = list.body.split("id=\"earlier\"").next().unwrap().to_owned();
    assert!(!unread.contains("Headaches"), "{engine}: read once opened");
    app.smtp.wait_for("amsel@example.org", 3).await;
    let opened = alice.get(&format!("/messages/{staff_answer}")).await;
    assert!(
        opened.body.contains("Please come in tomorrow at 9.") && opened.body.contains("Since Monday."),
        "{engine}"
    );
    sent_id(&reply(&mut alice, "/messages", &staff_answer, "See you then.").await);
    assert_eq!(
        reply(&mut alice, "/messages", &staff_answer, "And again").await.status,
        422,
        "{engine}"
    );

    // Patient B reaches none of A's messages: not by id, not by reply, not in lists or searches.
    let (mut bruno, _) = login(&app, "brandt@example.org", PASSWORD, "1962-02-02").await;
    for id in [&first, &my_reply, &rx] {
        assert_eq!(bruno.get(&format!("/messages/{id}")).await.status, 404, "{engine}");
        let page = bruno.get("/messages").await;
        let csrf = page.hidden("csrf").unwrap();
        let post = bruno
            .post_raw(&format!("/messages/{id}/reply"), &[("csrf", &csrf), ("body", "hi")])
            .await;
        assert_eq!(post.status, 404, "{engine}: {}", post.text());
    }
    for path in ["/messages", "/messages?box=sent"] {
        let page = bruno.get(path).await;
        assert!(
            !page.body.contains("prescription") && !page.body.contains("Refill"),
            "{engine}: {path}"
        );
    }
    let b_token = patient_token(
        &app,
        &["launch/patient", "patient/Communication.crs"],
        "brandt@example.org",
        "1962-02-02",
    )
    .await;
    let b_fhir = fhir_client(&b_token);
    let (status, _) = fhir_json(
        &b_fhir,
        reqwest::Method::GET,
        format!("{fhir_base}/Communication/{first}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{engine}");
    for query in [
        format!("Communication?_id={first}"),
        format!("Communication?in-response-to=Communication/{first}"),
        "Communication?recipient=Organization/practice".to_owned(),
        "Communication".to_owned(),
    ] {
        let (status, bundle) = fhir_json(&b_fhir, reqwest::Method::GET, format!("{fhir_base}/{query}"), None).await;
        assert!(status == 200 || status == 403, "{engine}: {query}: {status}");
        assert!(
            !bundle.to_string().contains(&format!("Patient/{a}")),
            "{engine}: {query}: {bundle}"
        );
    }
    let mut answer_as_b = message(Some(&first));
    answer_as_b["subject"] = json!({"reference": format!("Patient/{b}")});
    answer_as_b["sender"] = json!({"reference": format!("Patient/{b}")});
    let (status, _) = fhir_json(
        &b_fhir,
        reqwest::Method::POST,
        format!("{fhir_base}/Communication"),
        Some(&answer_as_b),
    )
    .await;
    assert_eq!(status, 422, "{engine}: A's message is unknown to B");
}
