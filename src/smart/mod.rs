//! The OAuth 2 / SMART door at `<base>/oauth/…`: the token endpoint, introspection (RFC 7662) and revocation
//! (RFC 7009). Requests are forms; answers are JSON with `Cache-Control: no-store`; errors use the RFC 6749
//! codes. Rules live in `oauth/`.

mod token;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::AppState;
use crate::oauth::Refusal;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/oauth/introspect", post(token::introspect))
        .route("/oauth/revoke", post(token::revoke))
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
