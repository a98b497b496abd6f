//! The OAuth 2 / SMART door at `<base>/oauth/…`: the token endpoint, introspection (RFC 7662) and revocation
//! (RFC 7009). Requests are forms; answers are JSON with `Cache-Control: no-store`; errors use the RFC 6749
//! codes. Rules live in `oauth/`.

mod authorize;
mod token;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::AppState;
use crate::oauth::Refusal;
use crate::routes::Routes;

pub fn routes(state: &AppState) -> Routes {
    let consent = Routes::new()
        .get("/oauth/authorize", authorize::show)
        .post("/oauth/authorize", authorize::decide)
        .map(|page| crate::portal::with_page_layers(page, state));
    let machine = Routes::new()
        .post("/oauth/token", token::token)
        .post("/oauth/introspect", token::introspect)
        .post("/oauth/revoke", token::revoke)
        .get("/oauth/jwks", jwks)
        .get("/.well-known/openid-configuration", openid_configuration)
        .map(|r| r.layer(cors()));
    consent.merge(machine)
}

/// Browser apps call the token endpoint, discovery and the FHIR API from their own origin. No cookie is ever
/// read on those routes, so any origin may call them.
pub fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static("prefer"),
            header::HeaderName::from_static("if-none-exist"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LOCATION,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

pub async fn smart_configuration(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    json_answer(state.oauth.smart_configuration())
}

pub async fn openid_configuration(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    json_answer(state.oauth.openid_configuration())
}

async fn jwks(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    json_answer(state.oauth.jwks())
}

fn json_answer(body: Value) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

/// A JSON answer that no cache keeps (tokens must never be stored on the way).
fn no_store(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        body.to_string(),
    )
        .into_response()
}

/// An RFC 6749 error answer: 401 (with a Basic challenge) for client authentication, 400 otherwise.
fn refusal(r: &Refusal) -> Response {
    let status = match r.error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = no_store(status, json!({ "error": r.error, "error_description": r.description }));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"CareSpace\""),
        );
    }
    response
}

/// HTTP Basic client credentials (`client_secret_basic`), form-urlencoded inside as RFC 6749 2.3.1 says.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .ok()
    };
    Some((unescape(id)?, unescape(secret)?))
}
