//! SMART apps that patients authorize, driven by the oauth2 crate as the client: discovery, standalone launch
//! with PKCE through the portal login and the consent page, the ID token verified with the openidconnect crate
//! against our JWKS, refresh with rotation, code replay, wrong verifier and redirect URI, denial, and scopes
//! enforced on the FHIR API for the launch patient only.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, registered_patient, staff_session};
use crate::helpers::{TestApp, fhir_client, get_json, spawn_app};
use crate::web::Web;

/// The SMART fields of a token response.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Smart {
    patient: Option<String>,
    id_token: Option<String>,
    need_patient_banner: Option<bool>,
}
impl oauth2::ExtraTokenFields for Smart {}
type SmartToken = StandardTokenResponse<Smart, BasicTokenType>;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn smart_client(
    app: &TestApp,
    client_id: &str,
) -> oauth2::Client<
    BasicErrorResponse,
    SmartToken,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    oauth2::Client::new(ClientId::new(client_id.to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{}/oauth/authorize", app.origin)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", app.origin)).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A public app registered for patient-facing scopes.
async fn register_app(app: &TestApp) -> String {
    register_public(app, "openid fhirUser launch/patient offline_access patient/*.rs").await
}

/// Registers a public app ("Health Diary") allowed `scopes`; returns its client id.
async fn register_public(app: &TestApp, scopes: &str) -> String {
    let (ok, out) = app
        .command(&[
            "client",
            "add",
            "--name",
            "Health Diary",
            "--public",
            "--redirect-uri",
            REDIRECT,
            "--scope",
            scopes,
        ])
        .await;
    assert!(ok, "{out}");
    serde_json::from_str::<Value>(out.trim()).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Walks the browser part of a standalone launch: the app's authorize URL, the portal login, the consent page
/// (`untick` names consent lines to untick; `allow` false denies). Returns the redirect to the app and the
/// consent page's text.
async fn authorize_in_browser(
    app: &TestApp,
    url: &str,
    email: &str,
    birth_date: &str,
    untick: &[&str],
    record: Option<&str>,
    allow: bool,
) -> (String, String) {
    let mut web = Web::new(&app.origin);
    let to_login = web.get(url).await;
    assert_eq!(to_login.status, 303, "{}", to_login.text());
    let login_page = web.get(to_login.location.as_deref().unwrap()).await;
    let signed_in = web
        .submit(
            &login_page,
            "/login",
            &[("email", email), ("password", PASSWORD), ("birth_date", birth_date)],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    let back = signed_in.location.unwrap();
    assert!(back.starts_with("/oauth/authorize?"), "{back}");
    let consent = web.get(&back).await;
    assert_eq!(consent.status, 200, "{}", consent.text());
    let text = consent.text();
    assert!(text.contains("Allow Health Diary to use your record?"), "{text}");
    let mut fields = consent.form_fields();
    for line in untick {
        let idx = consent
            .body
            .find(line)
            .unwrap_or_else(|| panic!("no consent line {line}"));
        let id = consent.body[..idx]
            .rsplit("for=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        fields.retain(|(n, _)| *n != id);
    }
    if let Some(patient) = record {
        assert!(
            consent.body.contains("Whose record may the app use?"),
            "a record picker: {text}"
        );
        fields.retain(|(n, _)| n != "patient");
        fields.push(("patient".into(), patient.into()));
    }
    fields.push(("decision".into(), if allow { "allow" } else { "deny" }.into()));
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let answer = web.post_raw("/oauth/authorize", &refs).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    (answer.location.unwrap(), text)
}

async fn status(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// The claims of a JWT (its signature is checked elsewhere).
fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn standalone_launch_with_pkce_refresh_and_id_token() {
    let app = spawn_app("sqlite").await;
    let fhir_base = format!("{}/fhir", app.origin);
    let discovery: Value = get_json(&http(), format!("{fhir_base}/.well-known/smart-configuration")).await;
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{}/oauth/authorize", app.origin)
    );
    assert_eq!(discovery["code_challenge_methods_supported"], json!(["S256"]));
    for capability in [
        "launch-standalone",
        "client-public",
        "client-confidential-asymmetric",
        "permission-v2",
        "sso-openid-connect",
    ] {
        assert!(
            discovery["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == capability),
            "{capability}"
        );
    }
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Diaz", "diaz@example.org", "1984-04-04").await;
    let other = registered_patient(&app, &mut staff, "Other", "other@example.org", "1985-05-05").await;
    for (p, code) in [(&me, "mine"), (&other, "theirs")] {
        app.create(json!({"resourceType": "Observation", "status": "final", "code": {"text": code}, "subject": {"reference": format!("Patient/{p}")}})).await;
    }
    let client_id = register_app(&app).await;
    let client = smart_client(&app, &client_id);

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = "n-0S6_WzA2Mj";
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(
            ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"].map(|s| Scope::new(s.into())),
        )
        .add_extra_param("aud", &fhir_base)
        .add_extra_param("nonce", nonce)
        .set_pkce_challenge(challenge)
        .url();
    let (redirect, consent) =
        authorize_in_browser(&app, url.as_str(), "diaz@example.org", "1984-04-04", &[], None, true).await;
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    for line in [
        "Know who you are",
        "Know whose health record is open",
        "See all of your health record",
        "Keep its access after you close it",
    ] {
        assert!(consent.contains(line), "{line}: {consent}");
    }
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let code = query_param(&redirect, "code").expect("code");

    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("token");
    assert_eq!(token.extra_fields().patient.as_deref(), Some(me.as_str()));
    assert_eq!(token.extra_fields().need_patient_banner, Some(true));
    let granted: Vec<String> = token.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        granted,
        ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"]
    );

    // The ID token verifies against our JWKS and names the patient.
    let jwks: openidconnect::core::CoreJsonWebKeySet =
        serde_json::from_value(get_json(&http(), discovery["jwks_uri"].as_str().unwrap()).await).unwrap();
    let verifier = openidconnect::core::CoreIdTokenVerifier::new_public_client(
        openidconnect::ClientId::new(client_id.clone()),
        openidconnect::IssuerUrl::new(fhir_base.clone()).unwrap(),
        jwks,
    );
    // The signing key lives in the database, so a restart (or another server process) keeps it.
    let reloaded = carespace::oauth::keys::SigningKey::load(None, &app.state.store, 0)
        .await
        .unwrap();
    let published: Value = get_json(&http(), discovery["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(published["keys"][0]["kid"], reloaded.kid.as_str());
    let id_token: openidconnect::core::CoreIdToken = token.extra_fields().id_token.as_deref().unwrap().parse().unwrap();
    id_token
        .claims(&verifier, &openidconnect::Nonce::new(nonce.into()))
        .expect("valid ID token");
    let claims = claims_of(&id_token.to_string());
    assert_eq!(claims["fhirUser"], format!("{fhir_base}/Patient/{me}"));

    // The token reaches only this patient's record.
    let fhir = fhir_client(token.access_token().secret());
    let texts = |bundle: &Value| {
        bundle["entry"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["resource"]["code"]["text"].clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mine: Value = get_json(&fhir, format!("{fhir_base}/Observation")).await;
    assert_eq!(texts(&mine), [json!("mine")]);
    assert_eq!(status(&fhir, format!("{fhir_base}/Patient/{me}")).await, 200);
    assert_eq!(status(&fhir, format!("{fhir_base}/Patient/{other}")).await, 404);
    let write = fhir
        .post(format!("{fhir_base}/Observation"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{me}")}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(write.status().as_u16(), 403, "read scopes do not write");

    // Refresh rotates: the new refresh token works, the old one is refused and takes the whole grant with it.
    let first_refresh = token.refresh_token().unwrap().clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http())
        .await
        .expect("refresh");
    let second_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(first_refresh.secret(), second_refresh.secret());
    assert!(
        client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http())
            .await
            .is_err()
    );
    assert!(
        client
            .exchange_refresh_token(&RefreshToken::new(second_refresh.secret().clone()))
            .request_async(&http())
            .await
            .is_err(),
        "replay revoked the family"
    );
    assert_eq!(
        status(
            &fhir_client(refreshed.access_token().secret()),
            format!("{fhir_base}/Observation")
        )
        .await,
        401
    );

    // The same code again: refused, and what it gave is revoked.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(["launch/patient", "patient/*.rs"].map(|s| Scope::new(s.into())))
        .add_extra_param("aud", &fhir_base)
        .set_pkce_challenge(challenge)
        .url();
    let (redirect, _) =
        authorize_in_browser(&app, url.as_str(), "diaz@example.org", "1984-04-04", &[], None, true).await;
    let code = query_param(&redirect, "code").unwrap();
    let verifier_copy = PkceCodeVerifier::new(verifier.secret().clone());
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    assert!(token.refresh_token().is_none(), "no offline_access, no refresh token");
    assert!(
        client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier_copy)
            .request_async(&http())
            .await
            .is_err()
    );
    assert_eq!(
        status(
            &fhir_client(token.access_token().secret()),
            format!("{fhir_base}/Observation")
        )
        .await,
        401
    );
}

#[tokio::test]
async fn bad_verifiers_redirects_denials_and_narrowed_consent() {
    let app = spawn_app("sqlite").await;
    let fhir_base = format!("{}/fhir", app.origin);
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Ngata", "ngata@example.org", "1979-07-09").await;
    app.create(json!({"resourceType": "Communication", "status": "completed", "subject": {"reference": format!("Patient/{me}")}})).await;
    let client_id = register_app(&app).await;
    let client = smart_client(&app, &client_id);
    let start = |scopes: &'static [&'static str]| {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.iter().map(|s| Scope::new((*s).into())))
            .add_extra_param("aud", &fhir_base)
            .set_pkce_challenge(challenge)
            .url();
        (url.to_string(), verifier)
    };

    // A wrong PKCE verifier.
    let (url, _) = start(&["launch/patient", "patient/*.rs"]);
    let (redirect, _) = authorize_in_browser(&app, &url, "ngata@example.org", "1979-07-09", &[], None, true).await;
    let wrong = PkceCodeVerifier::new("x".repeat(64));
    let refused = client
        .exchange_code(AuthorizationCode::new(query_param(&redirect, "code").unwrap()))
        .set_pkce_verifier(wrong)
        .request_async(&http())
        .await;
    assert!(
        matches!(refused, Err(oauth2::RequestTokenError::ServerResponse(ref e)) if e.error().as_ref() == "invalid_grant"),
        "{refused:?}"
    );

    // An unregistered redirect_uri is never redirected to; a missing PKCE challenge or wrong aud is told to the app.
    let evil = url.replace("127.0.0.1%3A9%2Fcallback", "evil.example%2Fcallback");
    let page = Web::new(&app.origin).get(&evil).await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    let no_pkce: String = url
        .split('&')
        .filter(|p| !p.starts_with("code_challenge"))
        .collect::<Vec<_>>()
        .join("&");
    let told = Web::new(&app.origin).get(&no_pkce).await;
    assert_eq!(
        query_param(told.location.as_deref().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    let wrong_aud = url.replace(
        &form_urlencoded::byte_serialize(fhir_base.as_bytes()).collect::<String>(),
        "https%3A%2F%2Fother.example%2Ffhir",
    );
    let told = Web::new(&app.origin).get(&wrong_aud).await;
    assert_eq!(
        query_param(told.location.as_deref().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );

    // Denial.
    let (url, _) = start(&["launch/patient", "patient/*.rs"]);
    let (denied, _) = authorize_in_browser(&app, &url, "ngata@example.org", "1979-07-09", &[], None, false).await;
    assert_eq!(query_param(&denied, "error").as_deref(), Some("access_denied"));

    // Unticking a scope on the consent page narrows what the token may do.
    let (url, verifier) = start(&["launch/patient", "patient/Observation.rs", "patient/Communication.rs"]);
    let (redirect, _) = authorize_in_browser(
        &app,
        &url,
        "ngata@example.org",
        "1979-07-09",
        &["See your messages"],
        None,
        true,
    )
    .await;
    let token = client
        .exchange_code(AuthorizationCode::new(query_param(&redirect, "code").unwrap()))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    let granted: Vec<String> = token.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(granted, ["launch/patient", "patient/Observation.rs"]);
    let fhir = fhir_client(token.access_token().secret());
    assert_eq!(status(&fhir, format!("{fhir_base}/Observation")).await, 200);
    let comm = fhir.get(format!("{fhir_base}/Communication")).send().await.unwrap();
    assert_eq!(comm.status().as_u16(), 403);

    // Expired tokens stop working.
    app.state.clock.advance(3601 * 1000);
    assert_eq!(status(&fhir, format!("{fhir_base}/Observation")).await, 401);
}

/// A token for `scopes` from a full standalone launch by a patient, for an app registered with exactly them.
pub async fn patient_token(app: &TestApp, scopes: &[&str], email: &str, birth_date: &str) -> String {
    token_for_record(app, scopes, email, birth_date, None).await.0
}

/// As [`patient_token`], choosing `record` on the consent page (someone with several); also the ID token's
/// `fhirUser` (as JSON text) when `openid fhirUser` were asked.
pub async fn token_for_record(
    app: &TestApp,
    scopes: &[&str],
    email: &str,
    birth_date: &str,
    record: Option<&str>,
) -> (String, Option<String>) {
    let authorized = authorize_app(app, scopes, email, birth_date, record).await;
    (authorized.token, authorized.fhir_user)
}

/// What a standalone launch by a person gave a newly registered app.
pub struct Authorized {
    pub client_id: String,
    pub token: String,
    pub fhir_user: Option<String>,
}

/// Registers a public app for exactly `scopes`; the person at `email` authorizes it (choosing `record` when
/// they have several) and the app exchanges the code with PKCE.
pub async fn authorize_app(
    app: &TestApp,
    scopes: &[&str],
    email: &str,
    birth_date: &str,
    record: Option<&str>,
) -> Authorized {
    let client_id = register_public(app, &scopes.join(" ")).await;
    let client = smart_client(app, &client_id);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.iter().map(|s| Scope::new((*s).into())))
        .add_extra_param("aud", format!("{}/fhir", app.origin))
        .set_pkce_challenge(challenge)
        .url();
    let (redirect, _) = authorize_in_browser(app, url.as_str(), email, birth_date, &[], record, true).await;
    let token = client
        .exchange_code(AuthorizationCode::new(query_param(&redirect, "code").unwrap()))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    Authorized {
        client_id,
        token: token.access_token().secret().clone(),
        fhir_user: token
            .extra_fields()
            .id_token
            .as_deref()
            .map(claims_of)
            .map(|c| c["fhirUser"].to_string()),
    }
}

#[tokio::test]
async fn granular_scopes_filter_and_other_types_stay_out_of_reach() {
    let app = spawn_app("sqlite").await;
    let fhir_base = format!("{}/fhir", app.origin);
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Berg", "berg@example.org", "1990-09-09").await;
    let category = |code: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}]}]);
    let lab = app.create(json!({"resourceType": "Observation", "status": "final", "category": category("laboratory"), "code": {"text": "HbA1c"}, "subject": {"reference": format!("Patient/{me}")}})).await;
    let vital = app.create(json!({"resourceType": "Observation", "status": "final", "category": category("vital-signs"), "code": {"text": "BP"}, "subject": {"reference": format!("Patient/{me}")}})).await;
    app.create(json!({"resourceType": "Communication", "status": "completed", "subject": {"reference": format!("Patient/{me}")}})).await;

    let token = patient_token(
        &app,
        &["launch/patient", "patient/Observation.rs?category=laboratory"],
        "berg@example.org",
        "1990-09-09",
    )
    .await;
    let fhir = fhir_client(&token);
    let base = fhir_base.as_str();
    let get = |path: String| {
        let fhir = fhir.clone();
        async move {
            let r = fhir.get(format!("{base}/{path}")).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ids = |bundle: &Value| crate::helpers::ids(bundle);
    let (found, all) = get("Observation".into()).await;
    assert_eq!(found, 200);
    assert_eq!(ids(&all), std::slice::from_ref(&lab), "only laboratory results");
    assert!(ids(&get("Observation?category=vital-signs".into()).await.1).is_empty());
    assert_eq!(get(format!("Observation/{lab}")).await.0, 200);
    assert_eq!(
        get(format!("Observation/{vital}")).await.0,
        404,
        "outside the granular scope"
    );
    assert_eq!(
        get(format!("Observation/{vital}/_history")).await.1["entry"]
            .as_array()
            .map_or(0, Vec::len),
        0
    );
    assert_eq!(get("Communication".into()).await.0, 403);

    // `_include` and `$everything` reach only the types the token may read.
    let token = patient_token(
        &app,
        &["launch/patient", "patient/Observation.rs"],
        "berg@example.org",
        "1990-09-09",
    )
    .await;
    let fhir = fhir_client(&token);
    let included: Value = get_json(
        &fhir,
        format!("{}/fhir/Observation?_include=Observation:subject", app.origin),
    )
    .await;
    let types: Vec<&str> = included["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert!(types.iter().all(|t| *t == "Observation"), "{types:?}");
    assert_eq!(
        status(&fhir, format!("{}/fhir/Patient/{me}/$everything", app.origin)).await,
        403
    );
    let token = patient_token(
        &app,
        &["launch/patient", "patient/Patient.rs", "patient/Observation.rs"],
        "berg@example.org",
        "1990-09-09",
    )
    .await;
    let everything: Value = get_json(
        &fhir_client(&token),
        format!("{}/fhir/Patient/{me}/$everything", app.origin),
    )
    .await;
    let mut types: Vec<&str> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    types.sort();
    types.dedup();
    assert_eq!(
        types,
        ["Observation", "Patient"],
        "no Communication without a scope for it"
    );
}

#[tokio::test]
async fn removing_a_connected_app_ends_its_access_at_once() {
    let app = spawn_app("sqlite").await;
    let mut staff = staff_session(&app).await;
    let me = registered_patient(&app, &mut staff, "Kahn", "kahn@example.org", "1970-10-10").await;
    let token = patient_token(
        &app,
        &["launch/patient", "patient/Patient.rs"],
        "kahn@example.org",
        "1970-10-10",
    )
    .await;
    let fhir = fhir_client(&token);
    let read = format!("{}/fhir/Patient/{me}", app.origin);
    assert_eq!(status(&fhir, &read).await, 200);

    let (mut web, _) = crate::accounts::login(&app, "kahn@example.org", PASSWORD, "1970-10-10").await;
    let page = web.get("/connected-apps").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Health Diary"), "{}", page.text());
    let removed = web.submit(&page, "/connected-apps/remove", &[]).await;
    assert_eq!(removed.location.as_deref(), Some("/connected-apps"));
    assert!(
        web.get("/connected-apps")
            .await
            .text()
            .contains("No app has access to your record.")
    );
    assert_eq!(status(&fhir, &read).await, 401);
}

/// A confidential EHR app asking for `scopes`, launched by the signed-in staff member for `patient` from the
/// staff page.
pub async fn launched_app(app: &TestApp, staff: &mut Web, patient: &str, scopes: &[&str]) -> Authorized {
    let joined = scopes.join(" ");
    let (ok, out) = app
        .command(&[
            "client",
            "add",
            "--name",
            "Chart Viewer",
            "--secret",
            "--redirect-uri",
            REDIRECT,
            "--launch-url",
            "http://127.0.0.1:9/launch",
            "--scope",
            &joined,
        ])
        .await;
    assert!(ok, "{out}");
    let registered: Value = serde_json::from_str(out.trim()).unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let client = smart_client(app, client_id).set_client_secret(oauth2::ClientSecret::new(
        registered["client_secret"].as_str().unwrap().into(),
    ));
    let page = staff.get("/staff").await;
    let launched = staff
        .submit(
            &page,
            "/staff/launch",
            &[("patient", patient), ("client_id", client_id)],
        )
        .await;
    let launch = query_param(launched.location.as_deref().expect("to the app"), "launch").unwrap();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.iter().map(|s| Scope::new((*s).into())))
        .add_extra_param("aud", format!("{}/fhir", app.origin))
        .add_extra_param("launch", launch)
        .set_pkce_challenge(challenge)
        .url();
    let consent = staff.get(url.as_str()).await;
    assert_eq!(consent.status, 200, "{}", consent.text());
    let answer = staff
        .submit(&consent, "/oauth/authorize", &[("decision", "allow")])
        .await;
    let code = query_param(answer.location.as_deref().expect("back to the app"), "code").expect("code");
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    Authorized {
        client_id: client_id.to_owned(),
        token: token.access_token().secret().clone(),
        fhir_user: None,
    }
}

#[tokio::test]
async fn a_staff_member_launches_an_app_for_one_patient() {
    let app = spawn_app("sqlite").await;
    let fhir_base = format!("{}/fhir", app.origin);
    let mut staff = staff_session(&app).await;
    let patient = app.create(json!({"resourceType": "Patient", "name": [{"family": "Lund", "given": ["Ola"]}], "birthDate": "1950-01-01"})).await;
    let other = app
        .create(json!({"resourceType": "Patient", "name": [{"family": "Moe"}], "birthDate": "1951-01-01"}))
        .await;
    for (p, code) in [(&patient, "his"), (&other, "not his")] {
        app.create(json!({"resourceType": "Observation", "status": "final", "code": {"text": code}, "subject": {"reference": format!("Patient/{p}")}})).await;
    }
    let (ok, out) = app
        .command(&[
            "client",
            "add",
            "--name",
            "Lab Feed",
            "--secret",
            "--redirect-uri",
            REDIRECT,
            "--launch-url",
            "http://127.0.0.1:9/launch",
            "--scope",
            "launch openid fhirUser patient/*.rs",
        ])
        .await;
    assert!(ok, "{out}");
    let registered: Value = serde_json::from_str(out.trim()).unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let client = smart_client(&app, client_id).set_client_secret(oauth2::ClientSecret::new(
        registered["client_secret"].as_str().unwrap().into(),
    ));

    let page = staff.get("/staff").await;
    assert!(page.text().contains("Launch app"), "{}", page.text());
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "the CSP lets the launch form go to the app: {csp}"
    );
    let launched = staff
        .submit(
            &page,
            "/staff/launch",
            &[("patient", &patient), ("client_id", client_id)],
        )
        .await;
    assert_eq!(launched.status, 303, "{}", launched.text());
    let location = launched.location.unwrap();
    assert!(location.starts_with("http://127.0.0.1:9/launch?"), "{location}");
    assert_eq!(query_param(&location, "iss").as_deref(), Some(fhir_base.as_str()));
    let launch = query_param(&location, "launch").unwrap();

    let authorize = |launch: String| {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(["launch", "openid", "fhirUser", "patient/*.rs"].map(|s| Scope::new(s.into())))
            .add_extra_param("aud", &fhir_base)
            .add_extra_param("launch", launch)
            .set_pkce_challenge(challenge)
            .url();
        (url.to_string(), verifier)
    };
    let (url, verifier) = authorize(launch.clone());
    let consent = staff.get(&url).await;
    assert_eq!(consent.status, 200, "{}", consent.text());
    assert!(
        consent
            .text()
            .contains(&format!("Open Lab Feed for Patient/{patient}?")),
        "{}",
        consent.text()
    );
    let answer = staff
        .submit(&consent, "/oauth/authorize", &[("decision", "allow")])
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let code = query_param(answer.location.as_deref().unwrap(), "code").expect("code");
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    assert_eq!(token.extra_fields().patient.as_deref(), Some(patient.as_str()));
    let claims = claims_of(token.extra_fields().id_token.as_deref().unwrap());
    assert!(
        claims["fhirUser"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{fhir_base}/Practitioner/")),
        "{claims}"
    );
    let found: Value = get_json(
        &fhir_client(token.access_token().secret()),
        format!("{fhir_base}/Observation"),
    )
    .await;
    let texts: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["code"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["his"], "the launch patient's record only");

    // A launch is short-lived.
    let page = staff.get("/staff").await;
    let launched = staff
        .submit(
            &page,
            "/staff/launch",
            &[("patient", &patient), ("client_id", client_id)],
        )
        .await;
    let late = query_param(launched.location.as_deref().unwrap(), "launch").unwrap();
    app.state.clock.advance(6 * 60_000);
    let (url, _) = authorize(late);
    let refused = staff.get(&url).await;
    assert_eq!(
        query_param(refused.location.as_deref().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
}
