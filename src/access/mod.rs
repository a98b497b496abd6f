//! THE gate. Every read or write of patient data asks [`authorize`] first; only it can build the [`Grant`]
//! that store calls require, and the grant carries the patients the actor may touch so the store filters in
//! SQL. [`audit`] turns what was granted into AuditEvents. Nothing here knows HTTP.

pub mod actor;
pub mod audit;
mod grant;

pub use actor::Actor;
pub use grant::{Action, DIRECTORY_TYPES, Grant, ScopeFilter, authorize, readable_types};
