//! Rows of the OAuth tables: registered clients, authorization codes, tokens, seen assertion ids. Plain
//! data; the rules live in `oauth/`.

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    /// `public`, `secret` or `jwks`.
    pub kind: String,
    pub secret_hash: Option<String>,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    pub redirect_uris: Vec<String>,
    pub launch_url: Option<String>,
    pub scope: String,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct CodeRow {
    pub hash: String,
    pub client_id: String,
    pub account_id: String,
    pub patient: Option<String>,
    pub scope: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub grant_id: String,
    pub created: i64,
    pub expires: i64,
    pub used: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub hash: String,
    /// `access` or `refresh`.
    pub kind: String,
    pub client_id: String,
    pub account_id: Option<String>,
    pub patient: Option<String>,
    pub scope: String,
    pub grant_id: String,
    pub created: i64,
    pub expires: i64,
    pub revoked: Option<i64>,
}

/// An app a user has authorized and that still holds a live token.
#[derive(Debug, Clone)]
pub struct ConnectedApp {
    pub client_id: String,
    pub name: String,
    /// The scopes of its newest live token.
    pub scope: String,
    /// When the user first authorized it (its oldest live token), epoch ms.
    pub since: i64,
}

/// A staff member's EHR launch of an app for a patient.
#[derive(Debug, Clone)]
pub struct LaunchRow {
    pub hash: String,
    pub client_id: String,
    pub account_id: String,
    pub patient: String,
    pub created: i64,
    pub expires: i64,
}
