//! The Resources tab: the practice's list of trusted organisations (configuration; NCI, the American Cancer
//! Society and CancerCare by default).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::Visitor;
use super::render::{self, Chrome};
use crate::AppState;

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page_in_tab(
            &chrome,
            "Resources",
            "Resources",
            html! {
                p { "Trusted organisations with information and support:" }
                ul.links {
                    @for r in &state.config.resources {
                        li {
                            a href=(r.url) rel="noopener" { (r.name) }
                            br;
                            (r.description)
                        }
                    }
                }
            },
        ),
    )
}
