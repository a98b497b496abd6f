//! history at system, type and instance level.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::fhir_json;
use super::request::{Result, actor, check_type, query_pairs};
use crate::AppState;

async fn history(state: &AppState, rtype: Option<&str>, id: Option<&str>, query: Option<String>) -> Result<Response> {
    if let Some(rtype) = rtype {
        check_type(rtype)?;
    }
    let bundle = state.records.history(&actor(), rtype, id, &query_pairs(query)).await?;
    Ok(fhir_json(StatusCode::OK, bundle))
}

pub async fn history_system(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response> {
    history(&state, None, None, q).await
}

pub async fn history_type(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    history(&state, Some(&rtype), None, q).await
}

pub async fn history_instance(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    history(&state, Some(&rtype), Some(&id), q).await
}
