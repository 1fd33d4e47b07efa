//! The web routes of `host/src/web`: embedded pages and the client library, the connect check a
//! browser client uses to explain a refused upgrade, and the dashboard's guard. The pages
//! themselves are driven in Chromium by `clients/js/test/browser.test.js` (scripts/test-web.sh).
#![allow(clippy::unwrap_used)]

mod oneshot;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use oneshot::App;
use tower::ServiceExt;
use wasmgate::{Config, Gateway};

#[tokio::test]
async fn pages_and_the_client_library_are_served_from_the_binary() {
    let mut config = App::config_with(&["quiz"]);
    config.api_token = Some("t".into());
    let gateway = Gateway::new(Arc::new(config)).await;
    let router = wasmgate::server::app(gateway, Router::new());
    for (path, kind, needle) in [
        (
            "/client/wasmgate.js",
            "text/javascript",
            "export async function connect",
        ),
        ("/dashboard", "text/html", "wasmgate dashboard"),
        ("/dashboard/dashboard.js", "text/javascript", "/api/plugins"),
        ("/demo/quiz", "text/html", "/demo/quiz.js"),
        ("/demo/quiz.js", "text/javascript", "/client/wasmgate.js"),
        ("/web/style.css", "text/css", ":root"),
    ] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
    }
}

#[tokio::test]
async fn the_connect_check_answers_what_the_upgrade_would() {
    let mut config = App::config_with(&["open"]);
    config.systems.insert(
        "secure".into(),
        wasmgate::config::SystemConfig {
            jwt_secret: Some("s".into()),
            ..Default::default()
        },
    );
    let app = App::new(config).await;
    for (query, status, msg) in [
        ("", 400, "missing query parameter systemId"),
        ("?systemId=nope", 404, "unknown system: nope"),
        ("?systemId=secure", 401, "this system needs token=<jwt>"),
        (
            "?systemId=secure&token=forged",
            401,
            "invalid or expired token",
        ),
    ] {
        let a = app.get(&format!("/client/check{query}")).await;
        assert_eq!(a.status, status, "{query}");
        assert!(a.is_error_json(), "{query}: {}", a.text);
        assert_eq!(a.msg(), msg);
    }
    let a = app.get("/client/check?systemId=open").await;
    assert_eq!((a.status, a.json["code"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn without_an_api_token_the_dashboard_answers_loopback_peers_only() {
    // No ConnectInfo here: the peer is not known to be loopback, as for a remote caller.
    let gateway = Gateway::new(Arc::new(Config::default())).await;
    let router = wasmgate::server::app(gateway, Router::new());
    for path in ["/dashboard", "/dashboard/dashboard.js"] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    // The client library and the demo are public, like the WebSocket endpoint.
    let req = Request::get("/client/wasmgate.js")
        .body(Body::empty())
        .unwrap();
    assert_eq!(router.oneshot(req).await.unwrap().status(), 200);
}
