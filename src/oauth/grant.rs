//! The authorization-code grant for apps that users authorize: checking the request `/oauth/authorize`
//! receives, issuing the code after consent, exchanging it (PKCE S256) for tokens, refreshing with rotation,
//! the ID token, and the discovery documents that describe all of it.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::scope::Scopes;
use super::{ACCESS_TTL_SECS, OAuth, Refusal, Result};
use crate::accounts::secret;
use crate::store::AccountKey;
use crate::store::accounts::Account;
use crate::store::oauth::{ClientRow, CodeRow, LaunchRow, TokenRow};

/// Codes must be exchanged within a minute.
const CODE_TTL_MS: i64 = 60_000;
/// `offline_access` refresh tokens last 90 days, `online_access` ones 12 hours (a working day's session).
const OFFLINE_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
const ONLINE_TTL_MS: i64 = 12 * 3600 * 1000;

/// The query (or form) of an authorization request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthParams {
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub aud: String,
    #[serde(default)]
    pub code_challenge: String,
    #[serde(default)]
    pub code_challenge_method: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub launch: Option<String>,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: ClientRow,
    pub params: AuthParams,
    /// What the app asked for, cut to what it is registered for.
    pub scopes: Scopes,
    /// An EHR launch: the staff member who opened the app and the patient it was opened for.
    pub launch: Option<LaunchRow>,
}

/// EHR launch ids must be used within five minutes.
const LAUNCH_TTL_MS: i64 = 5 * 60_000;

/// Why an authorization request is refused: before the client and its redirect URI are known to be good the
/// user sees a page (never a redirect to an unchecked URI); after, the app gets the error at its redirect URI.
#[derive(Debug)]
pub enum AuthError {
    Page(String),
    Redirect {
        redirect_uri: String,
        state: String,
        refusal: Refusal,
    },
}

impl From<crate::error::Error> for AuthError {
    fn from(e: crate::error::Error) -> Self {
        AuthError::Page(Refusal::from(e).description)
    }
}

/// `redirect_uri` with `pairs` added to its query.
pub fn with_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{query}")
}

impl AuthError {
    /// Where the browser goes for a redirect error.
    pub fn location(&self) -> Option<String> {
        match self {
            AuthError::Page(_) => None,
            AuthError::Redirect {
                redirect_uri,
                state,
                refusal,
            } => Some(with_query(
                redirect_uri,
                &[
                    ("error", refusal.error),
                    ("error_description", &refusal.description),
                    ("state", state),
                ],
            )),
        }
    }
}

impl OAuth {
    /// Checks an authorization request (SMART App Launch: code flow, PKCE S256, `state`, `aud`).
    pub async fn authorization_request(&self, params: AuthParams) -> std::result::Result<AuthRequest, AuthError> {
        let client = self.store.client(&params.client_id).await?.ok_or_else(|| {
            AuthError::Page("This app is not registered with the practice (unknown client_id).".into())
        })?;
        if !client.redirect_uris.contains(&params.redirect_uri) {
            return Err(AuthError::Page(
                "The app sent a redirect_uri that is not registered for it, so it cannot be sent your answer.".into(),
            ));
        }
        let fail = |error: &'static str, why: &str| AuthError::Redirect {
            redirect_uri: params.redirect_uri.clone(),
            state: params.state.clone(),
            refusal: Refusal::new(error, why),
        };
        if params.response_type != "code" {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        if params.state.is_empty() {
            return Err(fail("invalid_request", "state is required"));
        }
        if params.code_challenge_method != "S256" || params.code_challenge.len() < 43 {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
            ));
        }
        if params.aud.trim_end_matches('/') != self.fhir_base {
            return Err(fail("invalid_request", "aud must be this server's FHIR base URL"));
        }
        let launch = match &params.launch {
            Some(id) => Some(
                self.store
                    .launch(&secret::hash(id))
                    .await?
                    .filter(|l| l.client_id == client.id && l.expires > self.clock.now_millis())
                    .ok_or_else(|| fail("invalid_request", "the launch is unknown, expired or for another app"))?,
            ),
            None => None,
        };
        let asked = Scopes::parse(&params.scope).unwrap_or_else(|_| {
            // Unknown scopes are left out, as OAuth allows; the answer says what was granted.
            Scopes::parse(
                &params
                    .scope
                    .split_whitespace()
                    .filter(|w| Scopes::parse(w).is_ok())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .unwrap_or_default()
        });
        let scopes = asked.within(&Scopes::parse(&client.scope).unwrap_or_default());
        if scopes.all.is_empty() {
            return Err(fail(
                "invalid_scope",
                "none of the requested scopes is registered for this app",
            ));
        }
        Ok(AuthRequest {
            client,
            params,
            scopes,
            launch,
        })
    }

    /// After consent: a single-use code for what the user allowed.
    /// `chosen`: the record picked on the consent page by someone who may open several (a proxy).
    pub async fn issue_code(
        &self,
        request: &AuthRequest,
        account: &Account,
        granted: &Scopes,
        chosen: Option<&str>,
    ) -> Result<String> {
        let code = secret::token()?;
        let now = self.clock.now_millis();
        // The launch's patient for an EHR launch (by the staff member who launched), else the chosen record
        // or the patient's own.
        let patient = match &request.launch {
            Some(l) if l.account_id == account.id => Some(l.patient.clone()),
            Some(_) => return Err(Refusal::new("access_denied", "the launch belongs to another user")),
            None => chosen
                .map(str::to_owned)
                .or_else(|| account.person.strip_prefix("Patient/").map(str::to_owned)),
        };
        if request.launch.is_none() && self.user_of(account, patient.as_deref()).await?.is_none() {
            return Err(Refusal::new("access_denied", "the user may not open that record"));
        }
        self.store
            .save_code(&CodeRow {
                hash: secret::hash(&code),
                client_id: request.client.id.clone(),
                account_id: account.id.clone(),
                patient,
                scope: granted.to_string(),
                redirect_uri: request.params.redirect_uri.clone(),
                code_challenge: request.params.code_challenge.clone(),
                nonce: request.params.nonce.clone(),
                grant_id: uuid::Uuid::new_v4().to_string(),
                created: now,
                expires: now + CODE_TTL_MS,
                used: None,
            })
            .await?;
        Ok(code)
    }

    /// authorization_code: the code (once, within a minute, by the client it was issued to, with the same
    /// redirect URI and the PKCE verifier) for tokens. A code presented twice revokes what it issued.
    pub async fn exchange_code(
        &self,
        client: &ClientRow,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Value> {
        let invalid = |why: &str| Refusal::new("invalid_grant", why);
        let now = self.clock.now_millis();
        let row = self
            .store
            .take_code(&secret::hash(code), now)
            .await?
            .ok_or_else(|| invalid("unknown authorization code"))?;
        if row.used.is_some() {
            self.store.revoke_grant(&row.grant_id, now).await?;
            return Err(invalid(
                "the authorization code was already used; the tokens it gave are revoked",
            ));
        }
        if row.expires <= now {
            return Err(invalid("the authorization code has expired"));
        }
        if row.client_id != client.id {
            return Err(invalid("the authorization code was issued to another client"));
        }
        if row.redirect_uri != redirect_uri {
            return Err(invalid("redirect_uri does not match the authorization request"));
        }
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !(43..=128).contains(&verifier.len()) || !secret::same(&computed, &row.code_challenge) {
            return Err(invalid("the PKCE code_verifier does not match the code_challenge"));
        }
        let account = self.store.account(AccountKey::Id(&row.account_id)).await?;
        let scopes = Scopes::parse(&row.scope).unwrap_or_default();
        self.issue(
            client,
            account.as_ref(),
            row.patient.as_deref(),
            &scopes,
            &row.grant_id,
            row.nonce.as_deref(),
        )
        .await
    }

    /// refresh_token: new tokens, and a new refresh token in place of the presented one. A refresh token
    /// that was already rotated away is a sign of theft: its whole grant is revoked.
    pub async fn refresh(&self, client: &ClientRow, refresh_token: &str, scope: Option<&str>) -> Result<Value> {
        let invalid = |why: &str| Refusal::new("invalid_grant", why);
        let now = self.clock.now_millis();
        let hash = secret::hash(refresh_token);
        let row = self
            .store
            .oauth_token(&hash)
            .await?
            .filter(|t| t.kind == "refresh" && t.client_id == client.id)
            .ok_or_else(|| invalid("unknown refresh token"))?;
        if row.revoked.is_some() {
            self.store.revoke_grant(&row.grant_id, now).await?;
            return Err(invalid("the refresh token was already used or revoked"));
        }
        if row.expires <= now {
            return Err(invalid("the refresh token has expired"));
        }
        let held = Scopes::parse(&row.scope).unwrap_or_default();
        let scopes = match scope {
            Some(s) => Scopes::parse(s)
                .map_err(|e| Refusal::new("invalid_scope", e.0))?
                .within(&held),
            None => held,
        };
        self.store.revoke_token(&hash, false, now).await?;
        let account = match &row.account_id {
            Some(id) => self.store.account(AccountKey::Id(id)).await?,
            None => None,
        };
        self.issue(
            client,
            account.as_ref(),
            row.patient.as_deref(),
            &scopes,
            &row.grant_id,
            None,
        )
        .await
    }

    /// The token response for a user's grant.
    async fn issue(
        &self,
        client: &ClientRow,
        account: Option<&Account>,
        patient: Option<&str>,
        scopes: &Scopes,
        grant_id: &str,
        nonce: Option<&str>,
    ) -> Result<Value> {
        let account = account.ok_or_else(|| Refusal::new("invalid_grant", "the user's account no longer exists"))?;
        // Whoever the user is for this record must still be allowed it (a revoked grant issues nothing).
        let user = self
            .user_of(account, patient)
            .await?
            .ok_or_else(|| Refusal::new("invalid_grant", "the user's access to the record has ended"))?;
        let now = self.clock.now_millis();
        let (access, access_row) = self.new_token("access", client, Some(&account.id), patient, scopes, grant_id)?;
        let mut rows: Vec<TokenRow> = vec![access_row];
        let mut answer = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL_SECS,
            "scope": scopes.to_string(),
            "need_patient_banner": true,
            "smart_style_url": format!("{}/assets/smart-style.json", self.base_url),
        });
        if let Some(p) = patient.filter(|_| {
            scopes.has("launch/patient")
                || scopes
                    .resources
                    .iter()
                    .any(|r| r.context == super::scope::Context::Patient)
        }) {
            answer["patient"] = json!(p);
        }
        let lifetime = if scopes.has("offline_access") {
            Some(OFFLINE_TTL_MS)
        } else if scopes.has("online_access") {
            Some(ONLINE_TTL_MS)
        } else {
            None
        };
        if let Some(lifetime) = lifetime {
            let (refresh, mut row) = self.new_token("refresh", client, Some(&account.id), patient, scopes, grant_id)?;
            row.expires = now + lifetime;
            rows.push(row);
            answer["refresh_token"] = json!(refresh);
        }
        if scopes.has("openid") {
            let mut claims = json!({
                "iss": self.fhir_base,
                "sub": account.id,
                "aud": client.id,
                "iat": now / 1000,
                "exp": now / 1000 + ACCESS_TTL_SECS,
            });
            if let Some(n) = nonce {
                claims["nonce"] = json!(n);
            }
            if scopes.has("fhirUser") {
                claims["fhirUser"] = json!(format!("{}/{}", self.fhir_base, user));
            }
            if scopes.has("profile") {
                claims["name"] = json!(account.display_name);
            }
            answer["id_token"] = json!(self.key.sign(&claims)?);
        }
        self.store.save_tokens(&rows).await?;
        Ok(answer)
    }

    /// A staff member opens a registered app for a patient (EHR launch): the URL to send the browser to, the
    /// app's launch URL with `iss` and a fresh `launch` id bound to that patient, staff member and app.
    pub async fn ehr_launch(
        &self,
        client_id: &str,
        staff: &Account,
        patient_id: &str,
    ) -> std::result::Result<String, crate::error::Error> {
        let client = self
            .store
            .client(client_id)
            .await?
            .ok_or_else(|| crate::error::Error::field("client_id", "Choose an app registered for EHR launch."))?;
        let launch_url = client
            .launch_url
            .clone()
            .ok_or_else(|| crate::error::Error::field("client_id", "This app has no launch URL."))?;
        let id = secret::token()?;
        let now = self.clock.now_millis();
        self.store
            .save_launch(&LaunchRow {
                hash: secret::hash(&id),
                client_id: client.id,
                account_id: staff.id.clone(),
                patient: patient_id.to_owned(),
                created: now,
                expires: now + LAUNCH_TTL_MS,
            })
            .await?;
        Ok(with_query(&launch_url, &[("iss", &self.fhir_base), ("launch", &id)]))
    }

    /// The apps a staff member can launch for a patient.
    pub async fn launchable_apps(&self) -> std::result::Result<Vec<ClientRow>, crate::error::Error> {
        self.store.launchable_clients().await
    }

    /// `<base>/fhir/.well-known/smart-configuration`.
    pub fn smart_configuration(&self) -> Value {
        json!({
            "issuer": self.fhir_base,
            "jwks_uri": format!("{}/oauth/jwks", self.base_url),
            "authorization_endpoint": format!("{}/oauth/authorize", self.base_url),
            "token_endpoint": self.token_url,
            "introspection_endpoint": format!("{}/oauth/introspect", self.base_url),
            "revocation_endpoint": format!("{}/oauth/revoke", self.base_url),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
                "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
                "patient/*.read", "patient/*.write", "user/*.read", "user/*.write", "system/*.read", "system/*.write"],
            "capabilities": ["launch-standalone", "launch-ehr", "context-ehr-patient", "client-public", "client-confidential-symmetric",
                "client-confidential-asymmetric", "context-standalone-patient", "permission-patient", "permission-user",
                "permission-offline", "permission-online", "permission-v1", "permission-v2", "sso-openid-connect"],
        })
    }

    /// `<base>/fhir/.well-known/openid-configuration` (the ID token issuer is the FHIR base).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.fhir_base,
            "jwks_uri": format!("{}/oauth/jwks", self.base_url),
            "authorization_endpoint": format!("{}/oauth/authorize", self.base_url),
            "token_endpoint": self.token_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "fhirUser", "profile"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        })
    }
}
