//! The FHIR interactions: read, vread, create, update, delete, history, search, batch/transaction and
//! `$everything`. Each handler parses the request, makes one call into `records` and shapes the response.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::fhir_json;
use super::outcome::FhirError;
use crate::AppState;
use crate::access::Actor;
use crate::clock;
use crate::error::{Error, Issue};
use crate::fhir::types;
use crate::records::transaction::{Ids, parse_etag};
use crate::records::{Stored, Written};

type Result<T> = std::result::Result<T, FhirError>;

/// Until SMART bearer tokens land (issue 4), the FHIR API acts as the system.
fn actor() -> Actor {
    Actor::system("fhir-api")
}

/// A request body checked for media type and size; rejections answer as OperationOutcomes.
pub struct FhirBody(String);

impl<S: Send + Sync> FromRequest<S> for FhirBody {
    type Rejection = FhirError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let media = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = media.split(';').next().unwrap_or("").trim();
        if !matches!(
            essence,
            "application/fhir+json" | "application/json" | "application/json+fhir"
        ) {
            return Err(Error::UnsupportedMediaType(format!(
                "send application/fhir+json, not '{media}'"
            ))
            .into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge("the request body is larger than this server accepts".into())
            } else {
                Error::invalid(Issue::new("structure", rejection.body_text()))
            }
        })?;
        String::from_utf8(bytes.to_vec())
            .map(FhirBody)
            .map_err(|_| Error::invalid(Issue::new("structure", "the body is not UTF-8")).into())
    }
}

fn check_type(rtype: &str) -> std::result::Result<(), FhirError> {
    if types::is_supported(rtype) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "'{rtype}' is not a resource type this server supports"
        ))
        .into())
    }
}

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn resource_response(
    state: &AppState,
    status: StatusCode,
    r: &Stored,
    headers: &HeaderMap,
    location: bool,
) -> Response {
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = if prefer.contains("return=minimal") {
        String::new()
    } else if prefer.contains("return=OperationOutcome") {
        let info = Issue::new(
            "informational",
            format!(
                "{} {}/{} version {}",
                status.as_str(),
                r.rtype,
                r.id,
                r.version
            ),
        );
        crate::fhir::operation_outcome("information", &[info]).to_string()
    } else {
        r.body.clone()
    };
    let mut response = fhir_json(status, body);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", r.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&clock::http_date(r.last_updated)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let url = format!(
            "{}/{}/{}/_history/{}",
            state.records.base(),
            r.rtype,
            r.id,
            r.version
        );
        if let Ok(v) = HeaderValue::from_str(&url) {
            h.insert(header::LOCATION, v);
        }
    }
    response
}

fn written_response(state: &AppState, w: &Written, headers: &HeaderMap) -> Response {
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    resource_response(state, status, &w.resource, headers, true)
}

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
    Ok(resource_response(
        &state,
        StatusCode::OK,
        &r,
        &HeaderMap::new(),
        false,
    ))
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
    Ok(resource_response(
        &state,
        StatusCode::OK,
        &r,
        &HeaderMap::new(),
        false,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    check_type(&rtype)?;
    if let Some(criteria) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        let found = state.records.matches(&actor(), &rtype, criteria).await?;
        match found.as_slice() {
            [] => {}
            [one] => {
                return Ok(resource_response(
                    &state,
                    StatusCode::OK,
                    one,
                    &headers,
                    true,
                ));
            }
            _ => {
                return Err(Error::PreconditionFailed(
                    "If-None-Exist matches more than one resource".into(),
                )
                .into());
            }
        }
    }
    let w = state.records.create(&actor(), &rtype, &body).await?;
    Ok(written_response(&state, &w, &headers))
}

pub async fn update(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    check_type(&rtype)?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tag) => Some(
            parse_etag(tag)
                .ok_or_else(|| {
                    Error::invalid(Issue::new(
                        "value",
                        format!("If-Match '{tag}' is not an ETag like W/\"3\""),
                    ))
                })
                .map_err(FhirError)?,
        ),
        None => None,
    };
    let w = state
        .records
        .update(&actor(), &rtype, &id, &body, if_match)
        .await?;
    Ok(written_response(&state, &w, &headers))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response> {
    check_type(&rtype)?;
    state.records.delete(&actor(), &rtype, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn search_get(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_type(&rtype)?;
    let bundle = state
        .records
        .search(&actor(), &rtype, &query_pairs(q))
        .await?;
    Ok(fhir_json(StatusCode::OK, bundle))
}

pub async fn search_post(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    check_type(&rtype)?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !media.starts_with("application/x-www-form-urlencoded") {
        return Err(Error::UnsupportedMediaType(
            "POST _search takes application/x-www-form-urlencoded".into(),
        )
        .into());
    }
    let mut params = query_pairs(q);
    params.extend(form_urlencoded::parse(&body).into_owned());
    let bundle = state.records.search(&actor(), &rtype, &params).await?;
    Ok(fhir_json(StatusCode::OK, bundle))
}

pub async fn history_system(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Ok(fhir_json(
        StatusCode::OK,
        state
            .records
            .history(&actor(), None, None, &query_pairs(q))
            .await?,
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

pub async fn instance_operation(
    State(state): State<AppState>,
    Path((rtype, id, operation)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_type(&rtype)?;
    match (rtype.as_str(), operation.as_str()) {
        ("Patient", "$everything") => Ok(fhir_json(
            StatusCode::OK,
            state
                .records
                .everything(&actor(), &id, &query_pairs(q))
                .await?,
        )),
        _ => Err(Error::NotFound(format!(
            "{rtype}/{id}/{operation} is not an operation this server supports"
        ))
        .into()),
    }
}

pub async fn batch_or_transaction(
    State(state): State<AppState>,
    FhirBody(body): FhirBody,
) -> Result<Response> {
    Ok(fhir_json(
        StatusCode::OK,
        state
            .records
            .transaction(&actor(), &body, Ids::Assign)
            .await?,
    ))
}

pub async fn method_not_allowed() -> Response {
    FhirError(Error::MethodNotAllowed(
        "this interaction is not allowed on this URL".into(),
    ))
    .into_response()
}

pub async fn unknown_route() -> Response {
    FhirError(Error::NotFound("no FHIR interaction at this URL".into())).into_response()
}
