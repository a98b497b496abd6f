//! What every FHIR interaction shares: the acting party, the checked request body, and the resource response
//! with its ETag, Last-Modified and Location headers.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::fhir_json;
use super::outcome::FhirError;
use crate::AppState;
use crate::access::Actor;
use crate::clock;
use crate::error::{Error, Issue};
use crate::fhir::types;
use crate::records::{Stored, Written};

pub type Result<T> = std::result::Result<T, FhirError>;

/// The party behind a FHIR request: the actor its bearer token stands for. No token, or one that is unknown,
/// expired or revoked, is answered 401 with a `WWW-Authenticate: Bearer` challenge; cookies are never read.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let challenge = |error: Option<&str>, why: &str| {
            let value = match error {
                Some(e) => format!("Bearer realm=\"CareSpace\", error=\"{e}\", error_description=\"{why}\""),
                None => "Bearer realm=\"CareSpace\"".to_owned(),
            };
            let mut response = FhirError(Error::Unauthenticated(why.to_owned())).into_response();
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            response
        };
        let Some(token) = presented else {
            return Err(challenge(
                None,
                "this FHIR server needs an access token (Authorization: Bearer)",
            ));
        };
        match state.oauth.bearer(token).await {
            Ok(Some(actor)) => Ok(Caller(actor)),
            Ok(None) => Err(challenge(
                Some("invalid_token"),
                "the access token is unknown, expired or revoked",
            )),
            Err(e) => Err(FhirError(e).into_response()),
        }
    }
}

/// A request body checked for media type and size; rejections answer as OperationOutcomes.
pub struct FhirBody(pub String);

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
            return Err(Error::UnsupportedMediaType(format!("send application/fhir+json, not '{media}'")).into());
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

pub fn check_type(rtype: &str) -> std::result::Result<(), FhirError> {
    if types::is_supported(rtype) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("'{rtype}' is not a resource type this server supports")).into())
    }
}

pub fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub fn resource_response(
    state: &AppState,
    status: StatusCode,
    r: &Stored,
    headers: &HeaderMap,
    location: bool,
) -> Response {
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = if prefer.contains("return=minimal") {
        String::new()
    } else if prefer.contains("return=OperationOutcome") {
        let info = Issue::new(
            "informational",
            format!("{} {}/{} version {}", status.as_str(), r.rtype, r.id, r.version),
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
        let url = format!("{}/{}/{}/_history/{}", state.records.base(), r.rtype, r.id, r.version);
        if let Ok(v) = HeaderValue::from_str(&url) {
            h.insert(header::LOCATION, v);
        }
    }
    response
}

pub fn written_response(state: &AppState, w: &Written, headers: &HeaderMap) -> Response {
    let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    resource_response(state, status, &w.resource, headers, true)
}

/// This server speaks FHIR JSON only: a request that accepts nothing else (XML, turtle) gets 406.
pub async fn json_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*")
        .to_ascii_lowercase();
    let format = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v.to_ascii_lowercase())
    });
    let refuses_json = |s: &str| {
        (s.contains("xml") || s.contains("turtle") || s == "ttl") && !s.contains("json") && !s.contains("*/*")
    };
    if format.as_deref().is_some_and(refuses_json) || refuses_json(&accept) {
        let err = Error::NotAcceptable("this server answers in FHIR JSON only (application/fhir+json)".into());
        return FhirError(err).into_response();
    }
    next.run(req).await
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
