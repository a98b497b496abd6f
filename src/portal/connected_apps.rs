//! "Connected apps": the apps the signed-in person has authorized that still hold access, and "Remove
//! access", which ends every token the app holds on the next request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::render::{self, Chrome};
use super::{PortalForm, Visitor};
use crate::AppState;
use crate::access::audit::AccountAction;
use crate::clock;

#[derive(Deserialize)]
pub struct RemoveForm {
    client_id: String,
}

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    let Some(signed_in) = &visitor.signed_in else {
        return Redirect::to("/login?next=/connected-apps").into_response();
    };
    let apps = match state.oauth.connected_apps(&signed_in.account.id).await {
        Ok(a) => a,
        Err(e) => return render::failure(&e),
    };
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: Some(signed_in),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page(
            &chrome,
            "Connected apps",
            html! {
                @if apps.is_empty() {
                    p { "No app has access to your record." }
                } @else {
                    p { "These apps can use your record with the permissions you gave them." }
                    ul.apps {
                        @for app in &apps {
                            li.card {
                                strong { (app.name) }
                                br;
                                small { "Connected since " (clock::instant(app.since)[..10]) " · " (app.scope) }
                                form method="post" action="/connected-apps/remove" {
                                    input type="hidden" name="csrf" value=(visitor.csrf);
                                    input type="hidden" name="client_id" value=(app.client_id);
                                    button type="submit" { "Remove access" }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn remove(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<RemoveForm>,
) -> Response {
    let Some(signed_in) = &visitor.signed_in else {
        return Redirect::to("/login?next=/connected-apps").into_response();
    };
    match state.oauth.disconnect(&signed_in.account.id, &form.client_id).await {
        Ok(()) => {
            let what = format!("app {}", form.client_id);
            visitor.audit(&state, AccountAction::AppDisconnected, None, &what).await;
            Redirect::to("/connected-apps").into_response()
        }
        Err(e) => render::failure(&e),
    }
}
