//! "Complete Your Registration": the page an invitation link opens. The patient confirms their date of birth
//! and chooses a password; then they land on the login page.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::render::{self, Chrome, Field, Problems};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::accounts::LinkState;
use crate::error::Error;
use crate::store::accounts::{Account, TokenPurpose};

#[derive(Deserialize, Default)]
pub struct LinkQuery {
    #[serde(default)]
    pub token: String,
}

#[derive(Deserialize, Default)]
pub struct RegisterForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// The page for a link that cannot be used, with what to do instead.
pub fn closed_link(state: &AppState, link: &LinkState, purpose: TokenPurpose) -> Response {
    let (status, title, message) = match (purpose, link) {
        (TokenPurpose::Invite, LinkState::Expired) => (
            StatusCode::GONE,
            "This invitation has expired",
            "Invitation links work for 4 days. Ask the practice to resend it: you will get a new email with a new link.",
        ),
        (TokenPurpose::Invite, LinkState::Used) => (
            StatusCode::GONE,
            "This invitation has already been used",
            "Your registration is complete. Log in with your email address, password and date of birth; if you forgot the password, use \"Forgot password\" on the login page.",
        ),
        (TokenPurpose::Invite, LinkState::Replaced) => (
            StatusCode::GONE,
            "This invitation was replaced",
            "The practice sent you a newer invitation. Use the link in the newest email, or ask the practice to resend it.",
        ),
        (TokenPurpose::Invite, _) => (
            StatusCode::NOT_FOUND,
            "This invitation link is not valid",
            "Check that you opened the whole link from the email, or ask the practice to resend the invitation.",
        ),
        (TokenPurpose::Reset, LinkState::Expired) => (
            StatusCode::GONE,
            "This password reset link has expired",
            "Reset links work for 60 minutes. Ask for a new one with \"Forgot password\" on the login page.",
        ),
        (TokenPurpose::Reset, LinkState::Used | LinkState::Replaced) => (
            StatusCode::GONE,
            "This password reset link can no longer be used",
            "Each link works once, and only the newest one works. Ask for a new one with \"Forgot password\" on the login page.",
        ),
        (TokenPurpose::Reset, _) => (
            StatusCode::NOT_FOUND,
            "This password reset link is not valid",
            "Check that you opened the whole link from the email, or ask for a new one with \"Forgot password\".",
        ),
    };
    render::message_page(state, status, title, message)
}

fn form_page(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    form: &RegisterForm,
    problems: &Problems,
) -> maud::Markup {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        user: None,
        csrf: &visitor.csrf,
    };
    render::page(
        &chrome,
        "Complete Your Registration",
        html! {
            p { "Welcome, " (account.display_name) ". Confirm your date of birth and choose a password for " strong { (account.email) } "." }
            (render::general(problems))
            form.card method="post" action="/register" novalidate {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="token" value=(form.token);
                (render::field(&Field { label: "Date of birth", name: "birth_date", kind: "date", value: &form.birth_date, autocomplete: "bday", error: problems.field("birth_date") }))
                (render::new_password(problems, &form.password))
                button type="submit" { "Complete Registration" }
            }
        },
    )
}

pub async fn show(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LinkQuery>) -> Response {
    match state.accounts.link(&q.token, TokenPurpose::Invite).await {
        Ok(LinkState::Open(account)) => {
            let form = RegisterForm {
                token: q.token,
                ..RegisterForm::default()
            };
            render::respond(
                StatusCode::OK,
                form_page(&state, &visitor, &account, &form, &Problems::default()),
            )
        }
        Ok(other) => closed_link(&state, &other, TokenPurpose::Invite),
        Err(e) => render::failure(&e),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<RegisterForm>,
) -> Response {
    let result = state
        .accounts
        .register(
            &form.token,
            &form.birth_date,
            &form.password,
            &form.confirm,
            &visitor.address,
        )
        .await;
    match result {
        Ok(_) => Redirect::to("/login?registered=1").into_response(),
        Err(err) => match state.accounts.link(&form.token, TokenPurpose::Invite).await {
            Ok(LinkState::Open(account)) if !matches!(err, Error::Gone(_)) => render::respond(
                render::status_of(&err),
                form_page(&state, &visitor, &account, &form, &Problems::of(&err)),
            ),
            Ok(link) => closed_link(&state, &link, TokenPurpose::Invite),
            Err(e) => render::failure(&e),
        },
    }
}
