//! The Messages tab (`/messages`: inbox, sent, a conversation, reply, compose) and the care team's side of it
//! (`/staff/messages`). Both sides share the conversation and form renderers; the rules (who may answer what)
//! are the domain's (`messages`, `records::messages`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::render::{self, Chrome, Problems};
use super::staff::staff;
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::access::Actor;
use crate::error::Error;
use crate::messaging::{BODY_MAX, Draft, Message, PAGE, SUBJECT_MAX, Side};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    r#box: String,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    category: String,
}

#[derive(Deserialize, Default)]
pub struct ComposeForm {
    #[serde(default)]
    category: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize, Default)]
pub struct ReplyForm {
    #[serde(default)]
    body: String,
}

/// Who is reading, from which side, and where that side's pages live.
struct Reader {
    actor: Actor,
    side: Side,
    /// `/messages` or `/staff/messages`.
    root: &'static str,
}

/// The signed-in patient, or where to go instead.
fn patient_reader(visitor: &Visitor, here: &str) -> Result<(Reader, String), Box<Response>> {
    let (actor, patient) = super::health::patient(visitor, here)?;
    Ok((
        Reader {
            actor,
            side: Side::Patient,
            root: "/messages",
        },
        patient,
    ))
}

fn staff_reader(visitor: &Visitor, here: &str) -> Result<Reader, Box<Response>> {
    match staff(visitor) {
        Some((_, actor)) => Ok(Reader {
            actor,
            side: Side::CareTeam,
            root: "/staff/messages",
        }),
        None => {
            let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
            Err(Box::new(
                Redirect::to(&format!("/staff/login?next={next}")).into_response(),
            ))
        }
    }
}

fn chrome<'a>(state: &'a AppState, visitor: &'a Visitor) -> Chrome<'a> {
    Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    }
}

/// The page for a patient (under the Messages tab) or for staff.
fn framed(state: &AppState, visitor: &Visitor, side: Side, status: StatusCode, title: &str, body: Markup) -> Response {
    let chrome = chrome(state, visitor);
    let page = match side {
        Side::Patient => render::page_in_tab(&chrome, "Messages", title, body),
        Side::CareTeam => render::page(&chrome, title, body),
    };
    render::respond(status, page)
}

/// A list of messages; `who` is the column naming the other side.
fn table(messages: &[Message], root: &str, who: &str, name: fn(&Message) -> &str) -> Markup {
    html! {
        table.results.messages {
            thead { tr { th { (who) } th { "Subject" } th { "Category" } th { "Date" } } }
            tbody {
                @for m in messages {
                    tr.unread[m.unread] {
                        td data-label=(who) { (name(m)) }
                        td data-label="Subject" {
                            a href=(format!("{root}/{}", m.id)) {
                                @if m.unread { span.badge { "Unread" } " " }
                                (m.subject)
                            }
                        }
                        td data-label="Category" { (m.category) }
                        td data-label="Date" { (m.sent) }
                    }
                }
            }
        }
    }
}

/// Page links under a list; `root_query` ends with `?` or `&`.
fn pager(root_query: &str, page: i64, total: i64) -> Markup {
    render::pager(page, (total + PAGE - 1) / PAGE, |p| format!("{root_query}page={p}"))
}

fn compose_form(state: &AppState, visitor: &Visitor, action: &str, typed: &ComposeForm, problems: &Problems) -> Markup {
    let error = |name: &str| problems.field(name).map(str::to_owned);
    let described = |name: &str, hint: &str| {
        if problems.field(name).is_some() {
            format!("{hint} {name}-error")
        } else {
            hint.to_owned()
        }
    };
    html! {
        (render::general(problems))
        form.stack method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(visitor.csrf);
            div.field.invalid[error("category").is_some()] {
                label for="category" { "Category" }
                select #category name="category" required aria-invalid=[error("category").map(|_| "true")]
                    aria-describedby=[error("category").map(|_| "category-error")] {
                    option value="" { "Choose what it is about" }
                    @for c in state.messages.enabled_categories() {
                        option value=(c.code) selected[typed.category == c.code] { (c.label) }
                    }
                }
                @if let Some(e) = error("category") { p.error #category-error { (e) } }
            }
            div.field.invalid[error("subject").is_some()] {
                label for="subject" { "Subject" }
                input #subject name="subject" type="text" value=(typed.subject) maxlength=(SUBJECT_MAX) required
                    aria-invalid=[error("subject").map(|_| "true")] aria-describedby=(described("subject", "subject-hint"));
                p.hint #subject-hint { "Up to " (SUBJECT_MAX) " characters." }
                @if let Some(e) = error("subject") { p.error #subject-error { (e) } }
            }
            (body_field(typed.body.as_str(), problems, "Message"))
            button type="submit" { "Send" }
        }
    }
}

fn body_field(typed: &str, problems: &Problems, label: &str) -> Markup {
    let error = problems.field("body");
    html! {
        div.field.invalid[error.is_some()] {
            label for="body" { (label) }
            textarea #body name="body" rows="8" maxlength=(BODY_MAX) required aria-invalid=[error.map(|_| "true")]
                aria-describedby=(if error.is_some() { "body-hint body-error" } else { "body-hint" }) { (typed) }
            p.hint #body-hint { "Up to " (BODY_MAX) " characters." }
            @if let Some(e) = error { p.error #body-error role="alert" { (e) } }
        }
    }
}

/// A conversation, oldest first, and the reply form when the reader may answer (the newest message they may).
fn conversation(visitor: &Visitor, reader: &Reader, thread: &[Message], typed: &str, problems: &Problems) -> Markup {
    let answerable = thread.iter().rev().find(|m| m.answerable_by(reader.side, thread));
    html! {
        @if let Some(first) = thread.first() {
            p.meta {
                "Category: " (first.category)
                @if reader.side == Side::CareTeam {
                    " · Patient: " (first.patient_name)
                    " · " a href=(format!("/staff/patients/{}/message", first.patient)) { "New message to this patient" }
                }
            }
        }
        ol.thread {
            @for m in thread {
                li.message.from-care-team[m.from_care_team] id=(format!("m-{}", m.id)) {
                    header {
                        strong { (m.sender_name) }
                        " · " time { (m.sent) }
                    }
                    h2 { (m.subject) }
                    p.body { (m.body) }
                }
            }
        }
        @if let Some(m) = answerable {
            section aria-labelledby="reply" {
                h2 #reply { "Reply" }
                form.stack method="post" action=(format!("{}/{}/reply", reader.root, m.id)) novalidate {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    (body_field(typed, problems, &format!("Your reply to “{}”", m.subject)))
                    button type="submit" { "Send reply" }
                }
            }
        } @else {
            // A refused reply (already answered) has no form to show its message next to.
            (render::general(problems))
            @if let Some(e) = problems.field("body") { p.alert role="alert" { (e) } }
            @if reader.side == Side::Patient {
                p.hint { "You have answered this conversation. To write again, use Compose." }
            }
        }
    }
}

pub async fn list(State(state): State<AppState>, visitor: Visitor, Query(q): Query<ListQuery>) -> Response {
    let (reader, patient) = match patient_reader(&visitor, "/messages") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let page = q.page.unwrap_or(1).max(1);
    let sent = q.r#box == "sent";
    let found = if sent {
        state.messages.sent(&reader.actor, &patient, page).await
    } else {
        state.messages.inbox(&reader.actor, &patient, page).await
    };
    let (messages, total) = match found {
        Ok(f) => f,
        Err(e) => return render::failure(&e),
    };
    framed(
        &state,
        &visitor,
        Side::Patient,
        StatusCode::OK,
        "Messages",
        html! {
            nav.actions aria-label="Messages" {
                a.button href="/messages/new" { "Compose" }
            }
            nav.subtabs aria-label="Folders" {
                a href="/messages" aria-current=[(!sent).then_some("page")] { "Inbox" }
                a href="/messages?box=sent" aria-current=[sent.then_some("page")] { "Sent" }
            }
            @if messages.is_empty() {
                p { (if sent { "You have not sent any messages yet." } else { "No messages from your care team yet." }) }
            } @else {
                (table(&messages, "/messages", "From", |m| m.sender_name.as_str()))
            }
            (pager(if sent { "/messages?box=sent&" } else { "/messages?" }, page, total))
        },
    )
}

/// Loads a conversation for the reader, marks what was sent to them as read, and renders it.
async fn show_thread(
    state: &AppState,
    visitor: &Visitor,
    reader: &Reader,
    id: &str,
    typed: &str,
    problems: &Problems,
    status: StatusCode,
) -> Response {
    let thread = match state.messages.thread(&reader.actor, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return render::failure(&Error::NotFound("This message does not exist.".into())),
        Err(e) => return render::failure(&e),
    };
    if let Err(e) = state.messages.mark_read(&reader.actor, reader.side, &thread).await {
        return render::failure(&e);
    }
    let title = thread.first().map_or("Message", |m| m.subject.as_str()).to_owned();
    framed(
        state,
        visitor,
        reader.side,
        status,
        &title,
        html! {
            p { a href=(reader.root) { "← All messages" } }
            (conversation(visitor, reader, &thread, typed, problems))
        },
    )
}

pub async fn open(State(state): State<AppState>, visitor: Visitor, Path(id): Path<String>) -> Response {
    let (reader, _) = match patient_reader(&visitor, &format!("/messages/{id}")) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    show_thread(&state, &visitor, &reader, &id, "", &Problems::default(), StatusCode::OK).await
}

async fn answer(state: &AppState, visitor: &Visitor, reader: &Reader, id: &str, body: &str) -> Response {
    let thread = match state.messages.thread(&reader.actor, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return render::failure(&Error::NotFound("This message does not exist.".into())),
        Err(e) => return render::failure(&e),
    };
    let Some(answered) = thread.iter().find(|m| m.id == id) else {
        return render::failure(&Error::NotFound("This message does not exist.".into()));
    };
    match state.messages.reply(&reader.actor, answered, body).await {
        Ok(stored) => Redirect::to(&format!("{}/{}#m-{}", reader.root, stored.id, stored.id)).into_response(),
        Err(e) => {
            let problems = Problems::of(&e);
            let status = render::status_of(&e);
            show_thread(state, visitor, reader, id, body, &problems, status).await
        }
    }
}

pub async fn reply(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    PortalForm(form): PortalForm<ReplyForm>,
) -> Response {
    let (reader, _) = match patient_reader(&visitor, &format!("/messages/{id}")) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    answer(&state, &visitor, &reader, &id, &form.body).await
}

/// Where a compose form posts, for which side, and (staff) to whom.
struct Compose<'a> {
    side: Side,
    action: &'a str,
    to: Option<&'a str>,
}

fn compose_page(
    state: &AppState,
    visitor: &Visitor,
    compose: &Compose<'_>,
    typed: &ComposeForm,
    problems: &Problems,
    status: StatusCode,
) -> Response {
    framed(
        state,
        visitor,
        compose.side,
        status,
        "New message",
        html! {
            @match compose.to {
                Some(name) => p { "To " strong { (name) } ". They get an email saying a message is waiting, without its content." },
                None => p { "Your message goes to your care team. For emergencies call 911." },
            }
            (compose_form(state, visitor, compose.action, typed, problems))
        },
    )
}

pub async fn new(State(state): State<AppState>, visitor: Visitor) -> Response {
    if let Err(r) = patient_reader(&visitor, "/messages/new") {
        return *r;
    }
    compose_page(
        &state,
        &visitor,
        &Compose {
            side: Side::Patient,
            action: "/messages/new",
            to: None,
        },
        &ComposeForm::default(),
        &Problems::default(),
        StatusCode::OK,
    )
}

pub async fn send(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<ComposeForm>,
) -> Response {
    let (reader, patient) = match patient_reader(&visitor, "/messages/new") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let draft = Draft {
        category: &form.category,
        subject: &form.subject,
        body: &form.body,
    };
    match state.messages.compose(&reader.actor, &patient, &draft).await {
        Ok(stored) => Redirect::to(&format!("/messages/{}", stored.id)).into_response(),
        Err(e) => compose_page(
            &state,
            &visitor,
            &Compose {
                side: Side::Patient,
                action: "/messages/new",
                to: None,
            },
            &form,
            &Problems::of(&e),
            render::status_of(&e),
        ),
    }
}

// The care team's side.

pub async fn staff_list(State(state): State<AppState>, visitor: Visitor, Query(q): Query<ListQuery>) -> Response {
    let reader = match staff_reader(&visitor, "/staff/messages") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let page = q.page.unwrap_or(1).max(1);
    let (unread, read, total) = match state
        .messages
        .care_team_inbox(&reader.actor, Some(q.category.as_str()), page)
        .await
    {
        Ok(f) => f,
        Err(e) => return render::failure(&e),
    };
    let category_query: String = form_urlencoded::byte_serialize(q.category.as_bytes()).collect();
    framed(
        &state,
        &visitor,
        Side::CareTeam,
        StatusCode::OK,
        "Patient messages",
        html! {
            p { a href="/staff" { "← Patients" } }
            form.inline method="get" action="/staff/messages" {
                label for="category" { "Category" }
                select #category name="category" {
                    option value="" { "All categories" }
                    @for c in state.config.message_categories.iter() {
                        option value=(c.code) selected[q.category == c.code] { (c.label) }
                    }
                }
                button type="submit" { "Filter" }
            }
            section aria-labelledby="unread" {
                h2 #unread { "Unread (" (unread.len()) ")" }
                @if unread.is_empty() { p { "No unread messages." } }
                @else { (table(&unread, reader.root, "Patient", |m| m.patient_name.as_str())) }
            }
            section aria-labelledby="earlier" {
                h2 #earlier { "Read" }
                @if read.is_empty() { p { "No read messages." } }
                @else { (table(&read, reader.root, "Patient", |m| m.patient_name.as_str())) }
                (pager(&format!("/staff/messages?category={category_query}&"), page, total))
            }
        },
    )
}

pub async fn staff_open(State(state): State<AppState>, visitor: Visitor, Path(id): Path<String>) -> Response {
    let reader = match staff_reader(&visitor, &format!("/staff/messages/{id}")) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    show_thread(&state, &visitor, &reader, &id, "", &Problems::default(), StatusCode::OK).await
}

pub async fn staff_reply(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    PortalForm(form): PortalForm<ReplyForm>,
) -> Response {
    let reader = match staff_reader(&visitor, &format!("/staff/messages/{id}")) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    answer(&state, &visitor, &reader, &id, &form.body).await
}

/// The patient a staff member writes to, by name (read through the gate).
async fn patient_name(state: &AppState, actor: &Actor, patient: &str) -> Result<String, Response> {
    match state.records.read(actor, "Patient", patient).await {
        Ok(p) => Ok(serde_json::from_str(&p.body)
            .map(|v| crate::fhir::display_name(&v))
            .unwrap_or_default()),
        Err(e) => Err(render::failure(&e)),
    }
}

pub async fn staff_new(State(state): State<AppState>, visitor: Visitor, Path(patient): Path<String>) -> Response {
    let here = format!("/staff/patients/{patient}/message");
    let reader = match staff_reader(&visitor, &here) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let name = match patient_name(&state, &reader.actor, &patient).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    compose_page(
        &state,
        &visitor,
        &Compose {
            side: Side::CareTeam,
            action: &here,
            to: Some(&name),
        },
        &ComposeForm::default(),
        &Problems::default(),
        StatusCode::OK,
    )
}

pub async fn staff_send(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(patient): Path<String>,
    PortalForm(form): PortalForm<ComposeForm>,
) -> Response {
    let here = format!("/staff/patients/{patient}/message");
    let reader = match staff_reader(&visitor, &here) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let name = match patient_name(&state, &reader.actor, &patient).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let draft = Draft {
        category: &form.category,
        subject: &form.subject,
        body: &form.body,
    };
    match state.messages.compose(&reader.actor, &patient, &draft).await {
        Ok(stored) => Redirect::to(&format!("/staff/messages/{}", stored.id)).into_response(),
        Err(e) => compose_page(
            &state,
            &visitor,
            &Compose {
                side: Side::CareTeam,
                action: &here,
                to: Some(&name),
            },
            &form,
            &Problems::of(&e),
            render::status_of(&e),
        ),
    }
}
