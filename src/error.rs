//! The domain error: what went wrong, in words every door can render. It knows no HTTP; `fhir_api/outcome.rs`
//! maps each variant to a status and an OperationOutcome.

use std::fmt;

/// One problem found in a request, with the element path (FHIRPath-like) where it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// FHIR issue-type code (`structure`, `required`, `value`, `invariant`, `processing`, ...).
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn new(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self {
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        if !path.is_empty() {
            self.expression = Some(path);
        }
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expression {
            Some(path) => write!(f, "{path}: {}", self.diagnostics),
            None => f.write_str(&self.diagnostics),
        }
    }
}

fn join(issues: &[Issue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not well-formed FHIR (bad JSON, unknown element, wrong type).
    #[error("invalid: {}", join(.0))]
    Invalid(Vec<Issue>),
    /// Well-formed but breaks a profile or a business rule.
    #[error("unprocessable: {}", join(.0))]
    Unprocessable(Vec<Issue>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("gone: {0}")]
    Gone(String),
    /// A version or uniqueness conflict (e.g. a concurrent write).
    #[error("conflict: {0}")]
    Conflict(String),
    /// `If-Match` named a version that is not the current one.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The interaction exists but not for this target (e.g. POST on an instance).
    #[error("not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No valid credentials (a failed sign-in, an expired session or token).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Too many attempts: the caller must wait (the message says how long).
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// The database failed; the cause is logged, not shown.
    #[error("storage failure: {0}")]
    Store(String),
}

impl Error {
    pub fn invalid(issue: Issue) -> Self {
        Error::Invalid(vec![issue])
    }

    /// A form field's value is not acceptable: the portal shows `message` next to `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::invalid(Issue::new("value", message).at(field))
    }
}

impl From<sqlx::Error> for Error {
    /// A unique violation is two writers creating the same thing at once: a conflict the writer can retry,
    /// on either engine, without matching on SQL text.
    fn from(err: sqlx::Error) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => {
                Error::Conflict("changed by another request at the same time".into())
            }
            _ => Error::Store(err.to_string()),
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// As for sqlx: a unique or primary-key violation is a conflict the writer can retry.
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match err.sqlite_error() {
            Some(e)
                if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Error::Conflict("changed by another request at the same time".into())
            }
            _ => Error::Store(err.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
