//! `POST /oauth/token` (authorization_code, refresh_token, client_credentials), `/oauth/introspect` and
//! `/oauth/revoke`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{basic_credentials, no_store, refusal};
use crate::AppState;
use crate::oauth::{ClientCredentials, Refusal};
use crate::store::oauth::ClientRow;

#[derive(Deserialize, Default)]
pub struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(flatten)]
    client: ClientCredentials,
}

#[derive(Deserialize, Default)]
pub struct TokenParam {
    #[serde(default)]
    token: String,
    #[serde(flatten)]
    client: ClientCredentials,
}

/// Reads a form body; a body that is not one is an `invalid_request`.
fn form<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Refusal> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| Refusal::new("invalid_request", format!("the body must be a form: {e}")))
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form: TokenForm = form(&body)?;
        let client = state
            .oauth
            .authenticate(basic_credentials(&headers), &form.client)
            .await?;
        match form.grant_type.as_str() {
            "client_credentials" => state.oauth.client_credentials(&client, form.scope.as_deref()).await,
            "authorization_code" => {
                state
                    .oauth
                    .exchange_code(&client, &form.code, &form.redirect_uri, &form.code_verifier)
                    .await
            }
            "refresh_token" => {
                state
                    .oauth
                    .refresh(&client, &form.refresh_token, form.scope.as_deref())
                    .await
            }
            "" => Err(Refusal::new("invalid_request", "grant_type is required")),
            other => Err(Refusal::new(
                "unsupported_grant_type",
                format!("grant_type '{other}' is not supported"),
            )),
        }
    }
    .await;
    answer(result)
}

/// A token endpoint answer: the JSON, or the RFC 6749 error.
fn answer(result: Result<serde_json::Value, Refusal>) -> Response {
    match result {
        Ok(answer) => no_store(StatusCode::OK, answer),
        Err(r) => refusal(&r),
    }
}

/// The `token` form parameter of an authenticated client (introspection, revocation).
async fn presented(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(ClientRow, String), Refusal> {
    let form: TokenParam = form(body)?;
    let client = state
        .oauth
        .authenticate(basic_credentials(headers), &form.client)
        .await?;
    Ok((client, form.token))
}

pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    answer(
        async {
            let (client, token) = presented(&state, &headers, &body).await?;
            state.oauth.introspect(&client, &token).await
        }
        .await,
    )
}

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    answer(
        async {
            let (client, token) = presented(&state, &headers, &body).await?;
            state.oauth.revoke(&client, &token).await.map(|()| json!({}))
        }
        .await,
    )
}
