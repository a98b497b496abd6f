//! The server's RS256 signing key for ID tokens: read from a configured PEM file, or else kept in the database
//! (made by the first process to start, shared by every process on that database, so a node behind a load
//! balancer signs with the same key the others publish). Its public half is published as a JWKS.

use std::path::Path;

use base64::Engine as _;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::SharedStore;

pub struct SigningKey {
    pub kid: String,
    pub encoding: jsonwebtoken::EncodingKey,
    /// The public key as a JWK.
    pub jwk: Value,
}

impl SigningKey {
    /// The key in the PEM file at `path` (PKCS#1 or PKCS#8) when one is configured, else the database's.
    pub async fn load(path: Option<&Path>, store: &SharedStore, now: i64) -> Result<SigningKey> {
        let pem = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Store(format!("signing key {}: {e}", path.display())))?,
            None => store.shared_secret("oauth-signing-key", Box::new(new_pem), now).await?,
        };
        SigningKey::from_pem(&pem)
    }

    pub fn from_pem(pem: &str) -> Result<SigningKey> {
        let fail = |what: String| Error::Store(format!("signing key: {what}"));
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
            .map_err(|e| fail(format!("not an RSA private key in PEM: {e}")))?;
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let n = b64(key.n().to_bytes_be());
        let e = b64(key.e().to_bytes_be());
        let kid = b64(Sha256::digest(n.as_bytes())[..12].to_vec());
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        Ok(SigningKey {
            jwk: json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e }),
            kid,
            encoding,
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` as a compact JWS (RS256, with this key's `kid`).
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| Error::Store(format!("signing failed: {e}")))
    }
}

/// A new 2048-bit RSA key as PKCS#1 PEM.
fn new_pem() -> Result<String> {
    let fail = |e: String| Error::Store(format!("signing key: {e}"));
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| fail(e.to_string()))?;
    Ok(key
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?
        .to_string())
}
