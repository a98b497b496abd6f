//! read and vread.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::{Result, actor, check_type, resource_response};
use crate::AppState;
use crate::error::Error;
use crate::records::transaction::parse_etag;

pub async fn read(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    check_type(&rtype)?;
    let r = state.records.read(&actor(), &rtype, &id).await?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag)
        == Some(r.version)
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(resource_response(&state, StatusCode::OK, &r, &HeaderMap::new(), false))
}

pub async fn vread(
    State(state): State<AppState>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
) -> Result<Response> {
    check_type(&rtype)?;
    let version = vid
        .parse()
        .map_err(|_| Error::NotFound(format!("{rtype}/{id}/_history/{vid}")))?;
    let r = state.records.vread(&actor(), &rtype, &id, version).await?;
    Ok(resource_response(&state, StatusCode::OK, &r, &HeaderMap::new(), false))
}
