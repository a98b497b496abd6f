//! "Forgot password": asking for a reset link (the same answer whether or not the account exists), and the
//! page the link opens to choose a new password.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::register::{LinkForm, LinkPage, LinkQuery, redeem, show_link};
use super::render::{self, Chrome, Field, Problems};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::accounts::RESET_VALID_MINUTES;
use crate::store::accounts::{AccountKind, TokenPurpose};

#[derive(Deserialize, Default)]
pub struct RequestForm {
    #[serde(default)]
    email: String,
}

fn request_page(state: &AppState, visitor: &Visitor, email: &str, problems: &Problems, sent: bool) -> maud::Markup {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: None,
        csrf: &visitor.csrf,
    };
    render::page(
        &chrome,
        "Forgot password",
        html! {
            @if sent {
                p.notice role="status" {
                    "If a portal account uses " strong { (email) } ", we have sent it an email with a link to choose a new password. The link works once, for " (RESET_VALID_MINUTES) " minutes."
                }
                p { a href="/login" { "Back to log in" } }
            } @else {
                p { "Enter the email address of your portal account. We will send you a link to choose a new password." }
                (render::general(problems))
                form.card method="post" action="/forgot-password" novalidate {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    (render::field(&Field { label: "Email address", name: "email", kind: "email", value: email, autocomplete: "username", error: problems.field("email") }))
                    button type="submit" { "Send reset link" }
                }
                p { a href="/login" { "Back to log in" } }
            }
        },
    )
}

pub async fn show_request(State(state): State<AppState>, visitor: Visitor) -> Response {
    render::respond(
        StatusCode::OK,
        request_page(&state, &visitor, "", &Problems::default(), false),
    )
}

pub async fn submit_request(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<RequestForm>,
) -> Response {
    match state.accounts.request_reset(&form.email, &visitor.address).await {
        Ok(()) => render::respond(
            StatusCode::OK,
            request_page(&state, &visitor, form.email.trim(), &Problems::default(), true),
        ),
        Err(err) => render::respond(
            render::status_of(&err),
            request_page(&state, &visitor, &form.email, &Problems::of(&err), false),
        ),
    }
}

const RESET: LinkPage = LinkPage {
    title: "Choose a new password",
    action: "/reset-password",
    button: "Set new password",
    intro: |account| {
        html! { p { "Choose a new password for " strong { (account.email) } ". Signing in anywhere else ends when you do." } }
    },
};

pub async fn show_reset(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LinkQuery>) -> Response {
    show_link(&state, &visitor, q.token, TokenPurpose::Reset, &RESET).await
}

pub async fn submit_reset(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<LinkForm>,
) -> Response {
    match redeem(&state, &visitor, &form, TokenPurpose::Reset, &RESET).await {
        Ok(account) => visitor.signed_out_redirect(match account.kind {
            AccountKind::Patient | AccountKind::Proxy => "/login?reset=1",
            AccountKind::Staff => "/staff/login?reset=1",
        }),
        Err(page) => *page,
    }
}
