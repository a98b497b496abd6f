//! The portal's front door as patients and the care team use it: invitation emails read from a real SMTP
//! server, registration, login with date of birth, sessions, password reset, throttling and CSRF.

use serde_json::json;

use crate::helpers::{TestApp, engines, spawn_app};
use crate::web::{Page, Web};

pub const STAFF_EMAIL: &str = "nurse@practice.example";
pub const STAFF_PASSWORD: &str = "Care-Team-42!";
pub const PASSWORD: &str = "Sunny-Day-77!";
const GENERIC: &str = "The email address, password or date of birth is not correct.";

/// A patient on file with a date of birth; returns the id.
async fn patient(app: &TestApp, family: &str, birth_date: &str) -> String {
    app.create(json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Pat"]}],
        "birthDate": birth_date,
    }))
    .await
}

/// The operator adds a staff member (`carespace staff add`, password on stdin); the staff member logs in.
pub async fn staff_session(app: &TestApp) -> Web {
    let (ok, out) = app
        .command_with_input(
            &["staff", "add", "--email", STAFF_EMAIL, "--name", "Nora Nurse"],
            &format!("{STAFF_PASSWORD}\n"),
        )
        .await;
    assert!(ok, "{out}");
    assert!(
        !out.contains(STAFF_PASSWORD),
        "a given password is not printed back: {out}"
    );
    staff_login(&app.origin).await
}

/// The staff member logs in at `origin`.
pub async fn staff_login(origin: &str) -> Web {
    let mut web = Web::new(origin);
    let page = web.get("/staff/login").await;
    let done = web
        .submit(
            &page,
            "/staff/login",
            &[("email", STAFF_EMAIL), ("password", STAFF_PASSWORD)],
        )
        .await;
    assert_eq!(
        (done.status, done.location.as_deref()),
        (303, Some("/staff")),
        "{}",
        done.text()
    );
    web
}

/// Staff invite `patient_id` at `email` from the staff page; returns the registration link from the email.
async fn invite(app: &TestApp, staff: &mut Web, patient_id: &str, email: &str) -> String {
    let before = app.smtp.messages_to(email).len();
    let page = staff.get("/staff").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains(&format!("Patient/{patient_id}")),
        "{}",
        page.text()
    );
    let sent = staff
        .submit(
            &page,
            "/staff/invite",
            &[("patient", patient_id), ("email", email), ("name", "")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.text());
    let mail = app.smtp.wait_for(email, before + 1).await;
    assert!(
        mail.subject().contains("Complete Your Registration"),
        "{}",
        mail.subject()
    );
    mail.link(&format!("{}/register?token=", app.origin))
}

pub async fn register(web: &mut Web, link: &str, birth_date: &str, password: &str) -> Page {
    let form = web.get(link).await;
    assert_eq!(form.status, 200, "{}", form.text());
    assert!(form.text().contains("Complete Your Registration"));
    web.submit(
        &form,
        "/register",
        &[
            ("birth_date", birth_date),
            ("password", password),
            ("confirm", password),
        ],
    )
    .await
}

/// Logs in from a fresh browser; returns it and the answer.
pub async fn login(app: &TestApp, email: &str, password: &str, birth_date: &str) -> (Web, Page) {
    let mut web = app.web();
    let page = web.get("/login").await;
    let done = web
        .submit(
            &page,
            "/login",
            &[("email", email), ("password", password), ("birth_date", birth_date)],
        )
        .await;
    (web, done)
}

/// A registered patient: invited by staff, registered with [`PASSWORD`].
pub async fn registered_patient(app: &TestApp, staff: &mut Web, family: &str, email: &str, birth_date: &str) -> String {
    let id = patient(app, family, birth_date).await;
    let link = invite(app, staff, &id, email).await;
    let done = register(&mut app.web(), &link, birth_date, PASSWORD).await;
    assert_eq!(done.location.as_deref(), Some("/login?registered=1"), "{}", done.text());
    id
}

/// The account-event codes in a patient's audit trail.
pub async fn account_events(app: &TestApp, patient_id: &str) -> Vec<String> {
    let (status, bundle) = app.get(&format!("AuditEvent?patient={patient_id}&_count=200")).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["subtype"][0]["code"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn invitation_registration_login_and_logout() {
    for engine in engines() {
        let app = spawn_app(engine).await;
        let mut staff = staff_session(&app).await;
        let id = patient(&app, "Rivera", "1980-02-29").await;
        let email = "pat.rivera@example.org";
        let link = invite(&app, &mut staff, &id, email).await;
        let mail = app.smtp.wait_for(email, 1).await;
        let text = mail.decoded();
        assert!(
            text.contains("CareSpace Demo Practice") && text.contains("Content-Type: text/html"),
            "{text}"
        );
        assert!(!text.contains("1980"), "no health or identity data in the email");
        let staff_page = staff.get("/staff").await.text();
        assert!(staff_page.contains("Invited"), "{staff_page}");

        // Registration: a wrong date of birth is refused next to its field, and nothing is used up.
        let mut web = app.web();
        let form = web.get(&link).await;
        let wrong = web
            .submit(
                &form,
                "/register",
                &[
                    ("birth_date", "1980-03-01"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(wrong.status, 422);
        assert_eq!(
            wrong.field_error("birth_date").as_deref(),
            Some("The date of birth does not match our records.")
        );
        let mismatch = web
            .submit(
                &form,
                "/register",
                &[
                    ("birth_date", "1980-02-29"),
                    ("password", PASSWORD),
                    ("confirm", "Sunny-Day-78!"),
                ],
            )
            .await;
        assert_eq!(
            mismatch.field_error("confirm").as_deref(),
            Some("The two passwords do not match.")
        );
        let done = web
            .submit(
                &form,
                "/register",
                &[
                    ("birth_date", "02/29/1980"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.location.as_deref(), Some("/login?registered=1"), "{}", done.text());
        let landing = web.get("/login?registered=1").await.text();
        assert!(landing.contains("Your registration is complete"), "{landing}");
        // Single use.
        let again = web.get(&link).await;
        assert_eq!(again.status, 410);
        assert!(again.text().contains("already been used"), "{}", again.text());

        // Login: every wrong part gets the same words.
        for (e, p, d) in [
            (email, PASSWORD, "1980-03-01"),
            (email, "Sunny-Day-78!", "1980-02-29"),
            ("nobody@example.org", PASSWORD, "1980-02-29"),
        ] {
            let (_, failed) = login(&app, e, p, d).await;
            assert_eq!(failed.status, 401, "{e} {p} {d}");
            assert!(failed.text().contains(GENERIC), "{}", failed.text());
            assert!(
                failed.body.contains(&format!("value=\"{e}\"")),
                "the email stays filled in"
            );
        }
        let (mut web, ok) = login(&app, &email.to_uppercase(), PASSWORD, "1980-02-29").await;
        assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/")));
        let session_cookie = ok
            .set_cookies
            .iter()
            .find(|c| c.starts_with("carespace_session="))
            .expect("session cookie");
        assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
        assert!(
            !session_cookie.contains("Secure"),
            "plain http base URL: no Secure flag"
        );
        let home = web.get("/").await;
        assert_eq!(home.status, 200);
        assert!(
            home.text().contains("Health") && home.text().contains("Pat Rivera"),
            "{}",
            home.text()
        );
        let stolen = web.cookies.clone();

        // Logout ends the session on the server: the old cookie opens nothing.
        let out = web.submit(&home, "/logout", &[]).await;
        assert_eq!(out.location.as_deref(), Some("/login?signed_out=1"));
        assert_eq!(web.get("/").await.location.as_deref(), Some("/login"));
        let mut replay = app.web();
        replay.cookies = stolen;
        assert_eq!(replay.get("/").await.location.as_deref(), Some("/login"));

        let events = account_events(&app, &id).await;
        for code in ["invite-sent", "registered", "login", "login-failed", "logout"] {
            assert!(events.iter().any(|c| c == code), "{code} missing from {events:?}");
        }
    }
}

// Two worker threads: the command line's email reaches the SMTP sink while this test waits for the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_expire_after_4_days_and_resending_replaces_the_link() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let id = patient(&app, "Okoye", "1971-06-15").await;
    let email = "okoye@example.org";
    // The operator's command line sends the first invitation.
    let (ok, out) = app.command(&["invite", &id, email]).await;
    assert!(ok, "{out}");
    let first = app
        .smtp
        .wait_for(email, 1)
        .await
        .link(&format!("{}/register?token=", app.origin));
    let mut web = app.web();
    let form = web.get(&first).await;
    assert_eq!(form.status, 200);

    app.state.clock.advance(4 * 24 * 3600 * 1000 + 60_000);
    let expired = web.get(&first).await;
    assert_eq!(expired.status, 410);
    assert!(
        expired.text().contains("This invitation has expired"),
        "{}",
        expired.text()
    );
    assert!(
        expired.text().contains("Ask the practice to resend it"),
        "{}",
        expired.text()
    );
    let refused = web
        .submit(
            &form,
            "/register",
            &[
                ("birth_date", "1971-06-15"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        refused.status, 410,
        "an expired link registers nothing even when posted"
    );
    // Four days later the staff member signs in again (sessions end after 30 idle minutes).
    assert_eq!(
        staff.get("/staff").await.location.as_deref(),
        Some("/staff/login?next=/staff")
    );
    let mut staff = staff_login(&app.origin).await;
    assert!(staff.get("/staff").await.text().contains("Invitation expired"));

    // Resend: a new link that works; the old one is replaced.
    let page = staff.get("/staff").await;
    let resent = staff
        .submit(&page, "/staff/resend", &[("patient", &id), ("name", "")])
        .await;
    assert_eq!(resent.status, 303, "{}", resent.text());
    let second = app
        .smtp
        .wait_for(email, 2)
        .await
        .link(&format!("{}/register?token=", app.origin));
    assert_ne!(first, second);
    let old = web.get(&first).await;
    assert!(
        old.text().contains("replaced") || old.text().contains("expired"),
        "{}",
        old.text()
    );
    let third_page = staff.get("/staff").await;
    staff
        .submit(&third_page, "/staff/resend", &[("patient", &id), ("name", "")])
        .await;
    let third = app
        .smtp
        .wait_for(email, 3)
        .await
        .link(&format!("{}/register?token=", app.origin));
    let replaced = web.get(&second).await;
    assert_eq!(replaced.status, 410);
    assert!(
        replaced.text().contains("This invitation was replaced"),
        "{}",
        replaced.text()
    );
    let done = register(&mut app.web(), &third, "1971-06-15", PASSWORD).await;
    assert_eq!(done.location.as_deref(), Some("/login?registered=1"), "{}", done.text());
    // A registered patient cannot be invited again.
    let page = staff.get("/staff").await;
    assert!(page.text().contains("Registered"), "{}", page.text());
    let again = staff
        .submit(
            &page,
            "/staff/invite",
            &[("patient", &id), ("email", email), ("name", "")],
        )
        .await;
    assert_eq!(again.status, 409);
}

#[tokio::test]
async fn each_password_rule_is_enforced_on_its_own() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let id = patient(&app, "Lund", "1990-12-01").await;
    let link = invite(&app, &mut staff, &id, "lund@example.org").await;
    let mut web = app.web();
    let form = web.get(&link).await;
    // The page lists every rule (and the script checks them live).
    for rule in [
        "At least 8 characters",
        "1 uppercase letter",
        "1 lowercase letter",
        "1 number",
        "1 special character",
    ] {
        assert!(form.text().contains(rule), "{rule}");
    }
    for (password, rule) in [
        ("Sun-d7!", "At least 8 characters"),
        ("sunny-day-77!", "At least 1 uppercase letter"),
        ("SUNNY-DAY-77!", "At least 1 lowercase letter"),
        ("Sunny-Day-Seven!", "At least 1 number"),
        ("SunnyDay77", "At least 1 special character"),
    ] {
        let page = web
            .submit(
                &form,
                "/register",
                &[
                    ("birth_date", "1990-12-01"),
                    ("password", password),
                    ("confirm", password),
                ],
            )
            .await;
        assert_eq!(page.status, 422, "{password}");
        let body = &page.body;
        let unmet = body.find("class=\"unmet\"").map(|i| &body[i..]).unwrap_or("");
        assert!(
            unmet.split("</li>").next().unwrap_or("").contains(rule),
            "{password}: {rule} not marked unmet in {body}"
        );
        assert!(
            page.text().contains(&format!("The password needs: {rule}")),
            "{password}: {}",
            page.text()
        );
        assert!(!body.contains(password), "the password is not sent back");
    }
    let done = register(&mut web, &link, "1990-12-01", PASSWORD).await;
    assert_eq!(done.status, 303);
}

#[tokio::test]
async fn password_reset_by_email_ends_every_other_session() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "marsh@example.org";
    registered_patient(&app, &mut staff, "Marsh", email, "1962-08-08").await;
    let (mut phone, ok) = login(&app, email, PASSWORD, "1962-08-08").await;
    assert_eq!(ok.status, 303);
    assert_eq!(phone.get("/").await.status, 200);

    // The same answer whether or not an account exists; only the account's owner gets an email.
    let mut web = app.web();
    let mut answers = Vec::new();
    for who in ["nobody@example.org", email] {
        let page = web.get("/forgot-password").await;
        let sent = web.submit(&page, "/forgot-password", &[("email", who)]).await;
        assert_eq!(sent.status, 200);
        answers.push(sent.text().replace(who, "EMAIL"));
    }
    assert_eq!(answers[0], answers[1]);
    let mail = app.smtp.wait_for(email, 2).await;
    assert!(mail.subject().contains("Reset your password"), "{}", mail.subject());
    let link = mail.link(&format!("{}/reset-password?token=", app.origin));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.smtp.messages_to("nobody@example.org").is_empty());

    let form = web.get(&link).await;
    assert_eq!(form.status, 200, "{}", form.text());
    let weak = web
        .submit(
            &form,
            "/reset-password",
            &[
                ("birth_date", "1962-08-08"),
                ("password", "weakpass"),
                ("confirm", "weakpass"),
            ],
        )
        .await;
    assert_eq!(weak.status, 422, "the same password policy applies");
    let new_password = "Rainy-Night-88?";
    let done = web
        .submit(
            &form,
            "/reset-password",
            &[
                ("birth_date", "1962-08-08"),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/login?reset=1"), "{}", done.text());
    assert_eq!(
        phone.get("/").await.location.as_deref(),
        Some("/login"),
        "other sessions end"
    );
    assert_eq!(web.get(&link).await.status, 410, "single use");
    assert_eq!(login(&app, email, PASSWORD, "1962-08-08").await.1.status, 401);
    assert_eq!(login(&app, email, new_password, "1962-08-08").await.1.status, 303);

    // Reset links last one hour.
    let page = web.get("/forgot-password").await;
    web.submit(&page, "/forgot-password", &[("email", email)]).await;
    let late = app
        .smtp
        .wait_for(email, 3)
        .await
        .link(&format!("{}/reset-password?token=", app.origin));
    app.state.clock.advance(61 * 60_000);
    let expired = web.get(&late).await;
    assert_eq!(expired.status, 410);
    assert!(expired.text().contains("expired"), "{}", expired.text());
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_then_locked() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "tran@example.org";
    let id = registered_patient(&app, &mut staff, "Tran", email, "1955-05-05").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login(&app, email, "Wrong-Pass-1!", "1955-05-05").await.1.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    let (_, locked) = login(&app, email, PASSWORD, "1955-05-05").await;
    assert_eq!(locked.status, 429, "even the right password waits out the lock");
    assert!(locked.text().contains("locked for 15 minutes"), "{}", locked.text());
    // An unknown email locks the same way, so a lock says nothing about who has an account.
    let mut unknown = Vec::new();
    for _ in 0..5 {
        unknown.push(
            login(&app, "ghost@example.org", "Wrong-Pass-1!", "1955-05-05")
                .await
                .1
                .status,
        );
    }
    assert_eq!(unknown.last(), Some(&429));

    app.state.clock.advance(16 * 60_000);
    assert_eq!(login(&app, email, PASSWORD, "1955-05-05").await.1.status, 303);
    assert!(account_events(&app, &id).await.iter().any(|c| c == "locked"));
}

/// Reset requests are limited per email (and per address): past five an hour the answer is a plain "try
/// later", the same for an unknown email, and no more emails go out. Guessing the birth date on an invitation
/// is limited the same way as passwords.
#[tokio::test]
async fn reset_requests_and_birth_date_guesses_are_limited() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "lind@example.org";
    registered_patient(&app, &mut staff, "Lind", email, "1971-07-07").await;
    let id = patient(&app, "Quist", "1980-03-03").await;
    let link = invite(&app, &mut staff, &id, "quist@example.org").await;
    let ask = |who: &'static str| {
        let mut web = app.web();
        async move {
            let page = web.get("/forgot-password").await;
            web.submit(&page, "/forgot-password", &[("email", who)]).await.status
        }
    };
    let mut known = Vec::new();
    for _ in 0..6 {
        known.push(ask(email).await);
    }
    assert_eq!(known, [200, 200, 200, 200, 200, 429]);
    // The invitation, then five reset emails.
    app.smtp.wait_for(email, 6).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.smtp.messages_to(email).len(), 6, "no sixth reset email");
    app.state.clock.advance(61 * 60_000);
    let mut unknown = Vec::new();
    for _ in 0..6 {
        unknown.push(ask("nobody@example.org").await);
    }
    assert_eq!(unknown, known, "an unknown email is answered the same way");

    // An invitation's birth date: ten wrong guesses lock the link's address out, even for the right date.
    app.state.clock.advance(61 * 60_000);
    let mut guesses = Vec::new();
    for day in 10..21 {
        guesses.push(
            register(&mut app.web(), &link, &format!("1980-03-{day}"), PASSWORD)
                .await
                .status,
        );
    }
    assert_eq!(guesses[..9], [422; 9], "{guesses:?}");
    assert_eq!(guesses.last(), Some(&429), "{guesses:?}");
    let right = register(&mut app.web(), &link, "1980-03-03", PASSWORD).await;
    assert_eq!(right.status, 429, "{}", right.text());
    app.state.clock.advance(16 * 60_000);
    let right = register(&mut app.web(), &link, "1980-03-03", PASSWORD).await;
    assert_eq!(
        right.location.as_deref(),
        Some("/login?registered=1"),
        "{}",
        right.text()
    );
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = spawn_app("sqlite").await;
    let mut web = app.web();
    let page = web.get("/login").await;
    let token = page.hidden("csrf").expect("csrf field");
    let fields = [
        ("email", "a@example.org"),
        ("password", "x"),
        ("birth_date", "1970-01-01"),
    ];
    let missing = web.post_raw("/login", &fields).await;
    assert_eq!(missing.status, 403);
    assert!(missing.text().contains("This form has expired"), "{}", missing.text());
    let mut forged: Vec<(&str, &str)> = fields.to_vec();
    forged.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(web.post_raw("/login", &forged).await.status, 403);
    // Another site's page cannot know the cookie: a browser without it is refused even with a token.
    let mut other = app.web();
    let mut replayed: Vec<(&str, &str)> = fields.to_vec();
    replayed.push(("csrf", &token));
    assert_eq!(other.post_raw("/login", &replayed).await.status, 403);
    for action in [
        "/register",
        "/forgot-password",
        "/reset-password",
        "/logout",
        "/staff/invite",
        "/staff/login",
    ] {
        assert_eq!(
            web.post_raw(action, &[("email", "a@example.org")]).await.status,
            403,
            "{action}"
        );
    }
    // With the token the same form is processed (and fails on its merits).
    assert_eq!(web.submit(&page, "/login", &fields).await.status, 401);
}

#[tokio::test]
async fn sessions_end_when_idle_and_after_twelve_hours() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "idle@example.org";
    registered_patient(&app, &mut staff, "Idle", email, "1949-09-09").await;
    let (mut web, _) = login(&app, email, PASSWORD, "1949-09-09").await;
    app.state.clock.advance(29 * 60_000);
    assert_eq!(web.get("/").await.status, 200, "29 minutes idle is fine");
    app.state.clock.advance(31 * 60_000);
    assert_eq!(
        web.get("/").await.location.as_deref(),
        Some("/login"),
        "31 minutes idle is not"
    );

    let (mut busy, _) = login(&app, email, PASSWORD, "1949-09-09").await;
    for _ in 0..(11 * 3 + 2) {
        app.state.clock.advance(20 * 60_000);
        assert_eq!(busy.get("/").await.status, 200);
    }
    app.state.clock.advance(20 * 60_000);
    assert_eq!(
        busy.get("/").await.location.as_deref(),
        Some("/login"),
        "12 hours at most"
    );
}

#[tokio::test]
async fn login_redirects_only_to_own_pages_and_rotates_the_session() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "next@example.org";
    registered_patient(&app, &mut staff, "Next", email, "1966-06-06").await;
    for (next, to) in [
        ("/staff", "/staff"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
    ] {
        let mut web = app.web();
        let page = web.get(&format!("/login?next={}", percent(next))).await;
        assert_eq!(page.hidden("next").as_deref(), Some(next));
        let done = web
            .submit(
                &page,
                "/login",
                &[("email", email), ("password", PASSWORD), ("birth_date", "1966-06-06")],
            )
            .await;
        assert_eq!(done.location.as_deref(), Some(to), "next={next}");
    }
    // A session cookie planted before login is not the one after it.
    let mut web = app.web();
    web.cookies.insert(
        "carespace_session".into(),
        "planted-by-someone-else-0000000000000000000".into(),
    );
    let page = web.get("/login").await;
    web.submit(
        &page,
        "/login",
        &[("email", email), ("password", PASSWORD), ("birth_date", "1966-06-06")],
    )
    .await;
    assert_ne!(
        web.cookies.get("carespace_session").map(String::as_str),
        Some("planted-by-someone-else-0000000000000000000")
    );
    // A patient's credentials do not open the care team's door.
    let mut other = app.web();
    let page = other.get("/staff/login").await;
    let wrong_door = other
        .submit(&page, "/staff/login", &[("email", email), ("password", PASSWORD)])
        .await;
    assert_eq!(wrong_door.status, 401);
}

fn percent(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Everything the app logs at info level and above, from every test running in this process.
fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("logs").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Sink(writer.clone()))
            .init();
        logs
    })
    .clone()
}

#[tokio::test]
async fn no_password_token_or_link_is_logged() {
    let logs = captured_logs();
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let email = "quiet@example.org";
    let id = patient(&app, "Quiet", "1977-07-07").await;
    let invite_link = invite(&app, &mut staff, &id, email).await;
    let done = register(&mut app.web(), &invite_link, "1977-07-07", PASSWORD).await;
    assert_eq!(done.status, 303);
    let (web, ok) = login(&app, email, PASSWORD, "1977-07-07").await;
    assert_eq!(ok.status, 303);
    login(&app, email, "Wrong-Guess-9!", "1977-07-07").await;
    let mut other = app.web();
    let page = other.get("/forgot-password").await;
    other.submit(&page, "/forgot-password", &[("email", email)]).await;
    let reset_link = app
        .smtp
        .wait_for(email, 2)
        .await
        .link(&format!("{}/reset-password?token=", app.origin));
    let form = other.get(&reset_link).await;
    let new_password = "Quiet-Night-55!";
    let reset = other
        .submit(
            &form,
            "/reset-password",
            &[
                ("birth_date", "1977-07-07"),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(reset.status, 303);

    let logged = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logged.contains("/register"),
        "the requests were logged (path only): {logged}"
    );
    let token = |link: &str| link.split("token=").nth(1).unwrap_or_default().to_owned();
    let secrets = [
        PASSWORD.to_owned(),
        STAFF_PASSWORD.to_owned(),
        new_password.to_owned(),
        "Wrong-Guess-9!".to_owned(),
        token(&invite_link),
        token(&reset_link),
        web.cookies["carespace_session"].clone(),
        web.cookies["carespace_csrf"].clone(),
    ];
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "{secret} was logged");
    }
}

/// With no mail server, letters go to the outbox folder and their links are logged for the developer, but a
/// SMART Health Link's key never is: it travels in the link's fragment, which stays in the letter.
#[tokio::test]
async fn the_outbox_folder_log_keeps_share_link_keys_out() {
    let logs = captured_logs();
    let app = crate::helpers::spawn_app_with_outbox_folder("sqlite").await;
    let email = "folder@example.org";
    let id = patient(&app, "Folder", "1966-06-06").await;
    let mut staff = staff_session(&app).await;
    let page = staff.get("/staff").await;
    let sent = staff
        .submit(
            &page,
            "/staff/invite",
            &[("patient", &id), ("email", email), ("name", "")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.text());
    // The invitation's link, as the developer finds it in the log.
    let logged = || String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let marker = format!("{}/register?token=", app.origin);
    let mut link = None;
    for _ in 0..100 {
        let text = logged();
        if let Some(start) = text.find(&marker) {
            let rest = &text[start..];
            link = Some(rest[..rest.find(['"', ' ', ']']).unwrap_or(rest.len())].to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let link = link.expect("the invitation's link in the log");
    let done = register(&mut app.web(), &link, "1966-06-06", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let (mut web, _) = login(&app, email, PASSWORD, "1966-06-06").await;
    let form = web.get("/send-record").await;
    let fields = [
        ("recipient", "dr.folder@clinic.example"),
        ("start", "2026-01-01"),
        ("end", "2026-12-31"),
        ("notes", ""),
        ("password", "Harbor-Lights-42!"),
        ("confirm", "Harbor-Lights-42!"),
    ];
    assert_eq!(web.submit(&form, "/send-record", &fields).await.status, 200);
    let viewer = format!("{}/shl/view", app.origin);
    for _ in 0..100 {
        if logged().contains(&viewer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logged = logged();
    assert!(logged.contains(&viewer), "the letter's viewer link is logged");
    assert!(!logged.contains("shlink:/"), "a share link's key was logged");
}
