//! search-type over GET and POST `_search`. `Prefer: handling=strict` turns ignored parameters into errors.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::fhir_json;
use super::request::{Caller, Result, check_type, query_pairs};
use crate::AppState;
use crate::access::Actor;
use crate::error::Error;

async fn search(
    state: &AppState,
    actor: &Actor,
    rtype: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Response> {
    check_type(rtype)?;
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=strict"));
    let bundle = state.records.search(actor, rtype, params, strict).await?;
    Ok(fhir_json(StatusCode::OK, bundle))
}

pub async fn search_get(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    search(&state, &actor, &rtype, &query_pairs(q), &headers).await
}

pub async fn search_post(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !media.starts_with("application/x-www-form-urlencoded") {
        return Err(Error::UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded".into()).into());
    }
    let mut params = query_pairs(q);
    params.extend(form_urlencoded::parse(&body).into_owned());
    search(&state, &actor, &rtype, &params, &headers).await
}
