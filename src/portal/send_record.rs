//! "Send Record" (`/send-record`): the form that sends part of the record to an outside provider, and "Sent
//! records" (`/sent-records`): what was sent, to whom, when. The rules are `sharing`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::render::{self, Chrome, Field, Problems};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::access::audit::AccountAction;
use crate::sharing::{self, NOTES_MAX, SendForm};

#[derive(Deserialize, Default)]
pub struct Form {
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

fn chrome<'a>(state: &'a AppState, visitor: &'a Visitor) -> Chrome<'a> {
    Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    }
}

fn form_page(state: &AppState, visitor: &Visitor, typed: &Form, problems: &Problems, status: StatusCode) -> Response {
    let notes_error = problems.field("notes");
    render::respond(
        status,
        render::page_in_tab(
            &chrome(state, visitor),
            "Health",
            "Send Record",
            html! {
                p { "Securely send your health information to a provider outside our practice, like your primary care provider. They get an email with your records as an encrypted file; you give them the password yourself (by phone or in person, not by email)." }
                p { a href="/sent-records" { "Sent records" } }
                (render::general(problems))
                form.stack method="post" action="/send-record" novalidate {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    (render::field(&Field { label: "Provider's email address", name: "recipient", kind: "email", value: &typed.recipient, autocomplete: "off", error: problems.field("recipient") }))
                    (render::field(&Field { label: "Start date of the medical information", name: "start", kind: "date", value: &typed.start, autocomplete: "off", error: problems.field("start") }))
                    (render::field(&Field { label: "End date of the medical information", name: "end", kind: "date", value: &typed.end, autocomplete: "off", error: problems.field("end") }))
                    div.field.invalid[notes_error.is_some()] {
                        label for="notes" { "Notes for the recipient (optional)" }
                        textarea #notes name="notes" rows="5" maxlength=(NOTES_MAX) aria-describedby="notes-hint" { (typed.notes) }
                        p.hint #notes-hint { "Up to " (NOTES_MAX) " characters. The notes are written in the email itself (and in the encrypted file)." }
                        @if let Some(e) = notes_error { p.error #notes-error { (e) } }
                    }
                    p.hint { "A password for security and encryption purposes:" }
                    (render::new_password(problems, &typed.password))
                    button type="submit" { "Send Record" }
                }
            },
        ),
    )
}

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    if let Err(r) = super::health::patient(&visitor, "/send-record") {
        return *r;
    }
    let today = crate::clock::instant(state.clock.now_millis())[..10].to_owned();
    let typed = Form {
        end: today,
        ..Form::default()
    };
    form_page(&state, &visitor, &typed, &Problems::default(), StatusCode::OK)
}

pub async fn send(State(state): State<AppState>, visitor: Visitor, PortalForm(form): PortalForm<Form>) -> Response {
    let (actor, patient) = match super::health::patient(&visitor, "/send-record") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let request = SendForm {
        recipient: &form.recipient,
        start: &form.start,
        end: &form.end,
        notes: &form.notes,
        password: &form.password,
        confirm: &form.confirm,
    };
    let sender_name = visitor
        .signed_in
        .as_ref()
        .map(|s| s.account.display_name.as_str())
        .unwrap_or_default();
    match state
        .sharing
        .send((&actor, sender_name), &patient, &request, &visitor.address)
        .await
    {
        Ok(share) => render::respond(
            StatusCode::OK,
            render::page_in_tab(
                &chrome(&state, &visitor),
                "Health",
                "Record sent",
                html! {
                    p.notice role="status" {
                        "Your records dated " (share.range_start) " to " (share.range_end) " are on their way to " strong { (share.recipient) } "."
                    }
                    p { "Give them the password yourself, by phone or in person. We do not keep it and cannot tell it to anyone." }
                    p { a href="/sent-records" { "Sent records" } " · " a href="/" { "Back to Health" } }
                },
            ),
        ),
        Err(e) => {
            // Passwords are never sent back to the page.
            let typed = Form {
                password: String::new(),
                confirm: String::new(),
                ..form
            };
            form_page(&state, &visitor, &typed, &Problems::of(&e), render::status_of(&e))
        }
    }
}

#[derive(Deserialize)]
pub struct DeactivateForm {
    id: String,
}

fn list(visitor: &Visitor, shares: &[crate::store::accounts::ShareRow], now: i64) -> Markup {
    html! {
        table.results.shares {
            thead { tr { th { "Sent to" } th { "Dates" } th { "Sent" } th { "Link" } } }
            tbody {
                @for s in shares {
                    @let status = sharing::link_status(s, now);
                    tr {
                        td data-label="Sent to" { (s.recipient) }
                        td data-label="Dates" { (s.range_start) " to " (s.range_end) }
                        td data-label="Sent" { (sharing::when(s)) }
                        td data-label="Link" {
                            (status)
                            @if status == "Active" {
                                form.inline method="post" action="/sent-records/deactivate" {
                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                    input type="hidden" name="id" value=(s.id);
                                    button.secondary type="submit" aria-label=(format!("Deactivate the link sent to {}", s.recipient)) { "Deactivate link" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn deactivate(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<DeactivateForm>,
) -> Response {
    let (_, patient) = match super::health::patient(&visitor, "/sent-records") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match state.sharing.deactivate(&patient, &form.id).await {
        Ok(()) => {
            let what = format!("sent record {}", form.id);
            visitor
                .audit(&state, AccountAction::ShareDeactivated, Some(&patient), &what)
                .await;
            axum::response::Redirect::to("/sent-records").into_response()
        }
        Err(e) => render::failure(&e),
    }
}

/// `/shl/view#shlink:/…`: the viewer for people without an EHR (the work is `assets/shl-viewer.js`).
pub async fn viewer(State(state): State<AppState>, visitor: Visitor) -> Response {
    render::respond(
        StatusCode::OK,
        render::page(
            &Chrome {
                practice: &state.config.practice_name,
                signed_in: None,
                csrf: &visitor.csrf,
            },
            "Shared health records",
            html! {
                script src="/assets/shl-viewer.js" defer {}
                p #shl-label {}
                noscript { p { "This page needs JavaScript: the records are decrypted here, in your browser, with the key in the link, which never reaches our server." } }
                form.stack #shl-unlock {
                    div.field {
                        label for="shl-recipient" { "Your name or organization" }
                        input #shl-recipient type="text" required autocomplete="organization";
                    }
                    div.field {
                        label for="shl-passcode" { "Password" }
                        input #shl-passcode type="password" required autocomplete="off";
                        p.hint { "The patient gives you the password separately." }
                    }
                    button type="submit" { "Open records" }
                }
                p #shl-status role="status" aria-live="polite" {}
                section #shl-records hidden {}
            },
        ),
    )
}

pub async fn sent(State(state): State<AppState>, visitor: Visitor) -> Response {
    let (_, patient) = match super::health::patient(&visitor, "/sent-records") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let shares = match state.sharing.sent(&patient).await {
        Ok(s) => s,
        Err(e) => return render::failure(&e),
    };
    render::respond(
        StatusCode::OK,
        render::page_in_tab(
            &chrome(&state, &visitor),
            "Health",
            "Sent records",
            html! {
                @if shares.is_empty() {
                    p { "Nothing has been sent from this record." }
                } @else {
                    p { "Deactivating a link stops it from opening. If its email has not gone out yet, it is not sent; one already delivered cannot be called back." }
                    (list(&visitor, &shares, state.clock.now_millis()))
                }
                p { a.button href="/send-record" { "Send Record" } }
            },
        ),
    )
}
