//! "Manage Users" (`/manage-users`): the patient grants friends and family access to their record, resends
//! invitations, revokes access, and sees who else has looked at the record. "Switch record" (`/records`):
//! someone with access to several records chooses whose to open. The rules are `accounts/proxies.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::render::{self, Chrome, Field, Problems};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::access::Actor;
use crate::accounts::proxies::{NewProxy, ProxyStatus, RELATIONSHIPS};
use crate::clock;
use crate::error::{Error, Result};
use crate::store::accounts::AccountKind;

#[derive(Deserialize, Default)]
pub struct GrantForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    relationship: String,
}

#[derive(Deserialize)]
pub struct ProxyForm {
    related_person: String,
}

#[derive(Deserialize)]
pub struct OpenForm {
    patient: String,
}

/// The signed-in patient with their own record open (only they manage access), or where to go instead.
fn owner(visitor: &Visitor) -> std::result::Result<String, Box<Response>> {
    let (actor, patient) = super::health::patient(visitor, "/manage-users")?;
    match actor {
        Actor::Patient { .. } => Ok(patient),
        _ => Err(Box::new(render::failure(&Error::Forbidden(
            "Only the patient can manage who has access to their record.".into(),
        )))),
    }
}

fn date(ms: i64) -> String {
    clock::instant(ms)[..10].to_owned()
}

fn grant_form(visitor: &Visitor, typed: &GrantForm, problems: &Problems) -> Markup {
    let error = problems.field("relationship");
    html! {
        form.stack method="post" action="/manage-users/grant" novalidate {
            input type="hidden" name="csrf" value=(visitor.csrf);
            (render::field(&Field { label: "Their email address", name: "email", kind: "email", value: &typed.email, autocomplete: "off", error: problems.field("email") }))
            (render::field(&Field { label: "Their date of birth", name: "birth_date", kind: "date", value: &typed.birth_date, autocomplete: "off", error: problems.field("birth_date") }))
            div.field.invalid[problems.field("name").is_some()] {
                label for="name" { "Their name (optional)" }
                input #name name="name" type="text" value=(typed.name) maxlength="100" autocomplete="off";
                @if let Some(e) = problems.field("name") { p.error #name-error { (e) } }
            }
            div.field.invalid[error.is_some()] {
                label for="relationship" { "Relationship (optional)" }
                select #relationship name="relationship" {
                    option value="" { "—" }
                    @for (code, words) in RELATIONSHIPS {
                        option value=(code) selected[typed.relationship == *code] { (words) }
                    }
                }
                @if let Some(e) = error { p.error #relationship-error { (e) } }
            }
            p.hint { "They get an email to register. They sign in with their own password and this date of birth, and see your whole record: health, messages (they can write for you), Send Record and Download." }
            button type="submit" { "Grant access" }
        }
    }
}

async fn page(
    state: &AppState,
    visitor: &Visitor,
    patient: &str,
    typed: &GrantForm,
    problems: &Problems,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let actor = Actor::Patient {
        patient_id: patient.to_owned(),
    };
    let result = async {
        let proxies = state.accounts.proxies(&actor, patient).await?;
        let seen: Vec<super::trail::Entry> = super::trail::entries(state, &actor, patient, 200)
            .await?
            .into_iter()
            .filter(|e| !e.by_patient && !e.by_server)
            .take(50)
            .collect();
        Ok::<_, Error>((proxies, seen))
    }
    .await;
    let (proxies, seen) = match result {
        Ok(r) => r,
        Err(e) => return render::failure(&e),
    };
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    };
    render::respond(
        status,
        render::page(
            &chrome,
            "Manage Users",
            html! {
                (render::notice(notice))
                (render::general(problems))
                section aria-labelledby="people" {
                    h2 #people { "Who has access to your record" }
                    @if proxies.is_empty() {
                        p { "Only you (and your care team)." }
                    } @else {
                        table.results.proxies {
                            thead { tr { th { "Email" } th { "Name" } th { "Relationship" } th { "Status" } th { "Since" } th { "Actions" } } }
                            tbody {
                                @for p in &proxies {
                                    tr {
                                        td data-label="Email" { (p.email) }
                                        td data-label="Name" { (p.name) }
                                        td data-label="Relationship" { (p.relationship) }
                                        td data-label="Status" { (p.status.words()) }
                                        td data-label="Since" { (date(p.since)) }
                                        td data-label="Actions" {
                                            @if p.status == ProxyStatus::Invited {
                                                form.inline method="post" action="/manage-users/resend" {
                                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                                    input type="hidden" name="related_person" value=(p.grant.related_person);
                                                    button.secondary type="submit" aria-label=(format!("Resend invite to {}", p.email)) { "Resend invite" }
                                                }
                                            }
                                            @if p.status != ProxyStatus::Revoked {
                                                form.inline method="post" action="/manage-users/revoke" {
                                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                                    input type="hidden" name="related_person" value=(p.grant.related_person);
                                                    button type="submit" aria-label=(format!("Revoke access for {}", p.email)) { "Revoke access" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="grant" {
                    h2 #grant { "Give someone access" }
                    (grant_form(visitor, typed, problems))
                }
                section aria-labelledby="viewed" {
                    h2 #viewed { "Who has viewed your record" }
                    @if seen.is_empty() {
                        p { "Nobody but you so far." }
                    } @else {
                        table.results.viewings {
                            thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } } }
                            tbody {
                                @for v in &seen {
                                    tr { td data-label="When" { (v.when) } td data-label="Who" { (v.who) } td data-label="What" { (v.what) } }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    let patient = match owner(&visitor) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    page(
        &state,
        &visitor,
        &patient,
        &GrantForm::default(),
        &Problems::default(),
        StatusCode::OK,
        None,
    )
    .await
}

pub async fn grant(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<GrantForm>,
) -> Response {
    let patient = match owner(&visitor) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let new = NewProxy {
        email: &form.email,
        birth_date: &form.birth_date,
        name: &form.name,
        relationship: &form.relationship,
    };
    match state.accounts.grant_access(&patient, &new, &visitor.address).await {
        Ok(p) => {
            let notice = format!("Access granted: we emailed {}.", p.email);
            page(
                &state,
                &visitor,
                &patient,
                &GrantForm::default(),
                &Problems::default(),
                StatusCode::OK,
                Some(&notice),
            )
            .await
        }
        Err(e) => {
            page(
                &state,
                &visitor,
                &patient,
                &form,
                &Problems::of(&e),
                render::status_of(&e),
                None,
            )
            .await
        }
    }
}

pub async fn resend(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<ProxyForm>,
) -> Response {
    let patient = match owner(&visitor) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let done = state
        .accounts
        .resend_access(&patient, &form.related_person, &visitor.address)
        .await;
    after(
        &state,
        &visitor,
        &patient,
        done,
        "Invitation sent again; the earlier link no longer works.",
    )
    .await
}

pub async fn revoke(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<ProxyForm>,
) -> Response {
    let patient = match owner(&visitor) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let actor = Actor::Patient {
        patient_id: patient.clone(),
    };
    let done = state
        .accounts
        .revoke_access(&actor, &patient, &form.related_person, &visitor.address)
        .await;
    after(&state, &visitor, &patient, done, "Access revoked.").await
}

async fn after(state: &AppState, visitor: &Visitor, patient: &str, done: Result<()>, notice: &str) -> Response {
    match done {
        Ok(()) => {
            page(
                state,
                visitor,
                patient,
                &GrantForm::default(),
                &Problems::default(),
                StatusCode::OK,
                Some(notice),
            )
            .await
        }
        Err(e) => {
            page(
                state,
                visitor,
                patient,
                &GrantForm::default(),
                &Problems::of(&e),
                render::status_of(&e),
                None,
            )
            .await
        }
    }
}

/// "Switch record": whose record to open.
pub async fn choose(State(state): State<AppState>, visitor: Visitor) -> Response {
    let Some(signed_in) = visitor
        .signed_in
        .as_ref()
        .filter(|s| s.account.kind != AccountKind::Staff)
    else {
        return Redirect::to("/login?next=/records").into_response();
    };
    let records = match state.accounts.openable(signed_in).await {
        Ok(r) => r,
        Err(e) => return render::failure(&e),
    };
    let open = signed_in
        .opened
        .as_ref()
        .map(|g| g.patient.as_str())
        .or_else(|| signed_in.account.person.strip_prefix("Patient/"));
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: Some(signed_in),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page(
            &chrome,
            "Whose record?",
            html! {
                @if records.is_empty() {
                    p { "No record is open to you at the moment. If someone gave you access, the date of birth they entered must be yours; ask them to check it." }
                } @else {
                    ul.links {
                        @for r in &records {
                            li {
                                form.inline method="post" action="/records" {
                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                    input type="hidden" name="patient" value=(r.patient);
                                    button type="submit" {
                                        @if r.grant.is_none() { "My record" } @else { (r.name) }
                                    }
                                    @if Some(r.patient.as_str()) == open { " " small { "(open now)" } }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn open(State(state): State<AppState>, visitor: Visitor, PortalForm(form): PortalForm<OpenForm>) -> Response {
    let Some(signed_in) = &visitor.signed_in else {
        return Redirect::to("/login?next=/records").into_response();
    };
    match state.accounts.open_record(signed_in, &form.patient).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => render::failure(&e),
    }
}
