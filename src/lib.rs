//! CareSpace: a FHIR R4 patient-access server.
//!
//! - [`fhir_api`]: the FHIR REST door at `<base>/fhir`; [`portal`]: the patient and staff pages at `<base>/`;
//!   [`ops`]: health, readiness, metrics.
//! - [`access`]: the one gate (actor → grant) and the audit trail.
//! - [`accounts`]: people, passwords, invitations, sessions, throttling; [`mail`]: the outbox and its sender.
//! - [`records`]: the resource rules (validate, index, store, search, `$everything`, transactions).
//! - [`fhir`]: fhir-sdk glue (validation, search grammar, search parameters); [`store`]: the only SQL.
//! - [`import`]: loading Bundles and NDJSON from files.
#![forbid(unsafe_code)]

pub mod access;
pub mod accounts;
pub mod clock;
pub mod config;
pub mod error;
pub mod fhir;
pub mod fhir_api;
pub mod generate;
pub mod health;
pub mod import;
pub mod mail;
pub mod messaging;
pub mod oauth;
pub mod ops;
pub mod portal;
pub mod records;
pub mod routes;
pub mod share_link;
pub mod sharing;
pub mod smart;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::accounts::Accounts;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fhir::params::Registry;
use crate::fhir::profiles::{self, Profiles};
use crate::fhir::search::Limits;
use crate::mail::Mailer;
use crate::messaging::Messages;
use crate::oauth::OAuth;
use crate::records::Records;
use crate::routes::Routes;
use crate::sharing::Sharing;
use crate::store::SharedStore;

/// What every handler can reach: no globals besides the metrics registry. Handlers get a clone per request,
/// so it is one shared pointer.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub records: Records,
    pub accounts: Accounts,
    pub oauth: OAuth,
    pub mailer: Mailer,
    pub messages: Messages,
    pub sharing: Sharing,
    pub clock: Clock,
    /// `/fhir/metadata`, made once: it depends only on this build's definitions.
    pub capability_statement: Arc<str>,
    /// Signs SMART Health Link file locations (shared by every process on the database).
    pub link_key: ring::hmac::Key,
}

impl AppState {
    /// Opens the store (running migrations) and wires the rooms.
    pub async fn build(config: Config) -> Result<AppState> {
        let store = store::connect(&config.database_url()).await?;
        let mut definitions = profiles::embedded().map_err(Error::Store)?;
        Messages::extend_code_system(&mut definitions, &config.message_categories);
        let registry = Registry::new(&definitions).map_err(Error::Store)?;
        let profiles = Profiles::new(&definitions).map_err(Error::Store)?;
        let clock = Clock::default();
        let limits = Limits {
            default_count: config.default_count,
            max_count: config.max_count,
        };
        let records = Records::new(
            store.clone(),
            Arc::new(registry),
            Arc::new(profiles),
            clock.clone(),
            limits,
            config.fhir_base(),
            config.practice_organization.clone(),
        );
        let capability_statement = fhir_api::capability_statement(&records).to_string().into();
        let mailer = Mailer::new(&config, store.clone(), clock.clone())?;
        let accounts = Accounts::new(&config, store.clone(), records.clone(), mailer.clone(), clock.clone());
        let messages = Messages::new(records.clone(), &config.message_categories, clock.clone());
        let sharing = Sharing::new(
            records.clone(),
            store.clone(),
            mailer.clone(),
            clock.clone(),
            config.practice_name.clone(),
            config.base_url.clone(),
        );
        let key = oauth::keys::SigningKey::load(config.signing_key_file(), &store, clock.now_millis()).await?;
        let oauth = OAuth::new(store.clone(), clock.clone(), &config.base_url, key);
        let link_key = share_link::location_key(&store, clock.now_millis()).await?;
        Ok(AppState(Arc::new(App {
            config: Arc::new(config),
            store,
            records,
            accounts,
            oauth,
            mailer,
            messages,
            sharing,
            clock,
            capability_statement,
            link_key,
        })))
    }

    /// Every route the server answers (method and path template), read from the router it builds.
    pub fn route_table(&self) -> Vec<routes::Served> {
        self.routes().served().to_vec()
    }

    fn routes(&self) -> Routes {
        Routes::new()
            .nest("/fhir", fhir_api::routes().map(|fhir| fhir.layer(smart::cors())))
            .merge(ops::routes())
            .merge(portal::routes(self))
            .merge(smart::routes(self))
            .merge(share_link::routes())
    }

    pub fn router(&self) -> Router {
        self.routes()
            .into_router()
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .layer(middleware::from_fn(limit_headers))
            .layer(middleware::from_fn(client_address))
            .layer(middleware::from_fn(log_request))
            .with_state(self.clone())
    }
}

/// Every request runs with its client's address, which the audit trail records as where an access came from.
async fn client_address(req: Request, next: Next) -> Response {
    let address = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    match address {
        Some(address) => access::audit::from_address(address, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The most header bytes a request may carry; real clients send a few kilobytes (a SMART token included).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 431 for requests whose headers exceed [`MAX_HEADER_BYTES`] (hyper alone allows hundreds of kilobytes).
async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if size > MAX_HEADER_BYTES {
        use axum::response::IntoResponse as _;
        return (
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large",
        )
            .into_response();
    }
    next.run(req).await
}

/// One log line and one metric sample per request: method, route, status, latency.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    ops::metrics().observe_request(method.as_str(), &route, status, elapsed);
    tracing::info!(%method, %path, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    response
}

/// Serves until `shutdown` resolves, then finishes in-flight requests. Also runs the email sender and, every
/// ten minutes, the clean-up of ended sessions and expired links.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = state.messages.ensure_care_team(&state.config.practice_name).await {
        tracing::error!(error = %e, "the care team's Organization could not be made; patients cannot write to it");
    }
    state.mailer.spawn_worker();
    messaging::spawn_notifier(
        &state.records,
        state.store.clone(),
        state.mailer.clone(),
        state.clock.clone(),
        state.config.practice_name.clone(),
        state.config.base_url.clone(),
    );
    let accounts = state.accounts.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            if let Err(e) = accounts.purge().await {
                tracing::warn!(error = %e, "clean-up of sessions and links failed");
            }
        }
    });
    let app = state
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    if let Err(e) = state.records.flush_audit().await {
        tracing::warn!(error = %e, "the audit journal was not moved in before stopping; the next start will");
    }
    Ok(())
}
