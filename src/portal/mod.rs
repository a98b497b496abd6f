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

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::accounts::{SignedIn, secret};

const SESSION_COOKIE: &str = "carespace_session";
const CSRF_COOKIE: &str = "carespace_csrf";
/// Portal forms are small; a larger body is not a form of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(health::show))
        .route("/documents", get(documents::list))
        .route("/documents/{id}", get(documents::open))
        .route("/resources", get(resources::show))
        .route("/messages", get(messages::list))
        .route("/messages/new", get(messages::new).post(messages::send))
        .route("/messages/{id}", get(messages::open))
        .route("/messages/{id}/reply", post(messages::reply))
        .route("/staff/messages", get(messages::staff_list))
        .route("/staff/messages/{id}", get(messages::staff_open))
        .route("/staff/messages/{id}/reply", post(messages::staff_reply))
        .route(
            "/staff/patients/{patient}/message",
            get(messages::staff_new).post(messages::staff_send),
        )
        .route("/download", get(download::download))
        .route("/summary", get(download::view))
        .route("/login", get(login::show_patient).post(login::submit_patient))
        .route("/logout", post(login::sign_out))
        .route("/register", get(register::show).post(register::submit))
        .route("/forgot-password", get(reset::show_request).post(reset::submit_request))
        .route("/reset-password", get(reset::show_reset).post(reset::submit_reset))
        .route("/staff/login", get(login::show_staff).post(login::submit_staff))
        .route("/send-record", get(send_record::show).post(send_record::send))
        .route("/sent-records", get(send_record::sent))
        .route("/shl/view", get(send_record::viewer))
        .route("/sent-records/deactivate", post(send_record::deactivate))
        .route("/manage-users", get(proxies::show))
        .route("/manage-users/grant", post(proxies::grant))
        .route("/manage-users/resend", post(proxies::resend))
        .route("/manage-users/revoke", post(proxies::revoke))
        .route("/records", get(proxies::choose).post(proxies::open))
        .route("/connected-apps", get(connected_apps::show))
        .route("/connected-apps/remove", post(connected_apps::remove))
        .route("/staff", get(staff::show))
        .route("/staff/invite", post(staff::invite))
        .route("/staff/resend", post(staff::resend))
        .route("/staff/launch", post(staff::launch))
        .route("/staff/revoke-access", post(staff::revoke_access))
        .route(
            "/assets/portal.css",
            get(|| asset("text/css", include_str!("assets/portal.css"))),
        )
        .route(
            "/assets/portal.js",
            get(|| asset("text/javascript", include_str!("assets/portal.js"))),
        )
        .route(
            "/assets/shl-viewer.js",
            get(|| asset("text/javascript", include_str!("assets/shl-viewer.js"))),
        )
        .route(
            "/assets/smart-style.json",
            get(|| asset("application/json", include_str!("assets/smart-style.json"))),
        );
    with_page_layers(pages, state)
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
