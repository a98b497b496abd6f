//! Instance operations: `Patient/{id}/$everything`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::fhir_json;
use super::request::{Caller, Result, check_type, query_pairs};
use crate::AppState;
use crate::error::Error;

pub async fn instance_operation(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id, operation)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_type(&rtype)?;
    match (rtype.as_str(), operation.as_str()) {
        ("Patient", "$everything") => Ok(fhir_json(
            StatusCode::OK,
            state.records.everything(&actor, &id, &query_pairs(q)).await?,
        )),
        _ => Err(Error::NotFound(format!(
            "{rtype}/{id}/{operation} is not an operation this server supports"
        ))
        .into()),
    }
}
