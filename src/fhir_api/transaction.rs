//! batch and transaction Bundles posted to the base.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::fhir_json;
use super::request::{Caller, FhirBody, Result};
use crate::AppState;
use crate::records::transaction::Ids;

pub async fn batch_or_transaction(
    State(state): State<AppState>,
    Caller(actor): Caller,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    Ok(fhir_json(
        StatusCode::OK,
        state.records.transaction(&actor, &body, Ids::Assign).await?,
    ))
}
