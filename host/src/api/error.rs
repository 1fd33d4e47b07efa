//! API errors: every one is an HTTP 4xx (or 503 when the cluster's registry is unreachable) answered as `{"code":<status>,"msg":"<what is wrong>"}`.
//!
//! Statuses of the limits (one rule, also in host calls' WIT errors):
//! a name too long or empty is 400 (`invalid-argument`); a size limit (info, extend, body) is
//! 413 and a count limit (groups per client or system, systems, connections) 429 (both
//! `quota-exceeded`); each message names the limit's key.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::names::NameError;
use crate::gateway::GatewayError;
use crate::registry::{ErrorKind, RegistryError};

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, a field is missing or has the wrong type, a header is missing.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller may not use the API at all.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Unknown system, client, group or operation.
    #[error("{0}")]
    NotFound(String),
    /// Wrong HTTP method for the route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with how the gateway is set up (unregistering a configured
    /// system).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `max_body_size`.
    #[error("request body larger than {0} bytes (max_body_size)")]
    TooLarge(usize),
    /// A value in the body is over a size limit (info, extend).
    #[error("{0}")]
    ContentTooLarge(String),
    /// A count limit was hit: the system cannot take more clients, groups, systems.
    #[error("{0}")]
    TooMany(String),
    /// A backend the gateway needs (the cluster's registry) could not answer in time.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) | ApiError::ContentTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "code": status.as_u16(), "msg": self.to_string() });
        (status, Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match err.kind() {
            ErrorKind::NotFound => ApiError::NotFound(err.to_string()),
            ErrorKind::TooMany => ApiError::TooMany(err.to_string()),
            ErrorKind::TooLarge => ApiError::ContentTooLarge(err.to_string()),
            ErrorKind::Unavailable => ApiError::Unavailable(err.to_string()),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Registry(e) => e.into(),
            GatewayError::Name(e) => e.into(),
            GatewayError::Close(_) => ApiError::BadRequest(err.to_string()),
            GatewayError::Queue(_) => ApiError::ContentTooLarge(err.to_string()),
            GatewayError::Protected(..) => ApiError::Conflict(err.to_string()),
        }
    }
}
