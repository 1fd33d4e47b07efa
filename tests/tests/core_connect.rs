//! Admission: what is refused before the upgrade (unknown or missing system, JWT, full system),
//! and the bearer token of the HTTP API.
mod common;

use common::{TestGateway, connect_refused};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use wasmgate::config::SystemConfig;

const SECRET: &str = "jwt-secret-for-tests";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn mint(claims: &Value, secret: &str, alg: Algorithm) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("mint token")
}

fn assert_refusal(got: (u16, Value), status: u16) {
    let (code, body) = got;
    assert_eq!(code, status, "refusal: {body}");
    assert_eq!(body["code"], status, "refusal body: {body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "refusal body: {body}"
    );
}

async fn jwt_gateway() -> TestGateway {
    let mut config = TestGateway::config_with(&["open"]);
    config.systems.insert(
        "secure".into(),
        SystemConfig {
            jwt_secret: Some(SECRET.into()),
            max_connections: None,
            ..Default::default()
        },
    );
    TestGateway::start(config).await
}

#[tokio::test]
async fn unknown_missing_or_empty_system_is_refused_before_the_upgrade() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let base = format!("ws://{}/api/websocket/ws", gw.addr);
    assert_refusal(connect_refused(&format!("{base}?systemId=nope")).await, 404);
    assert_refusal(connect_refused(&base).await, 400);
    assert_refusal(connect_refused(&format!("{base}?systemId=")).await, 400);
    assert_refusal(connect_refused(&format!("{base}?other=app")).await, 400);
    // A plain GET (no upgrade) is a 400 JSON too.
    let (status, body) = gw.get("/api/websocket/ws?systemId=app").await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["code"], 400);
    // systemId given twice is ambiguous.
    assert_refusal(
        connect_refused(&format!("{base}?systemId=app&systemId=app")).await,
        400,
    );
    // A handshake with the wrong WebSocket version or no key is a 400 JSON.
    for (version, key) in [("8", Some("dGhlIHNhbXBsZSBub25jZQ==")), ("13", None)] {
        let mut req = gw
            .http
            .get(format!("http://{}/api/websocket/ws?systemId=app", gw.addr))
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Version", version);
        if let Some(key) = key {
            req = req.header("Sec-WebSocket-Key", key);
        }
        let res = req.send().await.expect("GET");
        assert_eq!(res.status().as_u16(), 400);
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(body["code"], 400, "{body}");
    }
    // None of that left a trace.
    assert_eq!(
        gw.ok("get_all_client_count", "app", json!({})).await,
        json!({"count": 0})
    );
    assert_eq!(gw.gateway.local_connection_count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn jwt_systems_need_a_valid_unexpired_hs256_token() {
    let gw = jwt_gateway().await;
    let url = |token: &str| {
        format!(
            "ws://{}/api/websocket/ws?systemId=secure&token={token}",
            gw.addr
        )
    };
    let no_token = format!("ws://{}/api/websocket/ws?systemId=secure", gw.addr);
    assert_refusal(connect_refused(&no_token).await, 401);

    let exp = now() + 600;
    let refused = [
        // Wrong secret.
        mint(
            &json!({"sub": "alice", "exp": exp}),
            "other",
            Algorithm::HS256,
        ),
        // Expired (well past the default leeway).
        mint(
            &json!({"sub": "alice", "exp": now() - 3600}),
            SECRET,
            Algorithm::HS256,
        ),
        // No exp.
        mint(&json!({"sub": "alice"}), SECRET, Algorithm::HS256),
        // No sub.
        mint(&json!({"exp": exp}), SECRET, Algorithm::HS256),
        // Another algorithm, right secret.
        mint(
            &json!({"sub": "alice", "exp": exp}),
            SECRET,
            Algorithm::HS512,
        ),
        // Unsigned ("alg":"none").
        format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            b64url(&format!("{{\"sub\":\"alice\",\"exp\":{exp}}}"))
        ),
        "not.a.jwt".into(),
        String::new(),
    ];
    for token in &refused {
        assert_refusal(connect_refused(&url(token)).await, 401);
    }

    let good = mint(
        &json!({"sub": "alice", "exp": exp}),
        SECRET,
        Algorithm::HS256,
    );
    let a = common::Client::connect(&url(&good)).await;
    let b = common::Client::connect(&url(&good)).await;
    assert_eq!(
        gw.ok("get_uid_by_client_id", "secure", json!({"clientId": a.id}))
            .await,
        json!({"uid": "alice"})
    );
    let by_uid = gw
        .ok("get_client_ids_by_uid", "secure", json!({"uid": "alice"}))
        .await;
    assert_eq!(by_uid["count"], 2);
    assert_eq!(
        gw.ok("is_uid_online", "secure", json!({"uid": "alice"}))
            .await,
        json!({"online": true})
    );
    assert_eq!(
        gw.ok("get_all_client_count", "secure", json!({})).await,
        json!({"count": 2}),
        "refused attempts never entered the registry"
    );
    drop(b);

    // A system without a secret ignores tokens.
    let open = format!(
        "ws://{}/api/websocket/ws?systemId=open&token=whatever",
        gw.addr
    );
    let c = common::Client::connect(&open).await;
    assert_eq!(
        gw.ok("get_uid_by_client_id", "open", json!({"clientId": c.id}))
            .await,
        json!({"uid": null})
    );

    let (status, metrics) = gw.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        common::metric_sum(
            &metrics,
            "wasmgate_connects_refused_total{system=\"secure\""
        ),
        (refused.len() + 1) as f64
    );
    gw.stop().await;
}

fn b64url(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_full_system_answers_429_until_a_client_leaves() {
    let mut config = TestGateway::config_with(&["other"]);
    config.systems.insert(
        "small".into(),
        SystemConfig {
            jwt_secret: None,
            max_connections: Some(2),
            ..Default::default()
        },
    );
    let gw = TestGateway::start(config).await;
    let a = gw.connect("small").await;
    let _b = gw.connect("small").await;
    assert_refusal(connect_refused(&gw.ws_url("small")).await, 429);
    // The limit is per system.
    let _o = gw.connect("other").await;
    let _o2 = gw.connect("other").await;
    let _o3 = gw.connect("other").await;

    a.close().await;
    common::eventually("a slot frees up", || async {
        gw.ok("get_all_client_count", "small", json!({})).await == json!({"count": 1})
    })
    .await;
    let _c = gw.connect("small").await;
    assert_refusal(connect_refused(&gw.ws_url("small")).await, 429);
    let (_, metrics) = gw.get("/metrics").await;
    assert_eq!(
        common::metric_sum(&metrics, "wasmgate_connects_refused_total{system=\"small\""),
        2.0,
        "both 429s are counted as refused connects"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_api_token_guards_the_api_and_metrics_but_not_health_or_clients() {
    let mut config = TestGateway::config_with(&["app"]);
    config.api_token = Some("t0ken".into());
    let gw = TestGateway::start(config).await;
    let url = format!("http://{}/api/websocket/get_all_client_count", gw.addr);

    let call = |auth: Option<&'static str>| {
        let mut req = gw
            .http
            .post(&url)
            .header("systemId", "app")
            .json(&json!({}));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        async move {
            let res = req.send().await.expect("call");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.expect("JSON"))
        }
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer t0ken-and-more"),
        Some("Bearer "),
        Some("t0ken"),
        Some("Basic dDBrZW4="),
    ] {
        let (status, body) = call(auth).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["code"], 401, "{auth:?}: {body}");
        assert!(body["msg"].is_string());
    }
    let (status, body) = call(Some("Bearer t0ken")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"code": 0, "msg": "success", "data": {"count": 0}})
    );

    // /metrics is guarded the same way; /healthz is not; clients need no API token.
    let (status, _) = gw.get("/metrics").await;
    assert_eq!(status, 401);
    let res = gw
        .http
        .get(format!("http://{}/metrics", gw.addr))
        .header("Authorization", "Bearer t0ken")
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status().as_u16(), 200);
    let (status, _) = gw.get("/healthz").await;
    assert_eq!(status, 200);
    let c = gw.connect("app").await;
    let (status, body) = call(Some("Bearer t0ken")).await;
    assert_eq!((status, &body["data"]), (200, &json!({"count": 1})));
    drop(c);
    gw.stop().await;
}
