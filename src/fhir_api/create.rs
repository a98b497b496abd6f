//! create, including conditional create (`If-None-Exist`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::request::{Caller, FhirBody, Result, check_type, resource_response, written_response};
use crate::AppState;
use crate::error::Error;

pub async fn create(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    check_type(&rtype)?;
    if let Some(criteria) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        let found = state.records.matches(&actor, &rtype, criteria).await?;
        match found.as_slice() {
            [] => {}
            [one] => {
                return Ok(resource_response(&state, StatusCode::OK, one, &headers, true));
            }
            _ => {
                return Err(Error::PreconditionFailed("If-None-Exist matches more than one resource".into()).into());
            }
        }
    }
    let w = state.records.create(&actor, &rtype, &body).await?;
    Ok(written_response(&state, &w, &headers))
}
