//! `/oauth/authorize` (GET and POST): the request is checked, the user signs in through the portal's login
//! (email, password, date of birth) if needed, then sees what the app asks for in plain words, may untick
//! optional scopes, and allows or denies. The answer goes to the app's registered redirect URI.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::AppState;
use crate::access::audit::AccountAction;
use crate::accounts::SignedIn;
use crate::accounts::proxies::Openable;
use crate::oauth::grant::{AuthError, AuthParams, AuthRequest, with_query};
use crate::oauth::scope::{Context, ResourceScope, Scopes};
use crate::portal::origin_of;
use crate::portal::render::{self, Chrome};
use crate::portal::{PortalForm, Visitor};
use crate::store::accounts::AccountKind;

/// Scopes the user cannot untick: who they are and whose record is open, which the app needs to work at all.
fn required(scope: &str) -> bool {
    matches!(scope, "openid" | "fhirUser" | "profile" | "launch/patient" | "launch")
}

/// A scope in words a patient understands.
fn describe(scope: &str) -> String {
    match scope {
        "openid" | "fhirUser" | "profile" => return "Know who you are (your name and your portal account)".into(),
        "launch/patient" | "launch" => return "Know whose health record is open".into(),
        "offline_access" => {
            return "Keep its access after you close it, until you remove it under \"Connected apps\"".into();
        }
        "online_access" => return "Keep its access while you are using it".into(),
        _ => {}
    }
    let Ok(parsed) = Scopes::parse(scope) else {
        return scope.to_owned();
    };
    let Some(ResourceScope {
        context,
        rtype,
        ops,
        query,
    }) = parsed.resources.first()
    else {
        return scope.to_owned();
    };
    let what = match rtype.as_deref() {
        None => "all of your health record".to_owned(),
        Some(t) => format!("your {}", plain_type(t)),
    };
    let whose = if *context == Context::User {
        " (everything your account can see)"
    } else {
        ""
    };
    let mut verbs = Vec::new();
    if ops.read || ops.search {
        verbs.push("see");
    }
    if ops.create {
        verbs.push("add to");
    }
    if ops.update {
        verbs.push("change");
    }
    if ops.delete {
        verbs.push("delete");
    }
    let only = query.as_deref().map(|q| format!(" (only {q})")).unwrap_or_default();
    let mut text = format!("{} {what}{only}{whose}", verbs.join(", "));
    text[..1].make_ascii_uppercase();
    text
}

fn plain_type(t: &str) -> String {
    match t {
        "Observation" => "lab results and other measurements".into(),
        "DocumentReference" | "Binary" => "documents".into(),
        "Communication" => "messages".into(),
        "Condition" => "conditions and diagnoses".into(),
        "MedicationRequest" => "prescriptions".into(),
        "AllergyIntolerance" => "allergies".into(),
        "Immunization" => "immunizations".into(),
        "Encounter" => "visits".into(),
        "Patient" => "personal details (name, date of birth, contact details)".into(),
        "Procedure" => "procedures".into(),
        other => format!("{other} records"),
    }
}

/// `records`: those the user may open, when they may open several (a proxy chooses one for the app).
fn consent_page(state: &AppState, visitor: &Visitor, request: &AuthRequest, records: &[Openable]) -> Markup {
    let open_now = visitor.signed_in.as_ref().and_then(|s| {
        s.opened
            .as_ref()
            .map(|g| g.patient.clone())
            .or_else(|| s.account.person.strip_prefix("Patient/").map(str::to_owned))
    });
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    };
    let p = &request.params;
    render::page(
        &chrome,
        &match &request.launch {
            Some(l) => format!("Open {} for Patient/{}?", request.client.name, l.patient),
            None => format!("Allow {} to use your record?", request.client.name),
        },
        html! {
            @if let Some(u) = visitor.signed_in.as_ref().map(|s| &s.account) {
                p { "Signed in as " strong { (u.display_name) } ". " (request.client.name) " asks to:" }
            }
            form.card method="post" action="/oauth/authorize" {
                input type="hidden" name="csrf" value=(visitor.csrf);
                @for (name, value) in [("response_type", &p.response_type), ("client_id", &p.client_id), ("redirect_uri", &p.redirect_uri),
                    ("scope", &p.scope), ("state", &p.state), ("aud", &p.aud), ("code_challenge", &p.code_challenge),
                    ("code_challenge_method", &p.code_challenge_method)] {
                    input type="hidden" name=(name) value=(value);
                }
                @if let Some(nonce) = &p.nonce {
                    input type="hidden" name="nonce" value=(nonce);
                }
                @if let Some(launch) = &p.launch {
                    input type="hidden" name="launch" value=(launch);
                }
                @if records.len() > 1 {
                    fieldset.records {
                        legend { "Whose record may the app use?" }
                        @for (i, r) in records.iter().enumerate() {
                            @let id = format!("record-{i}");
                            @let checked = open_now.as_deref().map_or(i == 0, |p| p == r.patient);
                            div {
                                input type="radio" id=(id) name="patient" value=(r.patient) checked[checked] required;
                                " "
                                label for=(id) { @if r.grant.is_none() { "My record" } @else { (r.name) } }
                            }
                        }
                    }
                } @else if let Some(r) = records.first() {
                    input type="hidden" name="patient" value=(r.patient);
                }
                ul.scopes {
                    @for (i, scope) in request.scopes.all.iter().enumerate() {
                        li {
                            @if required(scope) {
                                (describe(scope))
                            } @else {
                                @let id = format!("g{i}");
                                input type="checkbox" id=(id) name=(id) value="on" checked;
                                " "
                                label for=(id) { (describe(scope)) }
                            }
                        }
                    }
                }
                p.hint { "You can remove an app's access at any time." }
                button type="submit" name="decision" value="allow" { "Allow" }
                " "
                button.secondary type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

fn refused(state: &AppState, err: AuthError) -> Response {
    match err.location() {
        Some(location) => Redirect::to(&location).into_response(),
        None => {
            let AuthError::Page(why) = err else {
                unreachable!("a page error has no location")
            };
            render::message_page(
                state,
                StatusCode::BAD_REQUEST,
                "This app's sign-in request cannot be used",
                &why,
            )
        }
    }
}

/// Who may answer this request: for an EHR launch the staff member who launched, otherwise a patient.
fn answerer<'a>(visitor: &'a Visitor, request: &AuthRequest) -> Option<&'a SignedIn> {
    visitor.signed_in.as_ref().filter(|s| match &request.launch {
        Some(l) => s.account.kind == AccountKind::Staff && s.account.id == l.account_id,
        None => s.account.kind != AccountKind::Staff,
    })
}

/// The way to the right login page and back here.
fn to_login(request: &AuthRequest, path_and_query: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    let page = if request.launch.is_some() {
        "/staff/login"
    } else {
        "/login"
    };
    Redirect::to(&format!("{page}?next={next}")).into_response()
}

pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    Query(params): Query<AuthParams>,
) -> Response {
    let request = match state.oauth.authorization_request(params).await {
        Ok(r) => r,
        Err(e) => return refused(&state, e),
    };
    if answerer(&visitor, &request).is_none() {
        return to_login(&request, &format!("/oauth/authorize?{}", raw.unwrap_or_default()));
    }
    let records = match (&request.launch, visitor.signed_in.as_ref()) {
        (None, Some(s)) => match state.accounts.openable(s).await {
            Ok(r) => r,
            Err(e) => return render::failure(&e),
        },
        _ => Vec::new(),
    };
    if request.launch.is_none() && records.is_empty() {
        return render::message_page(
            &state,
            StatusCode::FORBIDDEN,
            "No record to share",
            "No record is open to you at the moment, so there is nothing the app could use.",
        );
    }
    let mut response = render::respond(StatusCode::OK, consent_page(&state, &visitor, &request, &records));
    // The consent form answers with a redirect to the app: the page's CSP must let the form go there.
    let origin = origin_of(&request.params.redirect_uri);
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::portal::content_security_policy(&origin)) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

pub async fn decide(
    State(state): State<AppState>,
    visitor: Visitor,
    PortalForm(form): PortalForm<HashMap<String, String>>,
) -> Response {
    let params: AuthParams = match serde_json::to_value(&form).and_then(serde_json::from_value) {
        Ok(p) => p,
        Err(e) => {
            return render::message_page(
                &state,
                StatusCode::BAD_REQUEST,
                "The form is incomplete",
                &e.to_string(),
            );
        }
    };
    let request = match state.oauth.authorization_request(params).await {
        Ok(r) => r,
        Err(e) => return refused(&state, e),
    };
    let Some(signed_in) = answerer(&visitor, &request) else {
        return render::message_page(
            &state,
            StatusCode::UNAUTHORIZED,
            "Please log in again",
            "Your session ended before you answered. Start again from the app.",
        );
    };
    let p = &request.params;
    if form.get("decision").map(String::as_str) != Some("allow") {
        let to = with_query(
            &p.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
                ("state", &p.state),
            ],
        );
        return Redirect::to(&to).into_response();
    }
    let granted = request.scopes.only(|w| {
        let i = request.scopes.all.iter().position(|s| s == w).unwrap_or(usize::MAX);
        required(w) || form.contains_key(&format!("g{i}"))
    });
    let chosen = form.get("patient").map(String::as_str);
    match state
        .oauth
        .issue_code(&request, &signed_in.account, &granted, chosen)
        .await
    {
        Ok(code) => {
            let what = format!("app {}: {}", p.client_id, granted.all.join(" "));
            visitor.audit(&state, AccountAction::AppAuthorized, chosen, &what).await;
            Redirect::to(&with_query(&p.redirect_uri, &[("code", &code), ("state", &p.state)])).into_response()
        }
        Err(r) => render::message_page(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            &r.description,
        ),
    }
}
