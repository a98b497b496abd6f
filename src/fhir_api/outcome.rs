//! How domain errors look on the FHIR door: status code + OperationOutcome.
//!
//! | Error | status | issue code |
//! |---|---|---|
//! | Invalid | 400 | from the issue (structure, value, required, ...) |
//! | Unprocessable | 422 | from the issue (invariant, ...) |
//! | NotFound / Gone | 404 / 410 | not-found / deleted |
//! | Conflict / PreconditionFailed | 409 / 412 | conflict |
//! | MethodNotAllowed / NotSupported | 405 / 400 | not-supported |
//! | TooLarge / UnsupportedMediaType | 413 / 415 | too-costly / structure |
//! | NotAcceptable | 406 | not-supported |
//! | Forbidden | 403 | forbidden |
//! | Unauthenticated / TooManyRequests | 401 / 429 | login / throttled |
//! | Store | 500 | exception (the cause is logged, not sent) |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{Error, Issue};
use crate::fhir::operation_outcome;

pub fn status_and_outcome(err: &Error) -> (StatusCode, Value) {
    let one = |code: &'static str, msg: &str| vec![Issue::new(code, msg.to_owned())];
    let (status, issues) = match err {
        Error::Invalid(issues) => (StatusCode::BAD_REQUEST, issues.clone()),
        Error::Unprocessable(issues) => (StatusCode::UNPROCESSABLE_ENTITY, issues.clone()),
        Error::NotFound(m) => (StatusCode::NOT_FOUND, one("not-found", m)),
        Error::Gone(m) => (StatusCode::GONE, one("deleted", m)),
        Error::Conflict(m) => (StatusCode::CONFLICT, one("conflict", m)),
        Error::PreconditionFailed(m) => (StatusCode::PRECONDITION_FAILED, one("conflict", m)),
        Error::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, one("not-supported", m)),
        Error::NotSupported(m) => (StatusCode::BAD_REQUEST, one("not-supported", m)),
        Error::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, one("too-costly", m)),
        Error::NotAcceptable(m) => (StatusCode::NOT_ACCEPTABLE, one("not-supported", m)),
        Error::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, one("structure", m)),
        Error::Forbidden(m) => (StatusCode::FORBIDDEN, one("forbidden", m)),
        Error::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, one("login", m)),
        Error::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, one("throttled", m)),
        Error::Store(cause) => {
            tracing::error!(%cause, "storage failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                one("exception", "the server could not complete the request"),
            )
        }
    };
    (status, operation_outcome("error", &issues))
}

/// The FHIR door's error response.
pub struct FhirError(pub Error);

impl From<Error> for FhirError {
    fn from(err: Error) -> Self {
        FhirError(err)
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let (status, outcome) = status_and_outcome(&self.0);
        super::fhir_json(status, outcome.to_string())
    }
}
