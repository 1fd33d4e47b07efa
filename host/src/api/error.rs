//! API errors: every one is an HTTP 4xx answered as `{"code":<status>,"msg":"<what is wrong>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::gateway::GatewayError;
use crate::registry::RegistryError;

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
    /// The body is larger than `max_body_size`.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The system cannot take more clients.
    #[error("{0}")]
    TooMany(String),
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
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
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
        match err {
            RegistryError::SystemFull(_) => ApiError::TooMany(err.to_string()),
            _ => ApiError::NotFound(err.to_string()),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Registry(e) => e.into(),
            GatewayError::InvalidCloseCode(_) => ApiError::BadRequest(err.to_string()),
        }
    }
}
