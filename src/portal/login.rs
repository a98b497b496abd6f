//! The login pages: patients sign in with email, password and date of birth (`/login`), the care team with
//! email and password (`/staff/login`); and signing out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::render::{self, Chrome, Field, Problems};
use super::{PortalForm, Visitor, local_path};
use crate::AppState;
use crate::store::accounts::AccountKind;

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    registered: Option<String>,
    #[serde(default)]
    reset: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    next: String,
}

fn home_of(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Patient | AccountKind::Proxy => "/",
        AccountKind::Staff => "/staff",
    }
}

fn form_page(
    state: &AppState,
    visitor: &Visitor,
    kind: AccountKind,
    form: &LoginForm,
    problems: &Problems,
    notice: Option<&str>,
) -> maud::Markup {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: None,
        csrf: &visitor.csrf,
    };
    let (title, action) = match kind {
        AccountKind::Patient | AccountKind::Proxy => ("Log in", "/login"),
        AccountKind::Staff => ("Care team log in", "/staff/login"),
    };
    render::page(
        &chrome,
        title,
        html! {
            (render::notice(notice))
            (render::general(problems))
            form.card method="post" action=(action) novalidate {
                input type="hidden" name="csrf" value=(visitor.csrf);
                input type="hidden" name="next" value=(form.next);
                (render::field(&Field { label: "Email address", name: "email", kind: "email", value: &form.email, autocomplete: "username", error: problems.field("email") }))
                (render::field(&Field { label: "Password", name: "password", kind: "password", value: "", autocomplete: "current-password", error: problems.field("password") }))
                @if kind == AccountKind::Patient {
                    (render::field(&Field { label: "Date of birth", name: "birth_date", kind: "date", value: &form.birth_date, autocomplete: "bday", error: problems.field("birth_date") }))
                }
                button type="submit" { "Log in" }
            }
            p { a href="/forgot-password" { "Forgot password" } }
            @if kind == AccountKind::Patient {
                p.hint { "New to the portal? Your practice sends you an invitation email with a link to complete your registration." }
            }
        },
    )
}

async fn show(state: AppState, visitor: Visitor, kind: AccountKind, query: LoginQuery) -> Response {
    if let Some(s) = &visitor.signed_in
        && s.account.kind == kind
    {
        return Redirect::to(local_path(&query.next).unwrap_or(home_of(kind))).into_response();
    }
    let notice = if query.registered.is_some() {
        Some("Your registration is complete. Log in with your email address, password and date of birth.")
    } else if query.reset.is_some() {
        Some("Your password was changed. Log in with your new password.")
    } else if query.signed_out.is_some() {
        Some("You have logged out.")
    } else {
        None
    };
    let form = LoginForm {
        next: query.next,
        ..LoginForm::default()
    };
    render::respond(
        StatusCode::OK,
        form_page(&state, &visitor, kind, &form, &Problems::default(), notice),
    )
}

async fn submit(state: AppState, visitor: Visitor, kind: AccountKind, form: LoginForm) -> Response {
    let birth_date = (kind == AccountKind::Patient).then_some(form.birth_date.as_str());
    match state
        .accounts
        .sign_in(kind, &form.email, &form.password, birth_date, &visitor.address)
        .await
    {
        Ok(session) => {
            // A session already in this browser ends: one person, one session cookie.
            if let Some(old) = &visitor.signed_in {
                let _ = state.accounts.sign_out(old, &visitor.address).await;
            }
            let to = local_path(&form.next).unwrap_or(home_of(session.account.kind));
            visitor.signed_in_redirect(&session.cookie, to)
        }
        Err(err) => render::respond(
            render::status_of(&err),
            form_page(&state, &visitor, kind, &form, &Problems::of(&err), None),
        ),
    }
}

pub async fn show_patient(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    show(state, visitor, AccountKind::Patient, q).await
}

pub async fn submit_patient(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<LoginForm>,
) -> Response {
    submit(state, visitor, AccountKind::Patient, form).await
}

pub async fn show_staff(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    show(state, visitor, AccountKind::Staff, q).await
}

pub async fn submit_staff(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<LoginForm>,
) -> Response {
    submit(state, visitor, AccountKind::Staff, form).await
}

#[derive(Deserialize)]
pub struct SignOutForm {}

/// Ends the session on the server (the cookie alone no longer opens anything) and forgets the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(_): PortalForm<SignOutForm>,
) -> Response {
    let to = match &visitor.signed_in {
        Some(s) => {
            if let Err(e) = state.accounts.sign_out(s, &visitor.address).await {
                return render::failure(&e);
            }
            match s.account.kind {
                AccountKind::Patient | AccountKind::Proxy => "/login?signed_out=1",
                AccountKind::Staff => "/staff/login?signed_out=1",
            }
        }
        None => "/login",
    };
    visitor.signed_out_redirect(to)
}
