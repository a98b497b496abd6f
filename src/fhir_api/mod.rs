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

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::routes::Routes;

pub use metadata::statement as capability_statement;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The whole FHIR route table. Static segments (`_history`, `_search`, `metadata`) win over `{id}`.
pub fn routes() -> Routes {
    Routes::new()
        .get("/metadata", metadata::capability_statement)
        .get("/.well-known/smart-configuration", crate::smart::smart_configuration)
        .get("/.well-known/openid-configuration", crate::smart::openid_configuration)
        .post("/", transaction::batch_or_transaction)
        .get("/_history", history::history_system)
        .get("/{rtype}", search::search_get)
        .post("/{rtype}", create::create)
        .post("/{rtype}/_search", search::search_post)
        .get("/{rtype}/_history", history::history_type)
        .get("/{rtype}/{id}", read::read)
        .put("/{rtype}/{id}", update::update)
        .delete("/{rtype}/{id}", delete::delete)
        .get("/{rtype}/{id}/_history", history::history_instance)
        .get("/{rtype}/{id}/_history/{vid}", read::vread)
        .get("/{rtype}/{id}/{operation}", operation::instance_operation)
        .post("/{rtype}/{id}/{operation}", operation::instance_operation)
        .map(|fhir| {
            fhir.method_not_allowed_fallback(request::method_not_allowed)
                .fallback(request::unknown_route)
                .layer(axum::middleware::from_fn(request::json_only))
        })
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
