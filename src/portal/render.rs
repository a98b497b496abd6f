//! How the portal looks and how domain errors are shown (E1):
//!
//! | Error | shown as |
//! |---|---|
//! | Invalid (with a field) | the message next to that field, status 422 |
//! | Unauthenticated, TooManyRequests | a message above the form, status 401 / 429 |
//! | Conflict, Forbidden, NotFound, Gone | a message above the form or a page with that status |
//! | Store | a page "something went wrong" (the cause is logged, not shown), status 500 |

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::AppState;
use crate::accounts::SignedIn;
use crate::accounts::password;
use crate::error::Error;
use crate::store::accounts::AccountKind;

/// What frames every page: the practice, who is signed in (and whose record is open), the CSRF token for
/// the sign-out form.
pub struct Chrome<'a> {
    pub practice: &'a str,
    pub signed_in: Option<&'a SignedIn>,
    pub csrf: &'a str,
}

/// The patient's tabs: label and path.
const TABS: &[(&str, &str)] = &[("Health", "/"), ("Messages", "/messages"), ("Resources", "/resources")];

pub fn page(chrome: &Chrome<'_>, title: &str, body: Markup) -> Markup {
    page_in_tab(chrome, "", title, body)
}

/// A page under one of the patient's tabs (`tab` is its label; marked as the current one).
pub fn page_in_tab(chrome: &Chrome<'_>, tab: &str, title: &str, body: Markup) -> Markup {
    let user = chrome.signed_in.map(|s| &s.account);
    let patient = chrome
        .signed_in
        .is_some_and(|s| s.account.kind != AccountKind::Staff && s.has_record());
    // Only the patient decides who else sees their record.
    let manages = chrome
        .signed_in
        .is_some_and(|s| s.account.kind == AccountKind::Patient && s.opened.is_none());
    let opened = chrome.signed_in.and_then(|s| s.opened.as_ref());
    let can_switch = chrome.signed_in.is_some_and(|s| s.can_switch);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (chrome.practice) }
                link rel="stylesheet" href="/assets/portal.css";
                script src="/assets/portal.js" defer {}
            }
            body {
                header.site {
                    a.practice href="/" { (chrome.practice) }
                    @if patient {
                        nav.tabs aria-label="Sections" {
                            @for (label, href) in TABS {
                                a href=(href) aria-current=[(*label == tab).then_some("page")] { (label) }
                            }
                        }
                    }
                    @if let Some(user) = user {
                        details.user-menu {
                            summary { (user.display_name) }
                            ul {
                                @if manages { li { a href="/manage-users" { "Manage Users" } } }
                                @if can_switch { li { a href="/records" { "Switch record" } } }
                                li { a href="/connected-apps" { "Connected apps" } }
                                li {
                                    form method="post" action="/logout" {
                                        input type="hidden" name="csrf" value=(chrome.csrf);
                                        button type="submit" { "Log out" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(grant) = opened {
                    p.viewing role="status" {
                        "You are viewing the record of " strong { (grant.patient_name) } "."
                        @if can_switch { " " a href="/records" { "Switch record" } }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// Problems to show on a form: messages per field and one for the whole form.
#[derive(Default)]
pub struct Problems {
    fields: Vec<(String, String)>,
    pub general: Option<String>,
}

impl Problems {
    pub fn of(err: &Error) -> Problems {
        let mut p = Problems::default();
        match err {
            Error::Invalid(issues) | Error::Unprocessable(issues) => {
                for issue in issues {
                    match &issue.expression {
                        Some(field) => p.fields.push((field.clone(), issue.diagnostics.clone())),
                        None => p.general = Some(issue.diagnostics.clone()),
                    }
                }
            }
            Error::Store(cause) => {
                tracing::error!(%cause, "portal request failed");
                p.general = Some("Something went wrong on our side. Please try again in a moment.".into());
            }
            Error::Unauthenticated(m)
            | Error::TooManyRequests(m)
            | Error::Conflict(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Gone(m) => p.general = Some(m.clone()),
            other => p.general = Some(other.to_string()),
        }
        p
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(f, _)| f == name).map(|(_, m)| m.as_str())
    }
}

/// The status a form answered with an error gets.
pub fn status_of(err: &Error) -> StatusCode {
    match err {
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Gone(_) => StatusCode::GONE,
        Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// One labelled input with its error (if any) right below it.
pub struct Field<'a> {
    pub label: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub autocomplete: &'a str,
    pub error: Option<&'a str>,
}

pub fn field(f: &Field<'_>) -> Markup {
    let error_id = format!("{}-error", f.name);
    html! {
        div.field.invalid[f.error.is_some()] {
            label for=(f.name) { (f.label) }
            input id=(f.name) name=(f.name) type=(f.kind) value=(f.value) autocomplete=(f.autocomplete) required
                aria-invalid=[f.error.map(|_| "true")] aria-describedby=[f.error.map(|_| error_id.as_str())];
            @if let Some(e) = f.error {
                p.error id=(error_id) { (e) }
            }
        }
    }
}

/// A new-password input with the policy's checklist, marked against what was typed (by the server on
/// submit, live by the page's script), and its confirmation.
pub fn new_password(problems: &Problems, typed: &str) -> Markup {
    let error = problems.field("password");
    html! {
        div.field.invalid[error.is_some()] {
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="new-password" required
                data-password-rules="password-rules" aria-invalid=[error.map(|_| "true")]
                aria-describedby=(if error.is_some() { "password-rules password-error" } else { "password-rules" });
            ul #password-rules .rules aria-live="polite" {
                @for rule in password::RULES {
                    @let state = match (typed.is_empty(), rule.is_met(typed)) {
                        (true, _) => None,
                        (false, true) => Some("met"),
                        (false, false) => Some("unmet"),
                    };
                    li class=[state] data-pattern=(rule.pattern) { (rule.text) }
                }
            }
            @if let Some(e) = error {
                p.error #password-error role="alert" { (e) }
            }
        }
        (field(&Field { label: "Confirm password", name: "confirm", kind: "password", value: "", autocomplete: "new-password", error: problems.field("confirm") }))
    }
}

/// "Previous page · Page n of m · Next page" for a paged list; `link` makes a page's address.
pub fn pager(page: i64, pages: i64, link: impl Fn(i64) -> String) -> Markup {
    html! {
        @if pages > 1 {
            nav.paging aria-label="Pages" {
                @if page > 1 { a href=(link(page - 1)) rel="prev" { "Previous page" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a href=(link(page + 1)) rel="next" { "Next page" } }
            }
        }
    }
}

/// The message for the whole form, if any.
pub fn general(problems: &Problems) -> Markup {
    html! {
        @if let Some(m) = &problems.general {
            p.alert role="alert" { (m) }
        }
    }
}

pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text {
            p.notice role="status" { (t) }
        }
    }
}

pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A page with a title and one message (expired links, refused forms).
pub fn message_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: None,
        csrf: "",
    };
    respond(
        status,
        page(
            &chrome,
            title,
            html! { p { (message) } p { a href="/login" { "Go to the login page" } } },
        ),
    )
}

/// A failure outside any form (the store is down): logged, and a plain page.
pub fn failure(err: &Error) -> Response {
    let status = status_of(err);
    if status.is_server_error() {
        tracing::error!(error = %err, "portal request failed");
    }
    let text = if status.is_server_error() {
        "Something went wrong on our side. Please try again in a moment.".to_owned()
    } else {
        Problems::of(err).general.unwrap_or_default()
    };
    respond(
        status,
        html! { (DOCTYPE) html lang="en" { head { meta charset="utf-8"; title { "Error" } } body { p { (text) } } } },
    )
}
