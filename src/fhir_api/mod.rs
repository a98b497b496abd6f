//! The FHIR door: R4 REST at `<base>/fhir`. Handlers translate HTTP to calls on [`Records`](crate::records)
//! and back; they hold no rules and no SQL. The route table is in [`router`].

mod create;
mod delete;
mod history;
mod metadata;
mod operation;
pub mod outcome;
mod read;
mod request;
mod search;
mod transaction;
mod update;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

pub use metadata::statement as capability_statement;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The whole FHIR route table. Static segments (`_history`, `_search`, `metadata`) win over `{id}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata::capability_statement))
        .route(
            "/.well-known/smart-configuration",
            get(crate::smart::smart_configuration),
        )
        .route(
            "/.well-known/openid-configuration",
            get(crate::smart::openid_configuration),
        )
        .route("/", post(transaction::batch_or_transaction))
        .route("/_history", get(history::history_system))
        .route("/{rtype}", get(search::search_get).post(create::create))
        .route("/{rtype}/_search", post(search::search_post))
        .route("/{rtype}/_history", get(history::history_type))
        .route(
            "/{rtype}/{id}",
            get(read::read).put(update::update).delete(delete::delete),
        )
        .route("/{rtype}/{id}/_history", get(history::history_instance))
        .route("/{rtype}/{id}/_history/{vid}", get(read::vread))
        .route(
            "/{rtype}/{id}/{operation}",
            get(operation::instance_operation).post(operation::instance_operation),
        )
        .method_not_allowed_fallback(request::method_not_allowed)
        .fallback(request::unknown_route)
        .layer(axum::middleware::from_fn(request::json_only))
}

/// A FHIR JSON response.
pub fn fhir_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body,
    )
        .into_response()
}
