//! The authorization server's rules: registered clients, client authentication (secret or signed JWT
//! assertion), access and refresh tokens, introspection and revocation. Tokens are opaque random values kept
//! only as SHA-256, so revocation takes effect on the next request. Knows no HTTP: the `smart` door renders
//! [`Refusal`]s as RFC 6749 error responses.

pub mod grant;
pub mod keys;
pub mod scope;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use self::keys::SigningKey;
use self::scope::{Context, Scopes};
use crate::access::Actor;
use crate::access::actor::App;
use crate::accounts::secret;
use crate::clock::Clock;
use crate::error::Error;
use crate::store::SharedStore;
use crate::store::oauth::{ClientRow, ConnectedApp, TokenRow};

/// Access tokens live an hour.
pub const ACCESS_TTL_SECS: i64 = 3600;
/// A client assertion may be valid for at most five minutes (SMART Backend Services).
const MAX_ASSERTION_SECS: i64 = 300;
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error: the RFC 6749 code, words for the developer, and whether it is the client's credentials
/// (401) rather than the request (400).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub error: &'static str,
    pub description: String,
}

impl Refusal {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Refusal {
            error,
            description: description.into(),
        }
    }
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        tracing::error!(error = %err, "authorization server failure");
        Refusal::new("server_error", "the server could not complete the request")
    }
}

type Result<T> = std::result::Result<T, Refusal>;

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A browser or mobile app: no secret, PKCE only.
    Public,
    /// A confidential client with a generated secret (client_secret_basic).
    Secret,
    /// private_key_jwt with these public keys (a JWKS document).
    Jwks(String),
    /// private_key_jwt with the keys published at this URL (fetched when needed, cached for five minutes).
    JwksUrl(String),
}

/// Fetched key sets are reused this long (and fetched again at once for an unknown `kid`: key rotation).
const JWKS_CACHE_MS: i64 = 5 * 60_000;
/// A key set larger than this is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub launch_url: Option<String>,
    pub scope: String,
    pub auth: ClientAuth,
}

/// What a token request may carry for client authentication.
#[derive(Debug, Default, Deserialize)]
pub struct ClientCredentials {
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_assertion_type: Option<String>,
    #[serde(default)]
    pub client_assertion: Option<String>,
}

#[derive(Clone)]
pub struct OAuth {
    store: SharedStore,
    clock: Clock,
    /// For `--jwks-url` clients' keys.
    http: reqwest::Client,
    /// Fetched key sets by URL, with when they were fetched.
    jwks_cache: Arc<std::sync::Mutex<std::collections::HashMap<String, (i64, jsonwebtoken::jwk::JwkSet)>>>,
    /// `<base>`: where the `oauth/…` endpoints are.
    base_url: String,
    /// `<base>/fhir`: the audience apps must name, and the ID token issuer.
    fhir_base: String,
    /// The token endpoint's URL: the audience of client assertions.
    token_url: String,
    key: Arc<SigningKey>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

impl OAuth {
    pub fn new(store: SharedStore, clock: Clock, base_url: &str, key: SigningKey) -> Self {
        OAuth {
            store,
            clock,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            jwks_cache: Arc::default(),
            base_url: base_url.to_owned(),
            fhir_base: format!("{base_url}/fhir"),
            token_url: format!("{base_url}/oauth/token"),
            key: Arc::new(key),
        }
    }

    /// The public signing keys (`<base>/oauth/jwks`).
    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// Registers a client (`carespace client add`); returns it and, for a confidential client, its secret
    /// (shown once; only its hash is kept).
    pub async fn register(&self, new: NewClient) -> std::result::Result<(ClientRow, Option<String>), Error> {
        let bad = |why: String| Error::field("client", why);
        if new.name.trim().is_empty() {
            return Err(bad("a client needs a name".into()));
        }
        let scopes = Scopes::parse(&new.scope).map_err(|e| bad(e.0))?;
        if scopes.all.is_empty() {
            return Err(bad("a client needs at least one scope".into()));
        }
        for uri in new.redirect_uris.iter().chain(new.launch_url.iter()) {
            let ok = (uri.starts_with("https://") || uri.starts_with("http://"))
                && !uri.contains('#')
                && !uri.contains(char::is_whitespace);
            if !ok {
                return Err(bad(format!(
                    "'{uri}' is not an absolute http(s) URL without a fragment"
                )));
            }
        }
        // Only a confidential backend service (system scopes alone) has no user to send back to.
        let backend =
            scopes.resources.iter().all(|r| r.context == Context::System) && !matches!(new.auth, ClientAuth::Public);
        if new.redirect_uris.is_empty() && !backend {
            return Err(bad(
                "an app that users authorize needs at least one --redirect-uri".into()
            ));
        }
        let jwks_url = match &new.auth {
            ClientAuth::JwksUrl(url) => {
                let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.starts_with([':', '/'])));
                if !url.starts_with("https://") && !loopback {
                    return Err(bad(format!("'{url}' must be an https URL (http only on this machine)")));
                }
                Some(url.clone())
            }
            _ => None,
        };
        let (kind, secret, secret_hash, jwks) = match &new.auth {
            ClientAuth::Public => ("public", None, None, None),
            ClientAuth::JwksUrl(_) => ("jwks", None, None, None),
            ClientAuth::Secret => {
                let s = secret::token()?;
                let h = secret::hash(&s);
                ("secret", Some(s), Some(h), None)
            }
            ClientAuth::Jwks(doc) => {
                let set: jsonwebtoken::jwk::JwkSet =
                    serde_json::from_str(doc).map_err(|e| bad(format!("the JWKS is not a JSON Web Key Set: {e}")))?;
                if set.keys.is_empty() {
                    return Err(bad("the JWKS has no keys".into()));
                }
                ("jwks", None, None, Some(doc.clone()))
            }
        };
        let row = ClientRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name.trim().to_owned(),
            kind: kind.to_owned(),
            secret_hash,
            jwks,
            jwks_url,
            redirect_uris: new.redirect_uris,
            launch_url: new.launch_url,
            scope: scopes.to_string(),
            created: self.clock.now_millis(),
        };
        self.store.save_client(&row).await?;
        Ok((row, secret))
    }

    /// Authenticates the client of a token, introspection or revocation request: HTTP Basic (`basic`), a
    /// `client_secret` in the form, a signed JWT assertion (private_key_jwt), or a public client's bare id.
    pub async fn authenticate(&self, basic: Option<(String, String)>, creds: &ClientCredentials) -> Result<ClientRow> {
        let invalid = |why: &str| Refusal::new("invalid_client", why);
        if let Some(assertion) = &creds.client_assertion {
            if creds.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                return Err(invalid(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            return self.verify_assertion(assertion).await;
        }
        let (id, secret) = match (basic, &creds.client_id) {
            (Some((id, secret)), _) => (id, Some(secret)),
            (None, Some(id)) => (id.clone(), creds.client_secret.clone()),
            (None, None) => return Err(invalid("no client authentication")),
        };
        let client = self
            .store
            .client(&id)
            .await?
            .ok_or_else(|| invalid("unknown client or wrong secret"))?;
        match (client.kind.as_str(), secret) {
            ("public", None) => Ok(client),
            ("secret", Some(s))
                if client
                    .secret_hash
                    .as_deref()
                    .is_some_and(|h| secret::same(h, &secret::hash(&s))) =>
            {
                Ok(client)
            }
            ("jwks", _) => Err(invalid("this client authenticates with a signed JWT (private_key_jwt)")),
            _ => Err(invalid("unknown client or wrong secret")),
        }
    }

    async fn verify_assertion(&self, assertion: &str) -> Result<ClientRow> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
        let invalid = |why: String| Refusal::new("invalid_client", why);
        let header =
            decode_header(assertion).map_err(|e| invalid(format!("the client assertion is not a JWT: {e}")))?;
        if !matches!(
            header.alg,
            Algorithm::RS384 | Algorithm::ES384 | Algorithm::RS256 | Algorithm::ES256
        ) {
            return Err(invalid(format!(
                "client assertions must be signed with RS384 or ES384, not {:?}",
                header.alg
            )));
        }
        // The issuer names the client; read it unverified only to find the keys to verify with.
        let unverified = jsonwebtoken::dangerous::insecure_decode_claims::<AssertionClaims>(assertion)
            .map_err(|e| invalid(format!("the client assertion's claims are not usable: {e}")))?;
        let client = self
            .store
            .client(&unverified.iss)
            .await?
            .filter(|c| c.kind == "jwks")
            .ok_or_else(|| invalid("the assertion's issuer is not a client registered with keys".into()))?;
        let set = self.client_keys(&client, header.kid.as_deref()).await?;
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => set
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid))
                .collect(),
            None => set.keys.iter().collect(),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.token_url]);
        validation.set_issuer(&[&client.id]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = 30;
        let mut last = String::from("no key of the client's JWKS matches the assertion's kid");
        for key in candidates {
            let Ok(decoding) = DecodingKey::from_jwk(key) else {
                continue;
            };
            match decode::<AssertionClaims>(assertion, &decoding, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let now = self.clock.now_millis() / 1000;
                    if claims.sub != client.id {
                        return Err(invalid("the assertion's sub must be the client id".into()));
                    }
                    if claims.exp > now + MAX_ASSERTION_SECS + 30 {
                        return Err(invalid("the assertion must expire within five minutes".into()));
                    }
                    if claims.exp < now - 30 {
                        return Err(invalid("the client assertion has expired".into()));
                    }
                    if !self
                        .store
                        .first_jti(&client.id, &claims.jti, (claims.exp + 60) * 1000, now * 1000)
                        .await?
                    {
                        return Err(invalid("the assertion's jti was used before".into()));
                    }
                    return Ok(client);
                }
                Err(e) => last = format!("the client assertion does not verify: {e}"),
            }
        }
        Err(invalid(last))
    }

    /// The client's public keys: registered with it, or fetched from its JWKS URL (cached; fetched again when
    /// the cache has no key with `kid`, so a client can rotate keys).
    async fn client_keys(&self, client: &ClientRow, kid: Option<&str>) -> Result<jsonwebtoken::jwk::JwkSet> {
        let parse = |text: &str| {
            serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(text)
                .map_err(|e| Refusal::new("invalid_client", format!("the client's JWKS is not usable: {e}")))
        };
        let Some(url) = &client.jwks_url else {
            return parse(client.jwks.as_deref().unwrap_or("{}"));
        };
        let now = self.clock.now_millis();
        let has_kid = |set: &jsonwebtoken::jwk::JwkSet| {
            kid.is_none_or(|k| set.keys.iter().any(|j| j.common.key_id.as_deref() == Some(k)))
        };
        if let Ok(cache) = self.jwks_cache.lock()
            && let Some((at, set)) = cache.get(url)
            && now - at < JWKS_CACHE_MS
            && has_kid(set)
        {
            return Ok(set.clone());
        }
        let unreachable = |e: String| {
            Refusal::new(
                "invalid_client",
                format!("the client's JWKS at {url} could not be fetched: {e}"),
            )
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(unreachable("too large".into()));
        }
        let set = parse(&String::from_utf8_lossy(&body))?;
        if let Ok(mut cache) = self.jwks_cache.lock() {
            cache.insert(url.clone(), (now, set.clone()));
        }
        Ok(set)
    }

    /// client_credentials for a backend service: `system/` scopes within its registration.
    pub async fn client_credentials(&self, client: &ClientRow, scope: Option<&str>) -> Result<Value> {
        if client.kind == "public" {
            return Err(Refusal::new(
                "unauthorized_client",
                "public clients cannot use client_credentials",
            ));
        }
        let registered = Scopes::parse(&client.scope).unwrap_or_default();
        let asked = match scope {
            Some(s) => Scopes::parse(s).map_err(|e| Refusal::new("invalid_scope", e.0))?,
            None => registered.clone(),
        };
        let granted = asked.within(&registered).only(|w| w.starts_with("system/"));
        if granted.all.is_empty() {
            return Err(Refusal::new(
                "invalid_scope",
                "none of the requested scopes is a system/ scope registered for this client",
            ));
        }
        let (access, row) = self.new_token(
            "access",
            client,
            None,
            None,
            &granted,
            &uuid::Uuid::new_v4().to_string(),
        )?;
        self.store.save_tokens(&[row]).await?;
        Ok(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL_SECS,
            "scope": granted.to_string(),
        }))
    }

    pub(crate) fn new_token(
        &self,
        kind: &str,
        client: &ClientRow,
        account_id: Option<&str>,
        patient: Option<&str>,
        scopes: &Scopes,
        grant_id: &str,
    ) -> Result<(String, TokenRow)> {
        let token = secret::token()?;
        let now = self.clock.now_millis();
        Ok((
            token.clone(),
            TokenRow {
                hash: secret::hash(&token),
                kind: kind.to_owned(),
                client_id: client.id.clone(),
                account_id: account_id.map(str::to_owned),
                patient: patient.map(str::to_owned),
                scope: scopes.to_string(),
                grant_id: grant_id.to_owned(),
                created: now,
                expires: now + ACCESS_TTL_SECS * 1000,
                revoked: None,
            },
        ))
    }

    /// Who a user is for an app working on `patient`'s record: a patient themselves, staff as themselves,
    /// someone given access as the RelatedPerson of their grant; `None` when the user may not open that record.
    pub(crate) async fn user_of(
        &self,
        account: &crate::store::accounts::Account,
        patient: Option<&str>,
    ) -> std::result::Result<Option<String>, Error> {
        use crate::store::accounts::AccountKind;
        let own = account.person.strip_prefix("Patient/");
        if account.kind == AccountKind::Staff || patient.is_none() || patient == own {
            return Ok((account.kind != AccountKind::Proxy || patient.is_some()).then(|| account.person.clone()));
        }
        Ok(self
            .store
            .proxy_grants(false, &account.id)
            .await?
            .into_iter()
            .find(|g| Some(g.patient.as_str()) == patient && g.opens_for(account))
            .map(|g| format!("RelatedPerson/{}", g.related_person)))
    }

    /// The live token row for a presented token: known, of this kind, not expired, not revoked.
    pub(crate) async fn live(&self, token: &str, kind: &str) -> std::result::Result<Option<TokenRow>, Error> {
        let now = self.clock.now_millis();
        Ok(self
            .store
            .oauth_token(&secret::hash(token))
            .await?
            .filter(|t| t.kind == kind && t.revoked.is_none() && t.expires > now))
    }

    /// The actor an access token stands for; `None` when it is unknown, expired or revoked.
    pub async fn bearer(&self, token: &str) -> std::result::Result<Option<Actor>, Error> {
        let Some(row) = self.live(token, "access").await? else {
            return Ok(None);
        };
        let user = match &row.account_id {
            Some(id) => match self.store.account(crate::store::AccountKey::Id(id)).await? {
                // A token issued through a grant that has ended opens nothing.
                Some(account) => match self.user_of(&account, row.patient.as_deref()).await? {
                    Some(user) => Some(user),
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(Actor::App(App {
            client_id: row.client_id,
            scopes: Scopes::parse(&row.scope).unwrap_or_default(),
            patient: row.patient,
            user,
        })))
    }

    /// RFC 7662: what a token is, for the client that holds it (another client's tokens are reported inactive).
    pub async fn introspect(&self, client: &ClientRow, token: &str) -> Result<Value> {
        for kind in ["access", "refresh"] {
            if let Some(row) = self
                .live(token, kind)
                .await?
                .filter(|t| t.client_id == client.id || client.kind != "public")
            {
                let mut answer = json!({
                    "active": true,
                    "scope": row.scope,
                    "client_id": row.client_id,
                    "token_type": if kind == "access" { "Bearer" } else { "refresh_token" },
                    "exp": row.expires / 1000,
                    "iat": row.created / 1000,
                });
                if let Some(p) = &row.patient {
                    answer["patient"] = json!(p);
                }
                return Ok(answer);
            }
        }
        Ok(json!({ "active": false }))
    }

    /// The apps an account has authorized that still hold live tokens ("Connected apps").
    pub async fn connected_apps(&self, account_id: &str) -> std::result::Result<Vec<ConnectedApp>, Error> {
        self.store.connected_apps(account_id, self.clock.now_millis()).await
    }

    /// Ends an app's access for an account: every token it holds stops working on the next request.
    pub async fn disconnect(&self, account_id: &str, client_id: &str) -> std::result::Result<(), Error> {
        self.store
            .revoke_app(account_id, client_id, self.clock.now_millis())
            .await
    }

    /// RFC 7009: revokes the token (a refresh token takes its whole grant with it). Unknown tokens are not an
    /// error, and a client can revoke only its own tokens.
    pub async fn revoke(&self, client: &ClientRow, token: &str) -> Result<()> {
        let hash = secret::hash(token);
        if let Some(row) = self
            .store
            .oauth_token(&hash)
            .await?
            .filter(|t| t.client_id == client.id)
        {
            self.store
                .revoke_token(&hash, row.kind == "refresh", self.clock.now_millis())
                .await?;
        }
        Ok(())
    }
}
