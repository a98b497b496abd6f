//! The authorization matrix: every route the router serves (its list is read from the router itself) × every
//! kind of caller, with the answer each gets and whose data that answer shows. A route without a row fails
//! the test, as does a row for a route the server no longer has. Whatever the table says, no caller ever
//! sees the data of a patient it has no right to: that is checked on every answer on its own.
//!
//! Each caller carries what it would really have: a portal session (cookie and CSRF token) and, on the FHIR
//! door, the access token of an app it authorized. A cell reads `status`, then `>path` for a redirect and
//! `:A`, `:B` or `:AB` when the answer shows patient A's or B's data.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::accounts::{PASSWORD, login, registered_patient, staff_login, staff_session};
use crate::helpers::{TestApp, engines, fhir_client, get_json, spawn_app, system_token};
use crate::messages::staff_writes;
use crate::proxies::{grant, related_person};
use crate::send_record::{PROVIDER, ZIP_PASSWORD, decode_shlink};
use crate::smart_apps::{authorize_app, launched_app};
use crate::web::Web;
use carespace::routes::Served;

const A_EMAIL: &str = "amsel@example.org";
const A_BIRTH: &str = "1961-01-01";
const B_EMAIL: &str = "brandt@example.org";
const B_BIRTH: &str = "1962-02-02";
const PROXY_BIRTH: &str = "1990-05-05";
const FULL: [&str; 2] = ["launch/patient", "patient/*.cruds"];
/// A's Send Record form: the year 2026 to the provider, protected by the passcode.
const SEND_RECORD: [(&str, &str); 6] = [
    ("recipient", PROVIDER),
    ("start", "2026-01-01"),
    ("end", "2026-12-31"),
    ("notes", ""),
    ("password", ZIP_PASSWORD),
    ("confirm", ZIP_PASSWORD),
];

/// The columns, in the table's order.
const CALLERS: [&str; 11] = [
    "anonymous",
    "patient A",
    "patient B",
    "proxy of A",
    "revoked proxy of A",
    "proxy of A and B, acting for B",
    "staff",
    "app for A, patient/Observation.rs",
    "backend service, system/*.cruds",
    "holder of A's shared link",
    "A's expired session and token",
];

/// Expected answers. Rows for FHIR type-level and instance routes are given per resource type.
const EXPECTED: &str = include_str!("matrix.txt");

#[derive(Clone)]
struct Caller {
    cookies: String,
    csrf: String,
    token: Option<String>,
    /// Whose data this caller may ever be shown.
    may_see: &'static str,
    holds_link: bool,
}

/// What a request needs made just for the caller about to send it (so one caller's success, like revoking a
/// grant, does not change what the next one finds).
#[derive(Clone, Copy)]
enum Fresh {
    StaffMessageToA,
    MessageFromA,
    ShareOfA,
    GrantOfA,
    AppOfA,
    /// Where the holder of A's link may fetch the file now (a location is short-lived).
    FileLocation,
    /// A number no caller has used.
    Number,
    Resource(&'static str),
}

#[derive(Clone)]
struct Row {
    method: &'static str,
    template: &'static str,
    rtype: Option<&'static str>,
    /// What sets this row apart from another for the same route and type.
    variant: &'static str,
    /// The concrete path; `{fresh}` is replaced by what [`Fresh`] made.
    path: String,
    form: Vec<(&'static str, String)>,
    json: Option<Value>,
    fresh: Option<Fresh>,
}

impl Row {
    fn label(&self) -> String {
        let label = match self.rtype {
            Some(t) => format!("{} {} {t}", self.method, self.template),
            None => format!("{} {}", self.method, self.template),
        };
        if self.variant.is_empty() {
            label
        } else {
            format!("{label} ({})", self.variant)
        }
    }
}

fn row(method: &'static str, template: &'static str, path: impl Into<String>) -> Row {
    Row {
        method,
        template,
        rtype: None,
        variant: "",
        path: path.into(),
        form: Vec::new(),
        json: None,
        fresh: None,
    }
}

impl Row {
    fn form(mut self, fields: &[(&'static str, &str)]) -> Row {
        self.form = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self
    }
    fn json(mut self, body: Value) -> Row {
        self.json = Some(body);
        self
    }
    fn fresh(mut self, fresh: Fresh) -> Row {
        self.fresh = Some(fresh);
        self
    }
    fn rtype(mut self, rtype: &'static str) -> Row {
        self.rtype = Some(rtype);
        self
    }
    fn variant(mut self, variant: &'static str) -> Row {
        self.variant = variant;
        self
    }
}

/// One patient's side of the fixture.
struct Side {
    id: String,
    markers: [String; 4],
    /// A resource of each type in this patient's record (the Patient is `id`).
    resources: Vec<(&'static str, String)>,
    message: String,
    document: String,
}

struct Fixture {
    origin: String,
    backend: reqwest::Client,
    staff: Web,
    alice: Web,
    a: Side,
    b: Side,
    share: String,
    launch_client: String,
    /// A public app registered for `launch/patient patient/Observation.rs`.
    app_client: String,
    pending_grant: String,
    unregistered: String,
    fresh_count: usize,
}

fn marker(side: char) -> String {
    format!("{side}-secret")
}

/// A new resource of `rtype` in `patient`'s record, carrying the patient's marker.
fn resource(rtype: &str, patient: &str, mark: &str) -> Value {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(mark);
    let subject = json!({"reference": format!("Patient/{patient}")});
    match rtype {
        "Patient" => json!({"resourceType": "Patient", "name": [{"family": "Fresh", "given": [mark]}]}),
        "Observation" => json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hemoglobin"},
            "subject": subject, "effectiveDateTime": "2026-09-01", "note": [{"text": mark}],
            "valueQuantity": {"value": 13.3, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}),
        "Binary" => {
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": data, "securityContext": subject})
        }
        "DocumentReference" => json!({"resourceType": "DocumentReference", "status": "current", "subject": subject,
            "date": "2026-09-02T10:00:00Z", "description": mark, "type": {"text": "Note"},
            "content": [{"attachment": {"contentType": "text/plain", "data": data, "title": mark}}]}),
        "Communication" => json!({"resourceType": "Communication", "status": "completed", "subject": subject,
            "payload": [{"contentString": mark}]}),
        "Condition" => json!({"resourceType": "Condition", "subject": subject, "code": {"text": "Anemia"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "note": [{"text": mark}]}),
        "RelatedPerson" => json!({"resourceType": "RelatedPerson", "active": true, "patient": subject,
            "name": [{"family": "Kin", "given": [mark]}]}),
        "AuditEvent" => json!({"resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "recorded": "2026-09-01T10:00:00Z", "outcome": "0",
            "agent": [{"who": {"display": mark}, "requestor": true}],
            "source": {"observer": {"display": "matrix"}},
            "entity": [{"what": subject}]}),
        "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]}),
        other => panic!("no body for {other}"),
    }
}

const TYPES: [&str; 9] = [
    "Patient",
    "Observation",
    "DocumentReference",
    "Binary",
    "Communication",
    "Condition",
    "RelatedPerson",
    "AuditEvent",
    "Practitioner",
];

async fn create(backend: &reqwest::Client, origin: &str, body: &Value) -> String {
    let rtype = body["resourceType"].as_str().unwrap();
    let r = backend
        .post(format!("{origin}/fhir/{rtype}"))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let created: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// The ids in the forms of a page that post `id` (the patient's sent records).
fn share_ids(page: &str) -> BTreeSet<String> {
    let marker = "name=\"id\" value=\"";
    page.match_indices(marker)
        .map(|(i, _)| page[i + marker.len()..].split('"').next().unwrap().to_owned())
        .collect()
}

/// A patient sends their record from the Send Record page; returns the new share's id.
async fn send_record(web: &mut Web) -> String {
    let before = share_ids(&web.get("/sent-records").await.body);
    let form = web.get("/send-record").await;
    let sent = web.submit(&form, "/send-record", &SEND_RECORD).await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let after = share_ids(&web.get("/sent-records").await.body);
    after.difference(&before).next().expect("a new share").clone()
}

/// A registered proxy: `patients` (their portal sessions) grant access to `email`, who registers from the
/// newest invitation and logs in.
async fn proxy(app: &TestApp, patients: &mut [&mut Web], email: &str) -> Web {
    for (n, patient) in patients.iter_mut().enumerate() {
        let done = grant(
            patient,
            &[("email", email), ("birth_date", PROXY_BIRTH), ("name", "Kin")],
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.text());
        app.smtp.wait_for(email, n + 1).await;
    }
    let newest = app.smtp.messages_to(email).pop().expect("an invitation");
    let link = newest.link(&format!("{}/register?token=", app.origin));
    let done = crate::accounts::register(&mut app.web(), &link, PROXY_BIRTH, PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let (web, done) = login(app, email, PASSWORD, PROXY_BIRTH).await;
    assert_eq!(done.status, 303, "{}", done.text());
    web
}

fn caller(web: &Web, token: Option<String>, may_see: &'static str) -> Caller {
    Caller {
        cookies: web
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; "),
        csrf: web.cookies.get("carespace_csrf").cloned().unwrap_or_default(),
        token,
        may_see,
        holds_link: false,
    }
}

/// A browser that has been to the login page (so it has a CSRF cookie, as any visitor's would).
async fn visitor(origin: &str) -> Web {
    let mut web = Web::new(origin);
    web.get("/login").await;
    web
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_matrix_says() {
    for engine in engines() {
        matrix(engine).await;
    }
}

async fn matrix(engine: &str) {
    let app = spawn_app(engine).await;
    let origin = app.origin.clone();
    let mut staff = staff_session(&app).await;
    let a = registered_patient(&app, &mut staff, "Amsel", A_EMAIL, A_BIRTH).await;
    let b = registered_patient(&app, &mut staff, "Brandt", B_EMAIL, B_BIRTH).await;

    // A's session and app token, both left to expire: every other credential is made after the clock moves
    // past a session's twelve hours and a token's hour.
    let (expired_web, _) = login(&app, A_EMAIL, PASSWORD, A_BIRTH).await;
    let expired_token = authorize_app(&app, &FULL, A_EMAIL, A_BIRTH, None).await.token;
    app.state.clock.advance(13 * 3_600_000);

    let mut staff = staff_login(&origin).await;
    let backend_token = system_token(&origin, app.dir.path(), &app.database_url).await;
    let backend = fhir_client(&backend_token);
    let (mut alice, _) = login(&app, A_EMAIL, PASSWORD, A_BIRTH).await;
    let (mut bruno, _) = login(&app, B_EMAIL, PASSWORD, B_BIRTH).await;

    // Each patient's record: one resource of each type, each carrying the patient's marker.
    let mut sides = Vec::new();
    for (patient, letter, family, web) in [(&a, 'a', "Amsel", &mut alice), (&b, 'b', "Brandt", &mut bruno)] {
        use base64::Engine as _;
        let mark = marker(letter);
        let mut resources = vec![("Patient", patient.clone())];
        for rtype in [
            "Observation",
            "Binary",
            "DocumentReference",
            "Communication",
            "Condition",
        ] {
            resources.push((rtype, create(&backend, &origin, &resource(rtype, patient, &mark)).await));
        }
        staff_writes(&mut staff, patient, "health-question", &mark, &mark).await;
        let form = web.get("/messages/new").await;
        let sent = web
            .submit(
                &form,
                "/messages/new",
                &[("category", "rx-question"), ("subject", &mark), ("body", &mark)],
            )
            .await;
        let message = sent
            .location
            .expect("to the message")
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let document = resources
            .iter()
            .find(|(t, _)| *t == "DocumentReference")
            .unwrap()
            .1
            .clone();
        sides.push(Side {
            id: patient.clone(),
            markers: [
                patient.clone(),
                family.to_owned(),
                mark.clone(),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&mark),
            ],
            resources,
            message,
            document,
        });
    }
    let (mut side_a, mut side_b) = {
        let mut it = sides.into_iter();
        (it.next().unwrap(), it.next().unwrap())
    };

    // Friends and family: Pia (A's), Rolf (A's, revoked at the end), Frida (A's and B's, B's record open),
    // Tom (invited by A, never registered).
    let mut pia = proxy(&app, &mut [&mut alice], "pia@example.org").await;
    let mut rolf = proxy(&app, &mut [&mut alice], "rolf@example.org").await;
    let mut frida = proxy(&app, &mut [&mut alice, &mut bruno], "frida@example.org").await;
    let chooser = frida.get("/records").await;
    assert_eq!(frida.submit(&chooser, "/records", &[("patient", &b)]).await.status, 303);
    let tom = grant(&mut alice, &[("email", "tom@example.org"), ("birth_date", PROXY_BIRTH)]).await;
    let pending_grant = related_person(&tom, "tom@example.org");
    let managed = alice.get("/manage-users").await;
    side_a
        .resources
        .push(("RelatedPerson", related_person(&managed, "pia@example.org")));
    let managed = bruno.get("/manage-users").await;
    side_b
        .resources
        .push(("RelatedPerson", related_person(&managed, "frida@example.org")));
    for side in [&mut side_a, &mut side_b] {
        let trail = get_json(
            &backend,
            format!("{origin}/fhir/AuditEvent?patient={}&_count=1", side.id),
        )
        .await;
        let event = trail["entry"][0]["resource"]["id"]
            .as_str()
            .expect("an AuditEvent")
            .to_owned();
        side.resources.push(("AuditEvent", event));
    }
    let practitioner = create(&backend, &origin, &resource("Practitioner", &a, "")).await;
    for side in [&mut side_a, &mut side_b] {
        side.resources.push(("Practitioner", practitioner.clone()));
    }
    let unregistered = create(
        &backend,
        &origin,
        &json!({"resourceType": "Patient", "name": [{"family": "Nobody"}], "birthDate": "1970-01-01"}),
    )
    .await;
    let page = staff.get("/staff").await;
    let invited = staff
        .submit(
            &page,
            "/staff/invite",
            &[("patient", &unregistered), ("email", "again@example.org")],
        )
        .await;
    assert_eq!(invited.status, 303, "{}", invited.text());

    // Tokens, as each person's app got them.
    let token = |email: &'static str, birth: &'static str, scopes: &'static [&'static str], record: Option<String>| {
        let app = &app;
        async move { authorize_app(app, scopes, email, birth, record.as_deref()).await.token }
    };
    let a_token = token(A_EMAIL, A_BIRTH, &FULL, None).await;
    let b_token = token(B_EMAIL, B_BIRTH, &FULL, None).await;
    let pia_token = token("pia@example.org", PROXY_BIRTH, &FULL, None).await;
    let rolf_token = token("rolf@example.org", PROXY_BIRTH, &FULL, None).await;
    let frida_token = token("frida@example.org", PROXY_BIRTH, &FULL, Some(b.clone())).await;
    let narrow = authorize_app(
        &app,
        &["launch/patient", "patient/Observation.rs"],
        A_EMAIL,
        A_BIRTH,
        None,
    )
    .await;
    let launched = launched_app(&app, &mut staff, &a, &["launch", "openid", "fhirUser", "user/*.cruds"]).await;

    // A shares their record; the provider holds the link and the passcode.
    send_record(&mut alice).await;
    let mail = app.smtp.wait_for(PROVIDER, 1).await;
    let (manifest, _, _) = decode_shlink(&mail.decoded());
    let share_path = manifest.strip_prefix(&origin).expect("our link").to_owned();

    // Rolf loses access; his session and token stay in his hands.
    let managed = alice.get("/manage-users").await;
    let rolf_rp = related_person(&managed, "rolf@example.org");
    let revoked = alice
        .submit(&managed, "/manage-users/revoke", &[("related_person", &rolf_rp)])
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());

    let mut holder = caller(&visitor(&origin).await, None, "A");
    holder.holds_link = true;
    let callers = [
        caller(&visitor(&origin).await, None, ""),
        caller(&alice, Some(a_token), "A"),
        caller(&bruno, Some(b_token), "B"),
        caller(&pia, Some(pia_token), "A"),
        caller(&rolf, Some(rolf_token), ""),
        caller(&frida, Some(frida_token), "AB"),
        caller(&staff, Some(launched.token), "AB"),
        caller(&visitor(&origin).await, Some(narrow.token), "A"),
        caller(&visitor(&origin).await, Some(backend_token), "AB"),
        holder,
        caller(&expired_web, Some(expired_token), ""),
    ];
    let _ = (&mut pia, &mut rolf);

    let mut fixture = Fixture {
        origin: origin.clone(),
        backend,
        staff,
        alice,
        a: side_a,
        b: side_b,
        share: share_path,
        launch_client: launched.client_id,
        app_client: narrow.client_id.clone(),
        pending_grant,
        unregistered,
        fresh_count: 0,
    };
    let narrow_client = narrow.client_id;
    let rows = rows(&fixture).await;

    // Every route has a row, and every row a route.
    let served: BTreeSet<(String, String)> = app
        .state
        .route_table()
        .into_iter()
        .map(|Served { method, path }| (method.to_owned(), path))
        .collect();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.template.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&covered).collect();
    let gone: Vec<_> = covered.difference(&served).collect();
    assert!(missing.is_empty(), "routes without a matrix row: {missing:?}");
    assert!(
        gone.is_empty(),
        "matrix rows for routes the server does not have: {gone:?}"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Every form of ours (a POST the router serves with a form body, save FHIR's `_search` and the OAuth
    // endpoints that authenticate clients: they read no cookie) refuses a request without the visitor's CSRF token, even from
    // a signed-in patient or staff member.
    let machine = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"];
    for row in rows.iter().filter(|r| {
        r.method == "POST" && r.json.is_none() && !machine.contains(&r.template) && !r.template.starts_with("/fhir")
    }) {
        for n in [1, 6] {
            let forged = Caller {
                csrf: "forged".into(),
                ..callers[n].clone()
            };
            // Refused before anything is looked at: nothing needs making for it.
            let bare = Row {
                fresh: None,
                ..row.clone()
            };
            let (cell, _) = call(&http, &app, &mut fixture, &bare, &forged).await;
            assert!(
                cell.starts_with("403"),
                "{engine}: {} by {} without the CSRF token: {cell}",
                row.label(),
                CALLERS[n]
            );
        }
    }

    let mut observed = Vec::new();
    let mut leaks = Vec::new();
    for row in &rows {
        let mut cells = Vec::new();
        for (n, caller) in callers.iter().enumerate() {
            let (cell, leak) = call(&http, &app, &mut fixture, row, caller).await;
            if let Some(leak) = leak {
                leaks.push(format!("{} by {}: {leak}", row.label(), CALLERS[n]));
            }
            cells.push(cell);
        }
        observed.push((row.label(), cells));
    }
    let table: String = observed
        .iter()
        .map(|(label, cells)| format!("{label:<52} | {}\n", cells.join(" ")))
        .collect();
    assert!(
        leaks.is_empty(),
        "{engine}: data shown to callers with no right to it:\n{}",
        leaks.join("\n")
    );
    let expected: Vec<(String, Vec<String>)> = EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (label, cells) = l.split_once('|').expect("label | cells");
            (
                label.trim().to_owned(),
                cells.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect();
    let mut differences = Vec::new();
    for (label, cells) in &observed {
        match expected.iter().find(|(l, _)| l == label) {
            None => differences.push(format!("{label}: no expected row")),
            Some((_, want)) => {
                for (n, (got, want)) in cells.iter().zip(want).enumerate() {
                    if got != want {
                        differences.push(format!("{label} by {}: expected {want}, got {got}", CALLERS[n]));
                    }
                }
                if want.len() != CALLERS.len() {
                    differences.push(format!("{label}: {} cells, not {}", want.len(), CALLERS.len()));
                }
            }
        }
    }
    audit_trail(engine, &app, &fixture, &narrow_client).await;
    assert!(
        differences.is_empty(),
        "{engine}: {}\n\nthe whole observed matrix (columns: {}):\n{table}",
        differences.join("\n"),
        CALLERS.join(", ")
    );
}

/// Sends `row` as `caller`; returns its cell, and what it showed that it should not have.
async fn call(
    http: &reqwest::Client,
    app: &TestApp,
    fixture: &mut Fixture,
    row: &Row,
    caller: &Caller,
) -> (String, Option<String>) {
    let fresh = match row.fresh {
        Some(kind) => make_fresh(app, fixture, kind).await,
        None => String::new(),
    };
    let path = row.path.replace("{fresh}", &fresh);
    let url = if path.starts_with("http") {
        path.clone()
    } else {
        format!("{}{path}", fixture.origin)
    };
    let mut request = http.request(row.method.parse().unwrap(), &url);
    if !caller.cookies.is_empty() {
        request = request.header("cookie", &caller.cookies);
    }
    if let Some(token) = &caller.token {
        request = request.bearer_auth(token);
    }
    if path.starts_with("/fhir") {
        request = request.header("accept", "application/fhir+json");
    }
    let mut sent_text = path.clone();
    if let Some(body) = &row.json {
        let mut body: Value = serde_json::from_str(&body.to_string().replace("{fresh}", &fresh)).unwrap();
        if path.starts_with("/shl/") && caller.holds_link {
            body["passcode"] = json!(ZIP_PASSWORD);
        }
        sent_text.push_str(&body.to_string());
        let kind = if path.starts_with("/fhir") {
            "application/fhir+json"
        } else {
            "application/json"
        };
        request = request.header("content-type", kind).body(body.to_string());
    } else if row.method == "POST" || row.method == "PUT" {
        let mut fields: Vec<(&str, String)> = vec![("csrf", caller.csrf.clone())];
        fields.extend(row.form.iter().map(|(k, v)| (*k, v.replace("{fresh}", &fresh))));
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        sent_text.push_str(&body);
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| {
            // Where it leads, not which new message it opens.
            let path = l.split(['?', '#']).next().unwrap_or_default();
            path.split('/')
                .map(|segment| if segment.len() >= 20 { "{id}" } else { segment })
                .collect::<Vec<_>>()
                .join("/")
        });
    let bytes = response.bytes().await.unwrap_or_default();
    // What the request itself named (the id it asked for) is not something the answer revealed.
    let mut body = String::from_utf8_lossy(&bytes).into_owned();
    for side in [&fixture.a, &fixture.b] {
        if sent_text.contains(&side.id) {
            body = body.replace(&side.id, "");
        }
    }
    let shown: String = [('A', &fixture.a), ('B', &fixture.b)]
        .into_iter()
        .filter(|(_, side)| side.markers.iter().any(|m| body.contains(m.as_str())))
        .map(|(letter, _)| letter)
        .collect();
    let leak = shown
        .chars()
        .find(|c| !caller.may_see.contains(*c))
        .map(|c| format!("patient {c}'s data in a {status} answer"));
    let mut cell = status.to_string();
    if let Some(to) = location.filter(|_| (300..400).contains(&status)) {
        cell.push('>');
        cell.push_str(&to);
    }
    if !shown.is_empty() {
        cell.push(':');
        cell.push_str(&shown);
    }
    if let Some(kind) = row.fresh
        && took_effect(fixture, kind, &fresh).await
    {
        cell.push_str("+done");
    }
    (cell, leak)
}

/// Whether a request changed what was made for it: the grant revoked, the share deactivated, the app
/// disconnected, the resource deleted. (A refusal that looks like success would show here.)
async fn took_effect(fixture: &mut Fixture, kind: Fresh, fresh: &str) -> bool {
    match kind {
        // The grant ended: A's Manage Users page offers neither resend nor revoke for it.
        Fresh::GrantOfA => !fixture.alice.get("/manage-users").await.body.contains(fresh),
        Fresh::ShareOfA => !share_ids(&fixture.alice.get("/sent-records").await.body).contains(fresh),
        Fresh::AppOfA => !fixture.alice.get("/connected-apps").await.body.contains(fresh),
        Fresh::Resource(rtype) => {
            let url = format!("{}/fhir/{rtype}/{fresh}", fixture.origin);
            fixture.backend.get(url).send().await.unwrap().status().as_u16() == 410
        }
        _ => false,
    }
}

async fn make_fresh(app: &TestApp, fixture: &mut Fixture, kind: Fresh) -> String {
    fixture.fresh_count += 1;
    let a = fixture.a.id.clone();
    match kind {
        Fresh::StaffMessageToA => staff_writes(&mut fixture.staff, &a, "health-question", "a-secret", "a-secret").await,
        Fresh::MessageFromA => {
            let form = fixture.alice.get("/messages/new").await;
            let sent = fixture
                .alice
                .submit(
                    &form,
                    "/messages/new",
                    &[
                        ("category", "rx-question"),
                        ("subject", "a-secret"),
                        ("body", "a-secret"),
                    ],
                )
                .await;
            sent.location
                .expect("to the message")
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        }
        Fresh::ShareOfA => send_record(&mut fixture.alice).await,
        Fresh::GrantOfA => {
            let email = format!("kin{}@example.org", fixture.fresh_count);
            let done = grant(&mut fixture.alice, &[("email", &email), ("birth_date", PROXY_BIRTH)]).await;
            related_person(&done, &email)
        }
        Fresh::AppOfA => {
            authorize_app(app, &["launch/patient", "patient/*.rs"], A_EMAIL, A_BIRTH, None)
                .await
                .client_id
        }
        Fresh::FileLocation => {
            let listed: Value = reqwest::Client::new()
                .post(format!("{}{}", fixture.origin, fixture.share))
                .json(&json!({"recipient": "Dr. Lee", "passcode": ZIP_PASSWORD, "embeddedLengthMax": 10}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            listed["files"][0]["location"]
                .as_str()
                .expect("a file location")
                .to_owned()
        }
        Fresh::Number => fixture.fresh_count.to_string(),
        Fresh::Resource(rtype) => {
            let body = resource(rtype, &a, "a-secret");
            create(&fixture.backend, &fixture.origin, &body).await
        }
    }
}

/// A row for each route; the FHIR routes per resource type.
async fn rows(f: &Fixture) -> Vec<Row> {
    let a = &f.a.id;
    let compose = [
        ("category", "rx-question"),
        ("subject", "Hello"),
        ("body", "A question."),
    ];
    let mut rows = vec![
        row("GET", "/healthz", "/healthz"),
        row("GET", "/readyz", "/readyz"),
        row("GET", "/metrics", "/metrics"),
        row("GET", "/assets/portal.css", "/assets/portal.css"),
        row("GET", "/assets/portal.js", "/assets/portal.js"),
        row("GET", "/assets/shl-viewer.js", "/assets/shl-viewer.js"),
        row("GET", "/assets/smart-style.json", "/assets/smart-style.json"),
        row("GET", "/", "/"),
        row("GET", "/documents", "/documents"),
        row("GET", "/documents/{id}", format!("/documents/{}", f.a.document)),
        row("GET", "/resources", "/resources"),
        row("GET", "/messages", "/messages"),
        row("GET", "/messages/new", "/messages/new"),
        row("POST", "/messages/new", "/messages/new").form(&compose),
        row("GET", "/messages/{id}", format!("/messages/{}", f.a.message)),
        row("POST", "/messages/{id}/reply", "/messages/{fresh}/reply")
            .form(&[("body", "Thanks.")])
            .fresh(Fresh::StaffMessageToA),
        row("GET", "/staff/messages", "/staff/messages"),
        row("GET", "/staff/messages/{id}", format!("/staff/messages/{}", f.a.message)),
        row("POST", "/staff/messages/{id}/reply", "/staff/messages/{fresh}/reply")
            .form(&[("body", "Noted.")])
            .fresh(Fresh::MessageFromA),
        row("GET", "/staff/patients/{patient}/audit", format!("/staff/patients/{a}/audit")),
        row("GET", "/staff/patients/{patient}/message", format!("/staff/patients/{a}/message")),
        row("POST", "/staff/patients/{patient}/message", format!("/staff/patients/{a}/message"))
            .form(&[("category", "health-question"), ("subject", "Results"), ("body", "All fine.")]),
        row("GET", "/download", "/download"),
        row("GET", "/summary", "/summary"),
        row("GET", "/send-record", "/send-record"),
        row("POST", "/send-record", "/send-record").form(&SEND_RECORD),
        row("GET", "/sent-records", "/sent-records"),
        row("POST", "/sent-records/deactivate", "/sent-records/deactivate")
            .form(&[("id", "{fresh}")])
            .fresh(Fresh::ShareOfA),
        row("GET", "/shl/view", "/shl/view"),
        // Before the manifest row: its wrong passcodes count towards locking the link.
        row("GET", "/shl/{id}/file", "{fresh}").fresh(Fresh::FileLocation),
        row("POST", "/shl/{id}", f.share.clone()).json(json!({"recipient": "Dr. Lee"})),
        row("GET", "/manage-users", "/manage-users"),
        row("POST", "/manage-users/grant", "/manage-users/grant")
            .form(&[("email", "kin-{fresh}@example.org"), ("birth_date", PROXY_BIRTH)])
            .fresh(Fresh::Number),
        row("POST", "/manage-users/resend", "/manage-users/resend").form(&[("related_person", &f.pending_grant)]),
        row("POST", "/manage-users/revoke", "/manage-users/revoke")
            .form(&[("related_person", "{fresh}")])
            .fresh(Fresh::GrantOfA),
        row("GET", "/records", "/records"),
        row("POST", "/records", "/records").form(&[("patient", a)]),
        row("GET", "/connected-apps", "/connected-apps"),
        row("POST", "/connected-apps/remove", "/connected-apps/remove")
            .form(&[("client_id", "{fresh}")])
            .fresh(Fresh::AppOfA),
        row("GET", "/staff", "/staff"),
        row("POST", "/staff/resend", "/staff/resend")
            .form(&[("patient", &f.unregistered), ("email", "again@example.org")]),
        row("POST", "/staff/invite", "/staff/invite")
            .form(&[("patient", &f.unregistered), ("email", "new-{fresh}@example.org")])
            .fresh(Fresh::Number),
        row("POST", "/staff/launch", "/staff/launch").form(&[("patient", a), ("client_id", &f.launch_client)]),
        row("POST", "/staff/revoke-access", "/staff/revoke-access")
            .form(&[("patient", a), ("related_person", "{fresh}")])
            .fresh(Fresh::GrantOfA),
        row(
            "GET",
            "/oauth/authorize",
            format!(
                "/oauth/authorize?response_type=code&client_id={}&redirect_uri=http://127.0.0.1:9/callback\
                 &scope=launch/patient+patient/Observation.rs&state=s&aud={}/fhir\
                 &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
                f.app_client, f.origin
            ),
        ),
        row("POST", "/oauth/authorize", "/oauth/authorize").form(&[("decision", "deny")]),
        row("POST", "/oauth/token", "/oauth/token").form(&[("grant_type", "client_credentials")]),
        row("POST", "/oauth/introspect", "/oauth/introspect").form(&[("token", "not-a-token")]),
        row("POST", "/oauth/revoke", "/oauth/revoke").form(&[("token", "not-a-token")]),
        row("GET", "/oauth/jwks", "/oauth/jwks"),
        row("GET", "/.well-known/openid-configuration", "/.well-known/openid-configuration"),
        row("GET", "/fhir/metadata", "/fhir/metadata"),
        row("GET", "/fhir/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"),
        row("GET", "/fhir/.well-known/openid-configuration", "/fhir/.well-known/openid-configuration"),
        row("GET", "/fhir/_history", "/fhir/_history"),
        row("POST", "/fhir", "/fhir").json(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": resource("Observation", a, "a-secret"), "request": {"method": "POST", "url": "Observation"}}]})),
    ];
    for rtype in TYPES {
        let id =
            &f.a.resources
                .iter()
                .find(|(t, _)| *t == rtype)
                .expect("a resource of each type")
                .1;
        let current = get_json(&f.backend, format!("{}/fhir/{rtype}/{id}", f.origin)).await;
        rows.extend([
            row("GET", "/fhir/{rtype}", format!("/fhir/{rtype}")).rtype(rtype),
            row("POST", "/fhir/{rtype}", format!("/fhir/{rtype}"))
                .rtype(rtype)
                .json(resource(rtype, a, "a-secret")),
            row("POST", "/fhir/{rtype}/_search", format!("/fhir/{rtype}/_search")).rtype(rtype),
            row("GET", "/fhir/{rtype}/_history", format!("/fhir/{rtype}/_history")).rtype(rtype),
            row("GET", "/fhir/{rtype}/{id}", format!("/fhir/{rtype}/{id}")).rtype(rtype),
            row("PUT", "/fhir/{rtype}/{id}", format!("/fhir/{rtype}/{id}"))
                .rtype(rtype)
                .json(current),
            // Deleting the RelatedPerson of a portal grant ends that access too.
            row("DELETE", "/fhir/{rtype}/{id}", format!("/fhir/{rtype}/{{fresh}}"))
                .rtype(rtype)
                .fresh(if rtype == "RelatedPerson" {
                    Fresh::GrantOfA
                } else {
                    Fresh::Resource(rtype)
                }),
            row(
                "GET",
                "/fhir/{rtype}/{id}/_history",
                format!("/fhir/{rtype}/{id}/_history"),
            )
            .rtype(rtype),
            row(
                "GET",
                "/fhir/{rtype}/{id}/_history/{vid}",
                format!("/fhir/{rtype}/{id}/_history/1"),
            )
            .rtype(rtype),
        ]);
    }
    // A write may not move a resource out of the records the caller may change, and a grant's RelatedPerson
    // made inactive ends that access (as "Revoke access" does).
    let obs = &f.a.resources.iter().find(|(t, _)| *t == "Observation").unwrap().1;
    let mut moved = get_json(&f.backend, format!("{}/fhir/Observation/{obs}", f.origin)).await;
    moved["subject"]["reference"] = json!(format!("Patient/{}", f.b.id));
    moved.as_object_mut().unwrap().remove("note");
    rows.extend([
        row("PUT", "/fhir/{rtype}/{id}", format!("/fhir/Observation/{obs}"))
            .rtype("Observation")
            .variant("moved to B")
            .json(moved),
        row("PUT", "/fhir/{rtype}/{id}", "/fhir/RelatedPerson/{fresh}")
            .rtype("RelatedPerson")
            .variant("grant made inactive")
            .fresh(Fresh::GrantOfA)
            .json(
                json!({"resourceType": "RelatedPerson", "id": "{fresh}", "active": false,
                "patient": {"reference": format!("Patient/{a}")}, "name": [{"family": "Kin"}]}),
            ),
    ]);
    for rtype in ["Patient", "Observation"] {
        let id = &f.a.resources.iter().find(|(t, _)| *t == rtype).unwrap().1;
        rows.extend([
            row(
                "GET",
                "/fhir/{rtype}/{id}/{operation}",
                format!("/fhir/{rtype}/{id}/$everything"),
            )
            .rtype(rtype),
            row(
                "POST",
                "/fhir/{rtype}/{id}/{operation}",
                format!("/fhir/{rtype}/{id}/$everything"),
            )
            .rtype(rtype)
            .json(json!({"resourceType": "Parameters"})),
        ]);
    }
    // Last: the forms of people who are not signed in, and signing out (which ends each caller's session).
    rows.extend([
        row("GET", "/login", "/login"),
        row("POST", "/login", "/login").form(&[("email", "")]),
        row("GET", "/staff/login", "/staff/login"),
        row("POST", "/staff/login", "/staff/login").form(&[("email", "")]),
        row("GET", "/register", "/register?token=not-a-token"),
        row("POST", "/register", "/register").form(&[("token", "not-a-token")]),
        row("GET", "/forgot-password", "/forgot-password"),
        row("POST", "/forgot-password", "/forgot-password").form(&[("email", "")]),
        row("GET", "/reset-password", "/reset-password?token=not-a-token"),
        row("POST", "/reset-password", "/reset-password").form(&[("token", "not-a-token")]),
        row("POST", "/logout", "/logout"),
    ]);
    rows
}

/// What the trail holds after the matrix: each access names the person (so `agent=` finds it), the app they
/// used and the address it came from; refusals are recorded; so are apps allowed and removed and links turned
/// off.
async fn audit_trail(engine: &str, app: &TestApp, f: &Fixture, narrow_client: &str) {
    let search = |query: String| get_json(&f.backend, format!("{}/fhir/AuditEvent?{query}&_count=1000", f.origin));
    let events = |bundle: Value| -> Vec<Value> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect()
    };
    let condition = &f.a.resources.iter().find(|(t, _)| *t == "Condition").unwrap().1;
    let by_a = events(search(format!("agent=Patient/{}&entity=Condition/{condition}", f.a.id)).await);
    let read_by_app = by_a
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e["agent"].as_array().is_some_and(|a| a.len() == 2))
        .unwrap_or_else(|| {
            panic!(
                "{engine}: no read of A's Condition by A's app among {} events",
                by_a.len()
            )
        });
    assert_eq!(
        read_by_app["agent"][0]["network"]["address"], "127.0.0.1",
        "{engine}: {read_by_app}"
    );
    assert_eq!(read_by_app["outcome"], "0", "{engine}");

    let refused = events(search("outcome=4".into()).await);
    assert!(
        refused
            .iter()
            .any(|e| e["agent"][1]["who"]["identifier"]["value"] == narrow_client
                && e["outcomeDesc"].as_str().is_some_and(|d| d.contains("scopes"))),
        "{engine}: the narrow app's refused requests are among the {} refusals: {:?}",
        refused.len(),
        refused
            .iter()
            .map(|e| e["agent"].to_string())
            .take(3)
            .collect::<Vec<_>>()
    );

    for code in [
        "app-authorized",
        "app-disconnected",
        "share-deactivated",
        "proxy-revoked",
        "record-sent",
    ] {
        let found = events(search(format!("patient={}&subtype={code}", f.a.id)).await);
        assert!(!found.is_empty(), "{engine}: {code} in A's trail");
    }

    // The care team reads the same trail in words; the patient sees what others did. (The matrix signed
    // everyone out: new sessions.)
    let mut staff = staff_login(&f.origin).await;
    let page = staff.get(&format!("/staff/patients/{}/audit", f.a.id)).await;
    let text = page.text();
    for words in [
        "Audit trail: Pat Amsel",
        "The patient using the app",
        "(family and friends)",
        "(care team) using the app",
        "Signed out",
        "Refused",
        "127.0.0.1",
    ] {
        assert!(text.contains(words), "{engine}: {words:?} on the staff audit page");
    }
    let (mut alice, _) = login(app, A_EMAIL, PASSWORD, A_BIRTH).await;
    let own = alice.get("/manage-users").await.text();
    assert!(
        own.contains("Kin (family and friends)") && own.contains("Nora Nurse (care team)"),
        "{engine}: who viewed A's record, in words"
    );
}
