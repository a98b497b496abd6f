//! The authorization server as backend services use it: client registration on the command line,
//! client_credentials with a secret or a signed JWT assertion (the SMART IG's published example keys),
//! bearer tokens on the FHIR API with scopes enforced by the gate, introspection and revocation.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fhir_client, interop_dir, spawn_app};

/// `carespace client add …` → the JSON it prints.
async fn client_add(app: &TestApp, args: &[&str]) -> Value {
    let mut all = vec!["client", "add"];
    all.extend_from_slice(args);
    let (ok, out) = app.command(&all).await;
    assert!(ok, "{out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.origin))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let r = request.send().await.expect("token request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn post_form(app: &TestApp, path: &str, basic: (&str, &str), form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", app.origin))
        .basic_auth(basic.0, Some(basic.1))
        .form(form)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn backend_service_with_a_client_secret_gets_exactly_its_scopes() {
    let app = spawn_app("sqlite").await;
    let patient = app
        .create(json!({"resourceType": "Patient", "birthDate": "1970-01-01"}))
        .await;
    let obs = app
        .create(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}}))
        .await;
    let registered = client_add(
        &app,
        &[
            "--name",
            "lab feed",
            "--secret",
            "--scope",
            "system/Observation.rs system/Patient.r",
        ],
    )
    .await;
    let (id, secret) = (
        registered["client_id"].as_str().unwrap(),
        registered["client_secret"].as_str().unwrap(),
    );

    let (status, headers, body) = token_request(
        &app,
        Some((id, secret)),
        &[("grant_type", "client_credentials"), ("scope", "system/Observation.rs")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "system/Observation.rs");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let token = body["access_token"].as_str().unwrap().to_owned();

    let (status, _, body) = token_request(&app, Some((id, "wrong")), &[("grant_type", "client_credentials")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let (status, _, body) = token_request(
        &app,
        Some((id, secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Communication.rs"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, _, body) = token_request(&app, Some((id, secret)), &[("grant_type", "password")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));

    // The token reads what its scopes say and nothing else.
    let fhir = fhir_client(&token);
    let get = |path: String| {
        let fhir = fhir.clone();
        async move { fhir.get(path).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(format!("{}/Observation/{obs}", app.base)).await, 200);
    assert_eq!(get(format!("{}/Observation?patient={patient}", app.base)).await, 200);
    assert_eq!(
        get(format!("{}/Patient/{patient}", app.base)).await,
        403,
        "Patient.r was registered but not asked for"
    );
    let refused = fhir
        .post(format!("{}/Observation", app.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Observation", "status": "final", "code": {"text": "y"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "forbidden");

    // No token, or a made-up one: 401 with a Bearer challenge.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/Observation/{obs}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = fhir_client("made-up")
        .get(format!("{}/Observation/{obs}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert!(
        forged.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // /metadata stays open.
    assert_eq!(
        reqwest::Client::new()
            .get(format!("{}/metadata", app.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // Introspection, then revocation takes effect on the next request.
    let seen = post_form(&app, "/oauth/introspect", (id, secret), &[("token", &token)]).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["scope"], "system/Observation.rs");
    post_form(&app, "/oauth/revoke", (id, secret), &[("token", &token)]).await;
    assert_eq!(get(format!("{}/Observation/{obs}", app.base)).await, 401);
    assert_eq!(
        post_form(&app, "/oauth/introspect", (id, secret), &[("token", &token)]).await["active"],
        false
    );

    // Tokens expire after an hour.
    let (_, _, body) = token_request(&app, Some((id, secret)), &[("grant_type", "client_credentials")]).await;
    let fresh = fhir_client(body["access_token"].as_str().unwrap());
    app.state.clock.advance(3601 * 1000);
    assert_eq!(
        fresh
            .get(format!("{}/Observation/{obs}", app.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
}

/// A signing key of the SMART IG's examples (`RS384` or `ES384`), from its private JWK.
fn example_key(dir: &std::path::Path, alg: &str) -> (jsonwebtoken::EncodingKey, String, String) {
    let private: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{alg}.private.json"))).unwrap()).unwrap();
    let jwk = private["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k.get("d").is_some())
        .unwrap()
        .clone();
    let b64 = |k: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[k].as_str().unwrap())
            .unwrap()
    };
    let key = if alg == "RS384" {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let big = |k: &str| rsa::BigUint::from_bytes_be(&b64(k));
        let private =
            rsa::RsaPrivateKey::from_components(big("n"), big("e"), big("d"), vec![big("p"), big("q")]).unwrap();
        jsonwebtoken::EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes())
    } else {
        use p384::pkcs8::EncodePrivateKey as _;
        let secret = p384::SecretKey::from_slice(&b64("d")).unwrap();
        jsonwebtoken::EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes())
    };
    let public = std::fs::read_to_string(dir.join(format!("{alg}.public.json"))).unwrap();
    (key, jwk["kid"].as_str().unwrap().to_owned(), public)
}

#[tokio::test]
async fn backend_services_authenticate_with_the_smart_example_keys() {
    let Some(interop) = interop_dir() else { return };
    let keys = interop.join("smart-keys");
    let app = spawn_app("sqlite").await;
    let aud = format!("{}/oauth/token", app.origin);
    for alg in ["RS384", "ES384"] {
        let (key, kid, public) = example_key(&keys, alg);
        let jwks_file = app.dir.path().join(format!("{alg}.jwks.json"));
        std::fs::write(&jwks_file, public).unwrap();
        let registered = client_add(
            &app,
            &[
                "--name",
                "bulk",
                "--jwks",
                jwks_file.to_str().unwrap(),
                "--scope",
                "system/*.rs",
            ],
        )
        .await;
        let client_id = registered["client_id"].as_str().unwrap().to_owned();
        assert!(registered.get("client_secret").is_none());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let sign = |aud: &str, exp: i64, jti: &str, key: &jsonwebtoken::EncodingKey| {
            let mut header = jsonwebtoken::Header::new(if alg == "RS384" {
                jsonwebtoken::Algorithm::RS384
            } else {
                jsonwebtoken::Algorithm::ES384
            });
            header.kid = Some(kid.clone());
            jsonwebtoken::encode(
                &header,
                &json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "jti": jti}),
                key,
            )
            .unwrap()
        };
        let app = &app;
        let ask = |assertion: String| async move {
            token_request(
                app,
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/Observation.rs"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        };
        let good = sign(&aud, now + 240, &format!("{alg}-1"), &key);
        let (status, _, body) = ask(good.clone()).await;
        assert_eq!(status, 200, "{alg}: {body}");
        assert_eq!(body["scope"], "system/Observation.rs");
        let (status, _, body) = ask(good).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{alg}: a replayed jti"
        );
        let (status, _, _) = ask(sign(
            "https://elsewhere.example/token",
            now + 240,
            &format!("{alg}-2"),
            &key,
        ))
        .await;
        assert_eq!(status, 401, "{alg}: wrong aud");
        let (status, _, _) = ask(sign(&aud, now - 120, &format!("{alg}-3"), &key)).await;
        assert_eq!(status, 401, "{alg}: expired");
        let (status, _, _) = ask(sign(&aud, now + 3600, &format!("{alg}-4"), &key)).await;
        assert_eq!(status, 401, "{alg}: valid for too long");
        // Signed by another key (the other algorithm's example key under this kid): a bad signature.
        let other = example_key(&keys, if alg == "RS384" { "ES384" } else { "RS384" }).0;
        let mut header = jsonwebtoken::Header::new(if alg == "RS384" {
            jsonwebtoken::Algorithm::ES384
        } else {
            jsonwebtoken::Algorithm::RS384
        });
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "jti": format!("{alg}-5")}),
            &other,
        )
        .unwrap();
        let (status, _, _) = ask(forged).await;
        assert_eq!(status, 401, "{alg}: bad signature");
        // A tampered payload under a real signature.
        let real = sign(&aud, now + 240, &format!("{alg}-6"), &key);
        let parts: Vec<&str> = real.split('.').collect();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "jti": format!("{alg}-7")})
                .to_string(),
        );
        let (status, _, _) = ask(format!("{}.{claims}.{}", parts[0], parts[2])).await;
        assert_eq!(status, 401, "{alg}: tampered claims");
    }
}

#[tokio::test]
async fn backend_service_keys_can_be_fetched_from_its_jwks_url() {
    let Some(interop) = interop_dir() else { return };
    let keys = interop.join("smart-keys");
    let app = spawn_app("sqlite").await;
    let (key, kid, public) = example_key(&keys, "RS384");
    // The service publishes its public keys at a URL of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let published = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { public }),
    );
    tokio::spawn(async move { axum::serve(listener, published).await });
    let refused = app
        .command(&[
            "client",
            "add",
            "--name",
            "bulk",
            "--jwks-url",
            "http://elsewhere.example/jwks.json",
            "--scope",
            "system/*.rs",
        ])
        .await;
    assert!(!refused.0, "plain http only on this machine: {}", refused.1);
    let registered = client_add(
        &app,
        &["--name", "bulk", "--jwks-url", &jwks_url, "--scope", "system/*.rs"],
    )
    .await;
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384);
    header.kid = Some(kid);
    let aud = format!("{}/oauth/token", app.origin);
    for jti in ["url-1", "url-2"] {
        let assertion = jsonwebtoken::encode(
            &header,
            &json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "jti": jti}),
            &key,
        )
        .unwrap();
        let (status, _, body) = token_request(
            &app,
            None,
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
        )
        .await;
        assert_eq!(status, 200, "{jti}: {body}");
        assert_eq!(body["scope"], "system/*.rs");
    }
}
