//! read and vread.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::{Caller, Result, check_type, resource_response};
use crate::AppState;
use crate::error::Error;
use crate::records::transaction::parse_etag;

pub async fn read(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    check_type(&rtype)?;
    let r = state.records.read(&actor, &rtype, &id).await?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag)
        == Some(r.version)
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    if rtype == "Binary" && !wants_fhir(&headers, query.as_deref()) {
        // A Binary asked for without a FHIR media type is served as itself (a PDF as a PDF).
        if let Some((content_type, bytes)) = crate::fhir::binary_content(&r.body) {
            let mut response = resource_response(&state, StatusCode::OK, &r, &HeaderMap::new(), false);
            let native =
                HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, native);
            // Stored content is untrusted: never let it run script on this origin (an uploaded HTML or SVG).
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
                ),
            );
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            *response.body_mut() = bytes.into();
            return Ok(response);
        }
    }
    Ok(resource_response(&state, StatusCode::OK, &r, &HeaderMap::new(), false))
}

/// Whether the client asked for FHIR JSON (`Accept` naming JSON, or `_format`), rather than native content.
fn wants_fhir(headers: &HeaderMap, query: Option<&str>) -> bool {
    let format = query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "_format"));
    format
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json"))
}

pub async fn vread(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((rtype, id, vid)): Path<(String, String, String)>,
) -> Result<Response> {
    check_type(&rtype)?;
    let version = vid
        .parse()
        .map_err(|_| Error::NotFound(format!("{rtype}/{id}/_history/{vid}")))?;
    let r = state.records.vread(&actor, &rtype, &id, version).await?;
    Ok(resource_response(&state, StatusCode::OK, &r, &HeaderMap::new(), false))
}
