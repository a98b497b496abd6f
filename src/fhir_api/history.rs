//! history at system, type and instance level.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::fhir_json;
use super::request::{Result, actor, check_type, query_pairs};
use crate::AppState;

pub async fn history_system(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response> {
    Ok(fhir_json(
        StatusCode::OK,
        state.records.history(&actor(), None, None, &query_pairs(q)).await?,
    ))
}

pub async fn history_type(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_type(&rtype)?;
    Ok(fhir_json(
        StatusCode::OK,
        state
            .records
            .history(&actor(), Some(&rtype), None, &query_pairs(q))
            .await?,
    ))
}

pub async fn history_instance(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_type(&rtype)?;
    Ok(fhir_json(
        StatusCode::OK,
        state
            .records
            .history(&actor(), Some(&rtype), Some(&id), &query_pairs(q))
            .await?,
    ))
}
