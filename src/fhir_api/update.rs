//! update (PUT), including create-on-update and `If-Match`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::request::{Caller, FhirBody, Result, check_type, written_response};
use crate::AppState;
use crate::error::{Error, Issue};
use crate::records::transaction::parse_etag;

pub async fn update(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    check_type(&rtype)?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tag) => Some(parse_etag(tag).ok_or_else(|| {
            Error::invalid(Issue::new(
                "value",
                format!("If-Match '{tag}' is not an ETag like W/\"3\""),
            ))
        })?),
        None => None,
    };
    let w = state.records.update(&actor, &rtype, &id, &body, if_match).await?;
    Ok(written_response(&state, &w, &headers))
}
