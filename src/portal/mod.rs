//! The portal door: server-rendered pages for patients (`/`, `/login`, `/register`, `/forgot-password`,
//! `/reset-password`, `/connected-apps`) and the care team (`/staff`). Handlers turn forms into calls on `accounts` (and, in later
//! pages, `records`) and render the result; rules live in those rooms. Every state-changing form carries a
//! CSRF token that must equal the `carespace_csrf` cookie; every page is `no-store` and framed by nobody.

mod connected_apps;
mod documents;
mod download;
mod health;
mod login;
mod messages;
mod proxies;
mod register;
pub mod render;
mod reset;
mod resources;
mod send_record;
mod staff;
mod trail;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::access::audit::{AccountAction, AccountEvent};
use crate::accounts::{SignedIn, secret};
use crate::routes::Routes;

const SESSION_COOKIE: &str = "carespace_session";
const CSRF_COOKIE: &str = "carespace_csrf";
/// Portal forms are small; a larger body is not a form of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn routes(state: &AppState) -> Routes {
    Routes::new()
        .get("/", health::show)
        .get("/documents", documents::list)
        .get("/documents/{id}", documents::open)
        .get("/resources", resources::show)
        .get("/messages", messages::list)
        .get("/messages/new", messages::new)
        .post("/messages/new", messages::send)
        .get("/messages/{id}", messages::open)
        .post("/messages/{id}/reply", messages::reply)
        .get("/staff/messages", messages::staff_list)
        .get("/staff/messages/{id}", messages::staff_open)
        .post("/staff/messages/{id}/reply", messages::staff_reply)
        .get("/staff/patients/{patient}/audit", trail::staff_page)
        .get("/staff/patients/{patient}/message", messages::staff_new)
        .post("/staff/patients/{patient}/message", messages::staff_send)
        .get("/download", download::download)
        .get("/summary", download::view)
        .get("/login", login::show_patient)
        .post("/login", login::submit_patient)
        .post("/logout", login::sign_out)
        .get("/register", register::show)
        .post("/register", register::submit)
        .get("/forgot-password", reset::show_request)
        .post("/forgot-password", reset::submit_request)
        .get("/reset-password", reset::show_reset)
        .post("/reset-password", reset::submit_reset)
        .get("/staff/login", login::show_staff)
        .post("/staff/login", login::submit_staff)
        .get("/send-record", send_record::show)
        .post("/send-record", send_record::send)
        .get("/sent-records", send_record::sent)
        .get("/shl/view", send_record::viewer)
        .post("/sent-records/deactivate", send_record::deactivate)
        .get("/manage-users", proxies::show)
        .post("/manage-users/grant", proxies::grant)
        .post("/manage-users/resend", proxies::resend)
        .post("/manage-users/revoke", proxies::revoke)
        .get("/records", proxies::choose)
        .post("/records", proxies::open)
        .get("/connected-apps", connected_apps::show)
        .post("/connected-apps/remove", connected_apps::remove)
        .get("/staff", staff::show)
        .post("/staff/invite", staff::invite)
        .post("/staff/resend", staff::resend)
        .post("/staff/launch", staff::launch)
        .post("/staff/revoke-access", staff::revoke_access)
        .get("/assets/portal.css", || {
            asset("text/css", include_str!("assets/portal.css"))
        })
        .get("/assets/portal.js", || {
            asset("text/javascript", include_str!("assets/portal.js"))
        })
        .get("/assets/shl-viewer.js", || {
            asset("text/javascript", include_str!("assets/shl-viewer.js"))
        })
        .get("/assets/smart-style.json", || {
            asset("application/json", include_str!("assets/smart-style.json"))
        })
        .map(|pages| with_page_layers(pages, state))
}

/// What every page of ours gets (here and in other doors' pages, like the SMART consent page): the CSRF
/// cookie and the page headers.
pub fn with_page_layers(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router
        .layer(middleware::from_fn_with_state(state.clone(), csrf_cookie))
        .layer(middleware::from_fn(page_headers))
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Headers for every portal response: no caching of personal pages, no framing, scripts and styles only from
/// here, no referrer (links carry tokens in their query).
async fn page_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&content_security_policy(""))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    response
}

/// The pages' Content-Security-Policy: everything from this origin only; forms may also go to `form_targets`
/// (space-separated origins; Chromium applies `form-action` to the redirect after a form, so a page whose form
/// answers with a redirect elsewhere must name that origin).
pub fn content_security_policy(form_targets: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; \
         frame-ancestors 'none'; form-action 'self' {form_targets}; base-uri 'none'"
    )
    .replace("'self' ;", "'self';")
}

/// `scheme://host[:port]` of a URL, for naming it in a CSP.
pub fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of this visitor (from the cookie, or new).
#[derive(Clone)]
struct Csrf(String);

/// Gives every visitor a CSRF cookie (a random value the forms repeat), set the first time it is missing.
async fn csrf_cookie(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let existing = cookie(req.headers(), CSRF_COOKIE)
        .filter(|v| v.len() == 43)
        .map(str::to_owned);
    let fresh = existing.is_none();
    let value = match existing.map(Ok).unwrap_or_else(secret::token) {
        Ok(v) => v,
        Err(e) => return render::failure(&e),
    };
    req.extensions_mut().insert(Csrf(value.clone()));
    let secure = state.config.https();
    let mut response = next.run(req).await;
    // A sign-in or sign-out sets its own (rotated) token.
    let already_set = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|c| c.as_bytes().starts_with(CSRF_COOKIE.as_bytes()));
    if fresh
        && !already_set
        && let Ok(v) = HeaderValue::from_str(&set_cookie(CSRF_COOKIE, &value, secure))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `Set-Cookie` value: host-only, whole site, not readable by scripts, not sent on cross-site subrequests.
fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

fn expire_cookie(name: &str, secure: bool) -> String {
    format!(
        "{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Who is at the browser: the signed-in account (if any), the visitor's CSRF token and network address.
pub struct Visitor {
    pub signed_in: Option<SignedIn>,
    pub csrf: String,
    pub address: String,
    pub secure: bool,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let signed_in = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(value) => state.accounts.session(value).await.map_err(|e| render::failure(&e))?,
            None => None,
        };
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(Visitor {
            signed_in,
            csrf: parts.extensions.get::<Csrf>().map(|c| c.0.clone()).unwrap_or_default(),
            address,
            secure: state.config.https(),
        })
    }
}

impl Visitor {
    /// Records in the audit trail something the signed-in person did with their record's access (an app
    /// allowed or disconnected, a sent record's link turned off): `what` in words. A failure to record is
    /// logged; what was done stays done.
    pub async fn audit(&self, state: &AppState, action: AccountAction, patient: Option<&str>, what: &str) {
        let Some(signed_in) = &self.signed_in else { return };
        let actor = signed_in.actor().map(|a| a.audit_name()).unwrap_or_default();
        let patient = patient.or_else(|| signed_in.opened.as_ref().map(|g| g.patient.as_str()));
        let own = signed_in.account.person.strip_prefix("Patient/");
        let event = AccountEvent {
            action,
            agent: &actor,
            patient: patient.or(own),
            proxy: None,
            disclosed: Some(what),
            success: true,
            address: Some(&self.address),
            recorded: "",
        };
        if let Err(e) = state.records.audit_account(&event).await {
            tracing::error!(error = %e, "an account action could not be audited");
        }
    }

    /// A redirect after sign-in: a new session cookie and a new CSRF token (nothing set before sign-in
    /// survives it, so a planted cookie is useless).
    fn signed_in_redirect(&self, session: &str, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        let h = response.headers_mut();
        for cookie in [
            set_cookie(SESSION_COOKIE, session, self.secure),
            set_cookie(CSRF_COOKIE, &secret::token().unwrap_or_default(), self.secure),
        ] {
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.append(header::SET_COOKIE, v);
            }
        }
        response
    }

    /// A redirect that forgets the session cookie.
    fn signed_out_redirect(&self, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        if let Ok(v) = HeaderValue::from_str(&expire_cookie(SESSION_COOKIE, self.secure)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        response
    }
}

/// A submitted portal form whose `csrf` field matches the visitor's CSRF cookie.
pub struct PortalForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PortalForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = cookie(req.headers(), CSRF_COOKIE).map(str::to_owned);
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                render::message_page(
                    state,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too much data",
                    "The form sent more data than it may.",
                )
            })?;
        let sent = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        match (expected, sent) {
            (Some(expected), Some(sent)) if secret::same(&expected, &sent) => {}
            _ => {
                return Err(render::message_page(
                    state,
                    StatusCode::FORBIDDEN,
                    "This form has expired",
                    "The form could not be accepted because its security token is missing or out of date (for example after signing in elsewhere). Go back, reload the page and try again.",
                ));
            }
        }
        serde_urlencoded::from_bytes(&body).map(PortalForm).map_err(|e| {
            render::message_page(
                state,
                StatusCode::BAD_REQUEST,
                "The form is incomplete",
                &format!("The form could not be read: {e}."),
            )
        })
    }
}

/// `next=` after sign-in: only a path on this site (`/x`), never another host (`//evil`, `/\evil`).
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(local_path("/staff?name=a"), Some("/staff?name=a"));
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn cookies_are_secure_only_over_https() {
        let plain = set_cookie(SESSION_COOKIE, "v", false);
        assert_eq!(plain, "carespace_session=v; Path=/; HttpOnly; SameSite=Lax");
        assert!(set_cookie(SESSION_COOKIE, "v", true).ends_with("; Secure"));
        assert!(expire_cookie(SESSION_COOKIE, true).contains("Max-Age=0"));
    }
}
