//! The care team's page: find a patient, see whether they have portal access, send or resend the
//! "Complete Your Registration" invitation. Patients are read through the gate as the staff member.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::render::{self, Chrome, Problems};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::access::Actor;
use crate::accounts::proxies::ProxyStatus;
use crate::accounts::{Invitation, SignedIn};
use crate::clock;
use crate::error::Result;
use crate::store::accounts::AccountKind;

#[derive(Deserialize, Default)]
pub struct StaffQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sent: Option<String>,
    #[serde(default)]
    revoked: Option<String>,
}

#[derive(Deserialize)]
pub struct RevokeForm {
    patient: String,
    related_person: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub struct LaunchForm {
    patient: String,
    client_id: String,
}

#[derive(Deserialize)]
pub struct InviteForm {
    patient: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

/// The staff member's session and actor, if a staff member is signed in.
pub(super) fn staff(visitor: &Visitor) -> Option<(&SignedIn, Actor)> {
    let s = visitor
        .signed_in
        .as_ref()
        .filter(|s| s.account.kind == AccountKind::Staff)?;
    Some((s, s.actor().ok()?))
}

pub(super) fn to_staff_login() -> Response {
    Redirect::to("/staff/login?next=/staff").into_response()
}

/// One patient row: id, name, birth date and the email on file.
struct PatientRow {
    id: String,
    name: String,
    birth_date: String,
    email: String,
}

async fn find_patients(state: &AppState, actor: &Actor, name: &str) -> Result<Vec<PatientRow>> {
    let mut params = vec![
        ("_count".to_owned(), "50".to_owned()),
        ("_sort".to_owned(), "family,given".to_owned()),
    ];
    if !name.trim().is_empty() {
        params.push(("name".to_owned(), name.trim().to_owned()));
    }
    let found = state.records.find(actor, "Patient", &params).await?;
    found
        .matches
        .iter()
        .map(|stored| {
            let p = stored.json()?;
            let name = crate::fhir::display_name(&p);
            let email = p["telecom"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["system"] == "email")
                .and_then(|t| t["value"].as_str())
                .unwrap_or("")
                .to_owned();
            Ok(PatientRow {
                id: p["id"].as_str().unwrap_or("").to_owned(),
                name,
                birth_date: p["birthDate"].as_str().unwrap_or("").to_owned(),
                email,
            })
        })
        .collect()
}

fn date(ms: i64) -> String {
    clock::instant(ms)[..10].to_owned()
}

fn access_cell(invitation: Option<&Invitation>, now: i64) -> Markup {
    html! {
        @match invitation {
            None => { "Not invited" }
            Some(i) if i.account.registered.is_some() => {
                "Registered " (date(i.account.registered.unwrap_or_default())) br; small { (i.account.email) }
            }
            Some(Invitation { latest: Some(t), account }) if t.expires > now => {
                "Invited " (date(t.created)) ", link valid until " (date(t.expires)) br; small { (account.email) }
            }
            Some(Invitation { latest, account }) => {
                "Invitation expired" @if let Some(t) = latest { " " (date(t.expires)) } br; small { (account.email) }
            }
        }
    }
}

async fn page(
    state: &AppState,
    visitor: &Visitor,
    signed_in: &SignedIn,
    actor: &Actor,
    q: &StaffQuery,
    problems: &Problems,
) -> Result<Markup> {
    let patients = find_patients(state, actor, &q.name).await?;
    let ids: Vec<String> = patients.iter().map(|p| p.id.clone()).collect();
    let invitations = state.accounts.invitations(&ids).await?;
    let apps = state.oauth.launchable_apps().await?;
    let mut proxies = Vec::new();
    for p in &patients {
        proxies.push(state.accounts.proxies(actor, &p.id).await?);
    }
    let now = state.clock.now_millis();
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: Some(signed_in),
        csrf: &visitor.csrf,
    };
    let sent = q.sent.as_deref().and_then(|id| patients.iter().find(|p| p.id == id));
    Ok(render::page(
        &chrome,
        "Care team",
        html! {
            @if let Some(p) = sent {
                p.notice role="status" { "Invitation email sent for " (p.name) "." }
            }
            @if q.revoked.is_some() {
                p.notice role="status" { "Access revoked." }
            }
            (render::general(problems))
            nav.actions aria-label="Care team" {
                a.button href="/staff/messages" { "Patient messages" }
            }
            form.search method="get" action="/staff" {
                label for="name" { "Patient name" }
                input id="name" name="name" type="search" value=(q.name);
                button type="submit" { "Search" }
            }
            table.patients {
                thead { tr { th { "Patient" } th { "Date of birth" } th { "Portal access" } th { "Invitation" } @if !apps.is_empty() { th { "Apps" } } } }
                tbody {
                    @for (p, family) in patients.iter().zip(&proxies) {
                        @let invitation = invitations.iter().find(|i| i.account.person == format!("Patient/{}", p.id));
                        tr {
                            td {
                                (p.name) br; small { "Patient/" (p.id) } br;
                                a href=(format!("/staff/patients/{}/message", p.id)) { "Write a message" }
                                " · "
                                a href=(format!("/staff/patients/{}/audit", p.id)) { "Audit trail" }
                            }
                            td { (p.birth_date) }
                            td {
                                (access_cell(invitation, now))
                                @for f in family.iter().filter(|f| f.status != ProxyStatus::Revoked) {
                                    form.invite method="post" action="/staff/revoke-access" {
                                        input type="hidden" name="csrf" value=(visitor.csrf);
                                        input type="hidden" name="patient" value=(p.id);
                                        input type="hidden" name="related_person" value=(f.grant.related_person);
                                        input type="hidden" name="name" value=(q.name);
                                        small { "Family access: " (f.email) " (" (f.status.words()) ") " }
                                        button.secondary type="submit" aria-label=(format!("Revoke access of {} to {}", f.email, p.name)) { "Revoke" }
                                    }
                                }
                            }
                            td {
                                @if invitation.is_none_or(|i| i.account.registered.is_none()) {
                                    @if invitation.is_some() {
                                        form method="post" action="/staff/resend" {
                                            input type="hidden" name="csrf" value=(visitor.csrf);
                                            input type="hidden" name="patient" value=(p.id);
                                            input type="hidden" name="name" value=(q.name);
                                            button type="submit" { "Resend invite" }
                                        }
                                    }
                                    form.invite method="post" action="/staff/invite" {
                                        input type="hidden" name="csrf" value=(visitor.csrf);
                                        input type="hidden" name="patient" value=(p.id);
                                        input type="hidden" name="name" value=(q.name);
                                        @let id = format!("email-{}", p.id);
                                        label for=(id) { "Email for " (p.name) }
                                        input id=(id) name="email" type="email" required
                                            value=(invitation.map_or(p.email.as_str(), |i| i.account.email.as_str()));
                                        button type="submit" { @if invitation.is_some() { "Send to this address" } @else { "Send invitation" } }
                                    }
                                }
                            }
                            @if !apps.is_empty() {
                                td {
                                    form.invite method="post" action="/staff/launch" {
                                        input type="hidden" name="csrf" value=(visitor.csrf);
                                        input type="hidden" name="patient" value=(p.id);
                                        @let id = format!("app-{}", p.id);
                                        label for=(id) { "App for " (p.name) }
                                        select id=(id) name="client_id" {
                                            @for app in &apps {
                                                option value=(app.id) { (app.name) }
                                            }
                                        }
                                        " "
                                        button type="submit" { "Launch app" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if patients.is_empty() {
                p { "No patients match." }
            }
        },
    ))
}

pub async fn show(State(state): State<AppState>, visitor: Visitor, Query(q): Query<StaffQuery>) -> Response {
    let Some((signed_in, actor)) = staff(&visitor) else {
        return to_staff_login();
    };
    let markup = match page(&state, &visitor, signed_in, &actor, &q, &Problems::default()).await {
        Ok(markup) => markup,
        Err(e) => return render::failure(&e),
    };
    let mut response = render::respond(StatusCode::OK, markup);
    // "Launch app" answers with a redirect to the app: the page's CSP must let the form go there.
    let origins: Vec<String> = match state.oauth.launchable_apps().await {
        Ok(apps) => apps
            .iter()
            .filter_map(|a| a.launch_url.as_deref())
            .map(super::origin_of)
            .collect(),
        Err(e) => return render::failure(&e),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&super::content_security_policy(&origins.join(" "))) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// "Launch app": opens a registered app for the patient (SMART EHR launch), as this staff member.
pub async fn launch(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<LaunchForm>,
) -> Response {
    let Some((signed_in, actor)) = staff(&visitor) else {
        return to_staff_login();
    };
    // The patient must be one the staff member can read (and the read is audited).
    if let Err(e) = state.records.read(&actor, "Patient", &form.patient).await {
        return render::failure(&e);
    }
    match state
        .oauth
        .ehr_launch(&form.client_id, &signed_in.account, &form.patient)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => render::failure(&e),
    }
}

async fn after(state: &AppState, visitor: &Visitor, form: &InviteForm, result: Result<()>) -> Response {
    let Some((signed_in, actor)) = staff(visitor) else {
        return to_staff_login();
    };
    match result {
        Ok(()) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("name", &form.name)
                .append_pair("sent", &form.patient)
                .finish();
            Redirect::to(&format!("/staff?{query}")).into_response()
        }
        Err(err) => {
            let q = StaffQuery {
                name: form.name.clone(),
                ..StaffQuery::default()
            };
            let mut problems = Problems::of(&err);
            if let Some(field) = problems.field("email").or(problems.field("patient")) {
                problems.general = Some(field.to_owned());
            }
            match page(state, visitor, signed_in, &actor, &q, &problems).await {
                Ok(markup) => render::respond(render::status_of(&err), markup),
                Err(e) => render::failure(&e),
            }
        }
    }
}

/// The care team revokes someone's access to a patient's record (as the patient can).
pub async fn revoke_access(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<RevokeForm>,
) -> Response {
    let Some((_, actor)) = staff(&visitor) else {
        return to_staff_login();
    };
    match state
        .accounts
        .revoke_access(&actor, &form.patient, &form.related_person, &visitor.address)
        .await
    {
        Ok(()) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("name", &form.name)
                .append_pair("revoked", &form.patient)
                .finish();
            Redirect::to(&format!("/staff?{query}")).into_response()
        }
        Err(e) => render::failure(&e),
    }
}

/// "Send invitation" (to the address in the form) or "Resend invite" (to the pending invitation's address).
async fn send_invitation(state: &AppState, visitor: &Visitor, form: &InviteForm, resend: bool) -> Response {
    let Some((_, actor)) = staff(visitor) else {
        return to_staff_login();
    };
    let address = Some(visitor.address.as_str());
    let result = if resend {
        state.accounts.resend(&actor, &form.patient, address).await
    } else {
        state.accounts.invite(&actor, &form.patient, &form.email, address).await
    };
    after(state, visitor, form, result.map(drop)).await
}

pub async fn invite(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<InviteForm>,
) -> Response {
    send_invitation(&state, &visitor, &form, false).await
}

pub async fn resend(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<InviteForm>,
) -> Response {
    send_invitation(&state, &visitor, &form, true).await
}
