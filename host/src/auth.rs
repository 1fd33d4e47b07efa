//! Authentication: JWTs that clients present on connect, and the bearer token of the HTTP API.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

use crate::api::ApiError;
use crate::gateway::Gateway;

/// A client token that passed [`verify_client_token_claims`].
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Its `sub`, bound as the client's uid.
    pub sub: String,
    /// All its claims, as a JSON object text (what a 0.2 plugin's connect context carries).
    pub claims: String,
}

/// Check an HS256 token against `secret`: signature, `exp` (required) and `nbf` (when present),
/// both with `leeway` for clock skew (`jwt_leeway`, 0 unless configured: the library's own
/// default of 60 s accepted tokens a minute after they expired). Returns its `sub`, which must
/// not be empty (it becomes the client's uid).
pub fn verify_client_token(
    token: &str,
    secret: &str,
    leeway: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    verify_client_token_claims(token, secret, leeway).map(|t| t.sub)
}

/// [`verify_client_token`], keeping every claim: a plugin may admit or route a client by a
/// claim of its own (`room`, `role`).
pub fn verify_client_token_claims(
    token: &str,
    secret: &str,
    leeway: Duration,
) -> Result<VerifiedToken, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = leeway.as_secs();
    validation.validate_nbf = true;
    let data = decode::<serde_json::Map<String, serde_json::Value>>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    let sub = match data.claims.get("sub") {
        Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(ErrorKind::InvalidSubject.into()),
    };
    Ok(VerifiedToken {
        sub,
        claims: serde_json::Value::Object(data.claims).to_string(),
    })
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` count too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `addr` is this machine. An IPv4 caller of a gateway listening on `[::]` arrives as
/// `::ffff:127.0.0.1`, which `is_loopback` alone does not recognise.
fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
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
                .and_then(bearer_token);
            match presented {
                Some(token) if same_secret(token, expected) => next.run(req).await,
                Some(_) => ApiError::Unauthorized("invalid API token").into_response(),
                None => {
                    ApiError::Unauthorized("missing Authorization: Bearer <token>").into_response()
                }
            }
        }
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) if is_loopback(addr) => next.run(req).await,
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

    fn sign(secret: &str, claims: &serde_json::Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    fn token(secret: &str, sub: &str, exp: u64) -> String {
        sign(secret, &serde_json::json!({"sub": sub, "exp": exp}))
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    const NO_LEEWAY: Duration = Duration::ZERO;

    #[test]
    fn valid_token_yields_sub() {
        let t = token("s3cret", "alice", now() + 60);
        assert_eq!(
            verify_client_token(&t, "s3cret", NO_LEEWAY).expect("valid"),
            "alice"
        );
    }

    #[test]
    fn expired_or_wrongly_signed_tokens_fail() {
        let expired = token("s3cret", "a", now() - 3600);
        assert!(verify_client_token(&expired, "s3cret", NO_LEEWAY).is_err());
        let other = token("other", "a", now() + 60);
        assert!(verify_client_token(&other, "s3cret", NO_LEEWAY).is_err());
        assert!(verify_client_token("garbage", "s3cret", NO_LEEWAY).is_err());
    }

    #[test]
    fn leeway_is_the_configured_one_not_the_library_default() {
        // Expired 30 s ago: the library's default leeway (60 s) accepted it.
        let t = token("s3cret", "a", now() - 30);
        assert!(verify_client_token(&t, "s3cret", NO_LEEWAY).is_err());
        assert!(verify_client_token(&t, "s3cret", Duration::from_secs(120)).is_ok());
    }

    #[test]
    fn not_yet_valid_tokens_fail() {
        let t = sign(
            "s3cret",
            &serde_json::json!({"sub": "a", "exp": now() + 3600, "nbf": now() + 600}),
        );
        assert!(verify_client_token(&t, "s3cret", NO_LEEWAY).is_err());
        let t = sign(
            "s3cret",
            &serde_json::json!({"sub": "a", "exp": now() + 3600, "nbf": now() - 1}),
        );
        assert!(verify_client_token(&t, "s3cret", NO_LEEWAY).is_ok());
    }

    #[test]
    fn an_empty_subject_fails() {
        let t = token("s3cret", "", now() + 60);
        assert!(verify_client_token(&t, "s3cret", NO_LEEWAY).is_err());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn ipv4_mapped_loopback_is_loopback() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().expect("addr");
        assert!(is_loopback(&mapped));
        assert!(is_loopback(&"[::1]:80".parse().expect("addr")));
        assert!(is_loopback(&"127.0.0.1:80".parse().expect("addr")));
        assert!(!is_loopback(&"[::ffff:10.0.0.1]:80".parse().expect("addr")));
        assert!(!is_loopback(&"10.0.0.1:80".parse().expect("addr")));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
