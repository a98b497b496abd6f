//! SMART Health Links for Send Record (SMART Health Links IG, passcode flow). At sending, the Bundle is
//! encrypted as a JWE (`dir`, `A256GCM`) with a fresh 256-bit key that only the link carries; the server keeps
//! the JWE, the passcode's Argon2id hash and the counters. Outside EHRs POST the manifest URL with the
//! recipient's name and the passcode (no session, no account; any origin) and get the file embedded, or at a
//! location URL valid for one minute.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::audit::{AccountAction, AccountEvent};
use crate::accounts::password;
use crate::error::{Error, Result};
use crate::routes::Routes;

/// Wrong passcodes before a link is disabled.
pub const MAX_FAILURES: i64 = 10;
/// How long a link works.
pub const VALID_DAYS: i64 = 30;
/// How long a file's location URL works.
const LOCATION_MS: i64 = 60_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Store(format!("no randomness from the OS: {e}")))?;
    Ok(bytes)
}

/// A new link's secrets: the manifest id (43 characters, 256 bits) and the file key.
pub fn new_link() -> Result<(String, [u8; 32])> {
    Ok((b64(&random::<32>()?), random::<32>()?))
}

/// JWE compact serialization, `dir` + `A256GCM`: header, empty key, IV, ciphertext, tag.
pub fn encrypt(key: &[u8; 32], content_type: &str, plaintext: &[u8]) -> Result<String> {
    let header = b64(json!({"alg": "dir", "enc": "A256GCM", "cty": content_type})
        .to_string()
        .as_bytes());
    let iv = random::<12>()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Store("bad JWE key".into()))?);
    let mut data = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header.as_bytes()),
            &mut data,
        )
        .map_err(|_| Error::Store("JWE encryption failed".into()))?;
    Ok(format!("{header}..{}.{}.{}", b64(&iv), b64(&data), b64(tag.as_ref())))
}

/// The `shlink:/…` text: the manifest URL, the key, the expiry (epoch seconds), `P` (passcode), a label.
pub fn shlink(manifest_url: &str, key: &[u8; 32], expires_ms: i64, label: &str) -> String {
    let label: String = label.chars().take(80).collect();
    let payload = json!({"url": manifest_url, "key": b64(key), "exp": expires_ms / 1000, "flag": "P", "label": label});
    format!("shlink:/{}", b64(payload.to_string().as_bytes()))
}

/// The manifest request (SMART Health Links IG).
#[derive(Deserialize)]
pub struct ManifestRequest {
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    passcode: String,
    #[serde(default, rename = "embeddedLengthMax")]
    embedded_length_max: Option<usize>,
}

#[derive(Deserialize)]
pub struct FileQuery {
    exp: i64,
    sig: String,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn failed(e: &Error) -> Response {
    tracing::error!(error = %e, "SMART Health Link request failed");
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "something went wrong on our side"}),
    )
}

fn gone() -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"error": "This link is not active (unknown, expired or deactivated)."}),
    )
}

/// What signs location URLs: a random key kept in the database, so a location made by one server process
/// works at any other behind the same load balancer.
pub async fn location_key(store: &crate::store::SharedStore, now: i64) -> Result<hmac::Key> {
    let make = Box::new(|| Ok(b64(&random::<32>()?)));
    let secret = store.shared_secret("shl-location-key", make, now).await?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret)
        .map_err(|e| Error::Store(format!("shl-location-key: {e}")))?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

/// `POST /shl/{id}`: the manifest.
async fn manifest(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<ManifestRequest>>,
) -> Response {
    let Some(Json(request)) = body else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "send JSON with recipient and passcode"}),
        );
    };
    if request.recipient.trim().is_empty() {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "recipient is required"}));
    }
    let now = state.clock.now_millis();
    let link = match state.store.share_link(&id).await {
        Ok(Some(l)) if l.share.disabled.is_none() && l.share.expires > now => l,
        Ok(_) => return gone(),
        Err(e) => return failed(&e),
    };
    match state.store.reserve_share_attempt(&id, MAX_FAILURES).await {
        Ok(Some(_)) => {}
        Ok(None) => return gone(),
        Err(e) => return failed(&e),
    }
    let ok = password::verify(&request.passcode, Some(&link.passcode_hash));
    let settled = state.store.settle_share_attempt(&id, ok, MAX_FAILURES, now).await;
    let recipient: String = request.recipient.chars().take(200).collect();
    let audited = state
        .records
        .audit_account(&AccountEvent {
            action: AccountAction::RecordRetrieved,
            agent: &recipient,
            patient: Some(&link.share.patient),
            proxy: None,
            disclosed: Some(&format!(
                "Records dated {} to {} sent to {} retrieved by \"{recipient}\" through the SMART Health Link",
                link.share.range_start, link.share.range_end, link.share.recipient
            )),
            success: ok,
            address: None,
            recorded: "",
        })
        .await;
    if let Err(e) = audited {
        return failed(&e);
    }
    if !ok {
        return match settled {
            Ok(failures) => answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": "wrong passcode", "remainingAttempts": (MAX_FAILURES - failures).max(0)}),
            ),
            Err(e) => failed(&e),
        };
    }
    if let Err(e) = settled {
        return failed(&e);
    }
    let too_long = request.embedded_length_max.is_some_and(|max| link.file.len() > max);
    let file = if too_long {
        let exp = now + LOCATION_MS;
        let sig = b64(hmac::sign(&state.link_key, format!("{id}|{exp}").as_bytes()).as_ref());
        let location = format!("{}/shl/{id}/file?exp={exp}&sig={sig}", state.config.base_url);
        json!({"contentType": "application/fhir+json", "location": location})
    } else {
        json!({"contentType": "application/fhir+json", "embedded": link.file})
    };
    answer(StatusCode::OK, json!({"files": [file]}))
}

/// `GET /shl/{id}/file?exp&sig`: a file by its short-lived location.
async fn file(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<FileQuery>) -> Response {
    let now = state.clock.now_millis();
    let valid = q.exp > now
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&q.sig)
            .is_ok_and(|sig| hmac::verify(&state.link_key, format!("{id}|{}", q.exp).as_bytes(), &sig).is_ok());
    if !valid {
        return gone();
    }
    match state.store.share_link(&id).await {
        Ok(Some(l)) if l.share.disabled.is_none() && l.share.expires > now => (
            [
                (header::CONTENT_TYPE, "application/jose"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            l.file,
        )
            .into_response(),
        Ok(_) => gone(),
        Err(e) => failed(&e),
    }
}

/// The machine routes, open to any origin (no cookies are read).
pub fn routes() -> Routes {
    Routes::new()
        .post("/shl/{id}", manifest)
        .get("/shl/{id}/file", file)
        .map(|r| r.layer(crate::smart::cors()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwe_has_five_parts_and_a_dir_header() {
        let key = [1u8; 32];
        let jwe = encrypt(&key, "application/fhir+json", b"{}").unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert!(parts[1].is_empty());
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[0])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (header["alg"].as_str(), header["enc"].as_str()),
            (Some("dir"), Some("A256GCM"))
        );
        assert_ne!(
            jwe,
            encrypt(&key, "application/fhir+json", b"{}").unwrap(),
            "a fresh IV each time"
        );
        let link = shlink("https://x/shl/abc", &key, 1_800_000_000_000, &"L".repeat(100));
        let payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(link.trim_start_matches("shlink:/"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["flag"], "P");
        assert_eq!(payload["exp"], 1_800_000_000);
        assert_eq!(payload["label"].as_str().unwrap().len(), 80);
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever the label and expiry, the link decodes to what was put in (the label cut to 80
        /// characters, never inside a character).
        #[test]
        fn links_decode_to_what_they_carry(label in "\\PC{0,120}", exp in 0i64..8_000_000_000_000, id in "[A-Za-z0-9_-]{43}") {
            let url = format!("https://portal.example/shl/{id}");
            let link = shlink(&url, &[7; 32], exp, &label);
            let payload: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(link.strip_prefix("shlink:/").expect("the scheme"))
                    .expect("base64url"),
            )
            .expect("JSON");
            let kept: String = label.chars().take(80).collect();
            prop_assert_eq!(payload["url"].as_str(), Some(url.as_str()));
            prop_assert_eq!(payload["label"].as_str(), Some(kept.as_str()));
            prop_assert_eq!(payload["exp"].as_i64(), Some(exp / 1000));
            let key = b64(&[7; 32]);
            prop_assert_eq!(payload["key"].as_str(), Some(key.as_str()));
        }

        /// Any file encrypts to a JWE that an independent AES-GCM open (with the header as AAD) turns back
        /// into the same bytes, and a changed byte fails to open.
        #[test]
        fn files_decrypt_to_what_was_encrypted(plaintext in prop::collection::vec(any::<u8>(), 0..4096), flip in any::<usize>()) {
            let key = [42u8; 32];
            let jwe = encrypt(&key, "application/fhir+json", &plaintext).unwrap();
            let parts: Vec<&str> = jwe.split('.').collect();
            prop_assert_eq!(parts.len(), 5);
            prop_assert_eq!(parts[1], "");
            let bytes = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
            let open = |ciphertext: Vec<u8>| {
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
                let nonce = Nonce::try_assume_unique_for_key(&bytes(parts[2])).unwrap();
                let mut data = [ciphertext, bytes(parts[4])].concat();
                key.open_in_place(nonce, Aad::from(parts[0].as_bytes()), &mut data).map(|p| p.to_vec())
            };
            prop_assert_eq!(open(bytes(parts[3])).ok(), Some(plaintext.clone()));
            let mut tampered = bytes(parts[3]);
            if !tampered.is_empty() {
                let i = flip % tampered.len();
                tampered[i] ^= 1;
                prop_assert!(open(tampered).is_err());
            }
        }

        /// Manifest requests are read from any JSON without panicking; what is not a request is refused.
        #[test]
        fn manifest_requests_never_panic(body in "\\PC{0,80}", recipient in "\\PC{0,20}", max in any::<i64>()) {
            let _ = serde_json::from_str::<ManifestRequest>(&body);
            let json = json!({"recipient": recipient, "passcode": body, "embeddedLengthMax": max}).to_string();
            let parsed = serde_json::from_str::<ManifestRequest>(&json);
            prop_assert_eq!(parsed.is_ok(), max >= 0);
        }
    }
}
