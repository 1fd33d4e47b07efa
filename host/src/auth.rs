//! Authentication: JWTs that clients present on connect, and the bearer token of the HTTP API.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use crate::api::ApiError;
use crate::gateway::Gateway;

/// The claims wasmgate reads from a client's token.
#[derive(Debug, Deserialize)]
struct Claims {
    /// Bound as the client's uid.
    sub: String,
}

/// Check an HS256 token against `secret` (signature and `exp`); returns its `sub`.
pub fn verify_client_token(
    token: &str,
    secret: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    Ok(data.claims.sub)
}

/// Compare secrets in constant time (blake3 hashes compare in constant time).
fn same_secret(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// Middleware guarding the HTTP API: with an `api_token` configured every call needs
/// `Authorization: Bearer <token>`; without one only loopback peers are answered.
pub async fn require_api_auth(
    State(gateway): State<Gateway>,
    req: Request,
    next: Next,
) -> Response {
    match &gateway.config().api_token {
        Some(expected) => {
            let presented = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match presented {
                Some(token) if same_secret(token.trim(), expected) => next.run(req).await,
                Some(_) => ApiError::Unauthorized("invalid API token").into_response(),
                None => {
                    ApiError::Unauthorized("missing Authorization: Bearer <token>").into_response()
                }
            }
        }
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) if addr.ip().is_loopback() => next.run(req).await,
            _ => ApiError::Forbidden(
                "no api_token is configured: the API answers loopback peers only",
            )
            .into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, sub: &str, exp: u64) -> String {
        let claims = serde_json::json!({"sub": sub, "exp": exp});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn valid_token_yields_sub() {
        let t = token("s3cret", "alice", now() + 60);
        assert_eq!(verify_client_token(&t, "s3cret").expect("valid"), "alice");
    }

    #[test]
    fn expired_or_wrongly_signed_tokens_fail() {
        assert!(verify_client_token(&token("s3cret", "a", now() - 3600), "s3cret").is_err());
        assert!(verify_client_token(&token("other", "a", now() + 60), "s3cret").is_err());
        assert!(verify_client_token("garbage", "s3cret").is_err());
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
