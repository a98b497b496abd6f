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

/// The form of a single-use link page (registration, password reset).
#[derive(Deserialize, Default)]
pub struct LinkForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub birth_date: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub confirm: String,
}

/// What differs between the link pages: their words and where the form goes.
pub struct LinkPage {
    pub title: &'static str,
    pub action: &'static str,
    pub button: &'static str,
    /// The sentence above the form, naming the account.
    pub intro: fn(&Account) -> maud::Markup,
}

/// A link page's form: the date of birth (when the account has one), the new password and its confirmation.
fn link_form(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    form: &LinkForm,
    problems: &Problems,
    page: &LinkPage,
) -> maud::Markup {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: None,
        csrf: &visitor.csrf,
    };
    render::page(
        &chrome,
        page.title,
        html! {
            ((page.intro)(account))
            (render::general(problems))
            form.card method="post" action=(page.action) novalidate {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="token" value=(form.token);
                @if account.birth_date.is_some() {
                    (render::field(&Field { label: "Date of birth", name: "birth_date", kind: "date", value: &form.birth_date, autocomplete: "bday", error: problems.field("birth_date") }))
                }
                (render::new_password(problems, &form.password))
                button type="submit" { (page.button) }
            }
        },
    )
}

const REGISTER: LinkPage = LinkPage {
    title: "Complete Your Registration",
    action: "/register",
    button: "Complete Registration",
    intro: |account| {
        html! { p { "Welcome, " (account.display_name) ". Confirm your date of birth and choose a password for " strong { (account.email) } "." } }
    },
};

/// GET of a link page: its form while the link is open, else why it cannot be used.
pub async fn show_link(
    state: &AppState,
    visitor: &Visitor,
    token: String,
    purpose: TokenPurpose,
    page: &LinkPage,
) -> Response {
    match state.accounts.link(&token, purpose).await {
        Ok(LinkState::Open(account)) => {
            let form = LinkForm {
                token,
                ..LinkForm::default()
            };
            render::respond(
                StatusCode::OK,
                link_form(state, visitor, &account, &form, &Problems::default(), page),
            )
        }
        Ok(other) => closed_link(state, &other, purpose),
        Err(e) => render::failure(&e),
    }
}

/// POST of a link page: the account the link was redeemed for, or the page to answer with (the form again with
/// its problems while the link is open, else why it cannot be used).
pub async fn redeem(
    state: &AppState,
    visitor: &Visitor,
    form: &LinkForm,
    purpose: TokenPurpose,
    page: &LinkPage,
) -> Result<Account, Box<Response>> {
    let err = match state
        .accounts
        .redeem(
            purpose,
            &form.token,
            &form.birth_date,
            &form.password,
            &form.confirm,
            &visitor.address,
        )
        .await
    {
        Ok(account) => return Ok(account),
        Err(err) => err,
    };
    Err(Box::new(match state.accounts.link(&form.token, purpose).await {
        Ok(LinkState::Open(account)) if !matches!(err, Error::Gone(_)) => render::respond(
            render::status_of(&err),
            link_form(state, visitor, &account, form, &Problems::of(&err), page),
        ),
        Ok(link) => closed_link(state, &link, purpose),
        Err(e) => render::failure(&e),
    }))
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

pub async fn show(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LinkQuery>) -> Response {
    show_link(&state, &visitor, q.token, TokenPurpose::Invite, &REGISTER).await
}

pub async fn submit(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<LinkForm>,
) -> Response {
    match redeem(&state, &visitor, &form, TokenPurpose::Invite, &REGISTER).await {
        Ok(_) => Redirect::to("/login?registered=1").into_response(),
        Err(page) => *page,
    }
}
