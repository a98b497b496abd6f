//! `/`: where a signed-in patient lands. Staff go to their page, everyone else to the login page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::Visitor;
use super::render::{self, Chrome};
use crate::AppState;
use crate::store::accounts::AccountKind;

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    let Some(signed_in) = &visitor.signed_in else {
        return Redirect::to("/login").into_response();
    };
    if signed_in.account.kind == AccountKind::Staff {
        return Redirect::to("/staff").into_response();
    }
    let chrome = Chrome {
        practice: &state.config.practice_name,
        user: Some(&signed_in.account),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page(
            &chrome,
            &format!("Welcome, {}", signed_in.account.display_name),
            html! {
                p { "You are logged in to the " (state.config.practice_name) " patient portal as " strong { (signed_in.account.email) } "." }
            },
        ),
    )
}
