//! history at system, type and instance level.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::fhir_json;
use super::request::{Caller, Result, check_type, query_pairs};
use crate::AppState;
use crate::access::Actor;

async fn history(
    state: &AppState,
    actor: &Actor,
    rtype: Option<&str>,
    id: Option<&str>,
    query: Option<String>,
) -> Result<Response> {
    if let Some(rtype) = rtype {
        check_type(rtype)?;
    }
    let bundle = state.records.history(actor, rtype, id, &query_pairs(query)).await?;
    Ok(fhir_json(StatusCode::OK, bundle))
}

pub async fn history_system(
    State(state): State<AppState>,
    Caller(actor): Caller,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    history(&state, &actor, None, None, q).await
}

pub async fn history_type(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    history(&state, &actor, Some(&rtype), None, q).await
}

pub async fn history_instance(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    history(&state, &actor, Some(&rtype), Some(&id), q).await
}
