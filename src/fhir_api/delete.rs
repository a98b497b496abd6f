//! delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::request::{Caller, Result, check_type};
use crate::AppState;

pub async fn delete(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response> {
    check_type(&rtype)?;
    state.records.delete(&actor, &rtype, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
