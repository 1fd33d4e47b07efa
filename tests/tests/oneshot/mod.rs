//! The gateway's routes without a socket: `wasmgate::server::app` driven with
//! `tower::ServiceExt::oneshot`, for tests of API answers that need no network (bad input,
//! limits, property tests). Clients are admitted through the `Gateway` handle directly.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;
use wasmgate::outbound::OutboundRx;
use wasmgate::{Config, Gateway};

/// The API token the apps of these tests use.
pub const TOKEN: &str = "test-token";

/// One answer: status, raw body, and the body parsed as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub text: String,
    /// The body as JSON, `Null` if it is not.
    pub json: Value,
}

impl Answer {
    /// Whether this is a well-formed error: JSON `{code,msg}` with exactly those two fields,
    /// `code` equal to the status, a non-empty message.
    pub fn is_error_json(&self) -> bool {
        self.json.as_object().map(|o| o.len()) == Some(2)
            && self.json["code"].as_u64() == Some(u64::from(self.status))
            && self.json["msg"].as_str().is_some_and(|m| !m.is_empty())
    }

    /// The `msg` of an error.
    pub fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or("")
    }
}

/// A gateway and its routes, in this process, without a listener.
pub struct App {
    /// The gateway handle.
    pub gateway: Gateway,
    router: Router,
}

impl App {
    /// A gateway with `config` (an API token is set so no peer address is needed).
    pub async fn new(mut config: Config) -> App {
        config.api_token = Some(TOKEN.into());
        let gateway = Gateway::new(Arc::new(config)).await;
        let router = wasmgate::server::app(gateway.clone(), Router::new());
        App { gateway, router }
    }

    /// A config declaring `systems`.
    pub fn config_with(systems: &[&str]) -> Config {
        let mut config = Config::default();
        for s in systems {
            config.systems.insert((*s).to_owned(), Default::default());
        }
        config
    }

    /// Send `req` (the API token is added).
    pub async fn send(&self, mut req: Request<Body>) -> Answer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, text, json }
    }

    /// `POST /api/websocket/<op>` with `systemId: system` (when given) and a raw body.
    pub async fn raw(&self, op: &str, system: Option<&str>, body: impl Into<Body>) -> Answer {
        let mut req = Request::post(format!("/api/websocket/{op}"));
        if let Some(system) = system {
            req = req.header("systemId", system);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    /// `POST /api/websocket/<op>` with a JSON body.
    pub async fn call(&self, op: &str, system: &str, body: Value) -> Answer {
        self.raw(op, Some(system), body.to_string()).await
    }

    /// A call that must succeed; its `data`.
    pub async fn ok(&self, op: &str, system: &str, body: Value) -> Value {
        let a = self.call(op, system, body).await;
        assert_eq!(a.status, 200, "{op}: {}", a.text);
        a.json["data"].clone()
    }

    /// `GET <path>`.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// Admit a client to `system` without a socket: its id and outbound queue.
    pub async fn client(&self, system: &str) -> (String, OutboundRx) {
        self.gateway.connect(system, None).await.unwrap()
    }
}
