//! The FHIR door: R4 REST at `<base>/fhir`. Handlers translate HTTP to calls on [`Records`](crate::records)
//! and back; they hold no rules and no SQL. The route table is in [`router`].

mod interactions;
mod metadata;
pub mod outcome;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The whole FHIR route table. Static segments (`_history`, `_search`, `metadata`) win over `{id}`.
pub fn router() -> Router<AppState> {
    use interactions as i;
    Router::new()
        .route("/metadata", get(metadata::capability_statement))
        .route("/", post(i::batch_or_transaction))
        .route("/_history", get(i::history_system))
        .route("/{rtype}", get(i::search_get).post(i::create))
        .route("/{rtype}/_search", post(i::search_post))
        .route("/{rtype}/_history", get(i::history_type))
        .route(
            "/{rtype}/{id}",
            get(i::read).put(i::update).delete(i::delete),
        )
        .route("/{rtype}/{id}/_history", get(i::history_instance))
        .route("/{rtype}/{id}/_history/{vid}", get(i::vread))
        .route(
            "/{rtype}/{id}/{operation}",
            get(i::instance_operation).post(i::instance_operation),
        )
        .method_not_allowed_fallback(i::method_not_allowed)
        .fallback(i::unknown_route)
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
