//! The HTTP layer under abuse: peers that send nothing, half a request or half a body; idle
//! keep-alive connections; more connections than the cap; a shutdown with a stalled peer; and
//! the answers the framework writes (405, 414, 431, plugin reload names) in JSON. Also the API's
//! auth edge cases: IPv4 callers of an IPv6 listener, the bearer scheme's case, JWT leeway, `nbf`
//! and empty `sub`, an empty `api_token`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestGateway, WAIT, connect_refused, metric_sum};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmgate::config::SystemConfig;
use wasmgate::server::{self, Server, ServerError};
use wasmgate::{Config, Gateway};

/// Short timeouts keep the tests quick; the assertions are about which peer is closed, not how
/// precisely.
const SHORT: Duration = Duration::from_millis(300);

fn config_with(systems: &[&str], edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = TestGateway::config_with(systems);
    edit(&mut config);
    config
}

/// A gateway served on `listener`, with its stop token and task, for tests that time the
/// shutdown or bind something else than 127.0.0.1.
struct Served {
    addr: SocketAddr,
    gateway: Gateway,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

async fn serve_on(listener: tokio::net::TcpListener, config: Config) -> Served {
    let addr = listener.local_addr().unwrap();
    let server = Server::build(config).await.expect("gateway builds");
    let gateway = server.gateway.clone();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(server.serve(listener, async move { token.cancelled().await }));
    Served {
        addr,
        gateway,
        stop,
        task,
    }
}

/// Read until the peer closes (EOF or reset) or `within` passes; `Some(bytes read)` if it
/// closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 response read off a raw socket: status, head (lowercase) and body.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Read one response (with a `content-length`) within [`WAIT`].
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    let body = data[end + 4..end + 4 + length].to_vec();
                    return RawResponse { status, head, body };
                }
            }
            let n = stream.read(&mut buf).await.expect("read response");
            assert!(
                n > 0,
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&data)
            );
            data.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("a response")
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

#[tokio::test]
async fn a_peer_that_sends_nothing_or_half_a_head_is_closed_by_the_header_timeout() {
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.http.header_read_timeout = SHORT;
    }))
    .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut half_line = TcpStream::connect(gw.addr).await.unwrap();
    half_line.write_all(b"GET /heal").await.unwrap();
    let mut half_head = TcpStream::connect(gw.addr).await.unwrap();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    for (what, peer) in [
        ("silent", &mut silent),
        ("half a request line", &mut half_line),
        ("half a header section", &mut half_head),
    ] {
        let got = closed_within(peer, WAIT).await;
        assert!(got.is_some(), "{what}: still open after {WAIT:?}");
    }
    let metrics = gw.gateway.metrics().render();
    assert!(
        metric_sum(&metrics, "wasmgate_http_timeouts_total{kind=\"header\"") >= 3.0,
        "{metrics}"
    );
    // The gateway still answers.
    assert_eq!(gw.get("/healthz").await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_keepalive_connection_lasts_the_keepalive_timeout_not_the_header_timeout() {
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.http.header_read_timeout = SHORT;
        c.http.keepalive_timeout = 4 * SHORT;
    }))
    .await;
    let mut peer = TcpStream::connect(gw.addr).await.unwrap();
    peer.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut peer).await.status, 200);
    // Idle longer than the header timeout: still open, and serves the next request.
    assert!(closed_within(&mut peer, 2 * SHORT).await.is_none());
    peer.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut peer).await.status, 200);
    // Then closed once idle for the keep-alive timeout.
    assert!(
        closed_within(&mut peer, WAIT).await.is_some(),
        "idle keep-alive connection still open after {WAIT:?}"
    );
    let metrics = gw.gateway.metrics().render();
    assert!(
        metric_sum(&metrics, "wasmgate_http_timeouts_total{kind=\"keepalive\"") >= 1.0,
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_in_json_and_the_connection_closed() {
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.http.body_read_timeout = SHORT;
    }))
    .await;
    let mut peer = TcpStream::connect(gw.addr).await.unwrap();
    peer.write_all(
        b"POST /api/websocket/get_all_client_count HTTP/1.1\r\nHost: gw\r\nsystemId: app\r\n\
          Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let res = read_response(&mut peer).await;
    assert_eq!(res.status, 408, "{}", res.head);
    let body = res.json();
    assert_eq!(body["code"], 408, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("http.body_read_timeout"),
        "{body}"
    );
    assert!(closed_within(&mut peer, WAIT).await.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn past_max_connections_new_connections_are_closed_and_the_gateway_recovers() {
    const CAP: usize = 50;
    const OPENED: usize = 80;
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.http.max_connections = CAP;
        c.http.header_read_timeout = Duration::from_secs(2);
    }))
    .await;
    // Peers that connect and send nothing, held open by the test: only the gateway closes them.
    let mut peers = Vec::new();
    for _ in 0..OPENED {
        peers.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // While the cap is reached, a new connection is closed without an answer.
    let mut late = TcpStream::connect(gw.addr).await.unwrap();
    late.write_all(HEALTHZ).await.unwrap();
    let got = closed_within(&mut late, WAIT)
        .await
        .expect("closed at once");
    assert!(
        got.is_empty(),
        "answered past the cap: {:?}",
        String::from_utf8_lossy(&got)
    );
    let metrics = gw.gateway.metrics().render();
    let refused = metric_sum(&metrics, "wasmgate_http_connections_refused_total");
    assert!(refused >= (OPENED - CAP + 1) as f64, "{metrics}");
    // The header timeout frees the slots, and /healthz answers again.
    common::eventually("/healthz answers again", || async {
        let client = reqwest::Client::new();
        client
            .get(format!("http://{}/healthz", gw.addr))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    drop(peers);
    gw.stop().await;
}

#[tokio::test]
async fn websockets_leave_the_http_connection_count_when_upgraded() {
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.http.max_connections = 2;
    }))
    .await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(gw.connect("app").await);
    }
    assert_eq!(
        gw.ok("get_all_client_count", "app", json!({})).await["count"],
        6
    );
    for c in clients {
        c.close().await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_returns_within_the_drain_timeout_with_peers_stalled_mid_request() {
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let drain = Duration::from_secs(1);
    let served = serve_on(listener, config_with(&["app"], |c| c.drain_timeout = drain)).await;
    let mut half_line = TcpStream::connect(served.addr).await.unwrap();
    half_line.write_all(b"GET /heal").await.unwrap();
    let mut half_body = TcpStream::connect(served.addr).await.unwrap();
    half_body
        .write_all(
            b"POST /api/websocket/get_all_client_count HTTP/1.1\r\nHost: gw\r\nsystemId: app\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    // A client too, to be closed with 1001 on the way.
    let mut client = common::Client::connect(&format!(
        "ws://{}/api/websocket/ws?systemId=app",
        served.addr
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    served.stop.cancel();
    tokio::time::timeout(drain + Duration::from_secs(1), served.task)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "serve still running {:?} after the signal",
                drain + Duration::from_secs(1)
            )
        })
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= drain,
        "the stalled peers got the drain"
    );
    assert_eq!(client.recv_close().await.map(|c| c.0), Some(1001));
    assert!(closed_within(&mut half_line, WAIT).await.is_some());
    assert!(closed_within(&mut half_body, WAIT).await.is_some());
    let metrics = served.gateway.metrics().render();
    assert!(
        metric_sum(&metrics, "wasmgate_http_timeouts_total{kind=\"drain\"") >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_answered() {
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let served = serve_on(
        listener,
        config_with(&["app"], |c| c.drain_timeout = Duration::from_secs(5)),
    )
    .await;
    let mut peer = TcpStream::connect(served.addr).await.unwrap();
    peer.write_all(
        b"POST /api/websocket/get_all_client_count HTTP/1.1\r\nHost: gw\r\nsystemId: app\r\n\
          Content-Length: 2\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    served.stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.write_all(b"}").await.unwrap();
    let res = read_response(&mut peer).await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.json()["data"]["count"], 0);
    // Nothing else is open: the gateway stops without waiting for the drain to end.
    tokio::time::timeout(Duration::from_secs(3), served.task)
        .await
        .expect("serve returns once the request is answered")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_ipv6_listener_answers_local_ipv4_api_callers() {
    let listener = match server::bind("[::]:0".parse().unwrap()) {
        Ok(l) => l,
        Err(err) => {
            // Only a machine without IPv6 at all gets here.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: no IPv6 on this machine ({err})");
            }
            return;
        }
    };
    let served = serve_on(listener, TestGateway::config_with(&["app"])).await;
    let port = served.addr.port();
    let res = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/api/websocket/get_all_client_count"
        ))
        .header("systemId", "app")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["count"], 0);
    served.stop.cancel();
    served.task.await.unwrap().unwrap();
}

/// Send `method path` with `headers` and return the status, `Allow` header and JSON body.
async fn call(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = gw
        .http
        .request(method.parse().unwrap(), format!("http://{}{path}", gw.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} body is not JSON ({e}): {text:?}"));
    (status, allow, body)
}

fn assert_error(what: &str, got: &(u16, Option<String>, Value), status: u16) {
    let (code, _, body) = got;
    assert_eq!(*code, status, "{what}: {body}");
    assert_eq!(body["code"], status, "{what}: {body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_in_json_with_allow() {
    let plugins = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.plugins_dir = Some(plugins.path().to_owned());
    }))
    .await;
    for (method, path) in [
        ("POST", "/healthz"),
        ("DELETE", "/healthz"),
        ("POST", "/metrics"),
        ("GET", "/api/plugins/x/reload"),
        ("POST", "/api/plugins"),
        ("PUT", "/api/plugins"),
        ("POST", "/api/websocket/ws"),
    ] {
        let got = call(&gw, method, path, &[]).await;
        assert_error(&format!("{method} {path}"), &got, 405);
        assert!(got.1.is_some(), "{method} {path}: no Allow header");
    }
    gw.stop().await;
}

#[tokio::test]
async fn plugin_reload_names_are_checked_and_no_answer_shows_a_path() {
    let plugins = tempfile::tempdir().unwrap();
    // A folder where a plugin file would be: not readable as a plugin.
    std::fs::create_dir(plugins.path().join("folder.wasm")).unwrap();
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.plugins_dir = Some(plugins.path().to_owned());
    }))
    .await;
    let dir = std::fs::canonicalize(plugins.path()).unwrap();
    let dir = dir.to_str().unwrap();
    let unknown = call(&gw, "POST", "/api/plugins/nope/reload", &[]).await;
    assert_error("unknown plugin", &unknown, 404);
    for (path, status) in [
        ("/api/plugins/..%2F..%2Fetc%2Fpasswd/reload", 400),
        ("/api/plugins/.hidden/reload", 400),
        ("/api/plugins/%FF/reload", 400),
        ("/api/plugins/folder/reload", 422),
    ] {
        let got = call(&gw, "POST", path, &[]).await;
        assert_error(path, &got, status);
        let msg = got.2["msg"].as_str().unwrap();
        assert!(!msg.contains(dir), "{path}: {msg} shows the plugins folder");
        assert!(!msg.contains("/tmp"), "{path}: {msg} shows a path");
    }
    gw.stop().await;
}

#[tokio::test]
async fn long_targets_and_big_header_sections_are_answered_in_json() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let long = format!("/healthz?q={}", "a".repeat(9 * 1024));
    assert_error("9 KiB target", &call(&gw, "GET", &long, &[]).await, 414);
    let big = "b".repeat(40 * 1024);
    assert_error(
        "40 KiB header",
        &call(&gw, "GET", "/healthz", &[("x-big", &big)]).await,
        431,
    );
    // Past hyper's own cap (64 KiB) hyper answers 431 itself, with no body at all.
    let huge = "h".repeat(100 * 1024);
    let res = gw
        .http
        .get(format!("http://{}/healthz", gw.addr))
        .header("x-huge", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 431);
    assert_eq!(gw.get("/healthz").await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let gw = TestGateway::start(config_with(&["app"], |c| {
        c.api_token = Some("tok".into());
    }))
    .await;
    for auth in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR  tok"] {
        let res = gw
            .http
            .post(format!(
                "http://{}/api/websocket/get_all_client_count",
                gw.addr
            ))
            .header("systemId", "app")
            .header("authorization", auth)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{auth}");
    }
    for auth in ["Bearer nope", "Basic tok", "tok"] {
        let got = call(
            &gw,
            "POST",
            "/api/websocket/get_all_client_count",
            &[("authorization", auth), ("systemId", "app")],
        )
        .await;
        assert_error(auth, &got, 401);
    }
    gw.stop().await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const SECRET: &str = "jwt-secret";

fn mint(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn secure(leeway: Duration) -> Config {
    config_with(&[], |c| {
        c.jwt_leeway = leeway;
        c.systems.insert(
            "secure".into(),
            SystemConfig {
                jwt_secret: Some(SECRET.into()),
                ..Default::default()
            },
        );
    })
}

#[tokio::test]
async fn recently_expired_not_yet_valid_and_subjectless_tokens_are_refused() {
    let gw = TestGateway::start(secure(Duration::ZERO)).await;
    let url = |t: &str| format!("{}&token={t}", gw.ws_url("secure"));
    for (what, claims) in [
        ("expired 30 s ago", json!({"sub": "a", "exp": now() - 30})),
        (
            "not valid for 10 minutes",
            json!({"sub": "a", "exp": now() + 3600, "nbf": now() + 600}),
        ),
        ("empty sub", json!({"sub": "", "exp": now() + 3600})),
    ] {
        let (status, body) = connect_refused(&url(&mint(&claims))).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], 401, "{what}: {body}");
    }
    let ok = gw
        .connect(&format!(
            "secure&token={}",
            mint(&json!({"sub": "a", "exp": now() + 60}))
        ))
        .await;
    ok.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn jwt_leeway_is_configurable() {
    let gw = TestGateway::start(secure(Duration::from_secs(120))).await;
    let token = mint(&json!({"sub": "a", "exp": now() - 30}));
    let client = gw.connect(&format!("secure&token={token}")).await;
    client.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn an_empty_api_token_is_refused_at_startup() {
    for token in ["", "  "] {
        let config = config_with(&["app"], |c| c.api_token = Some(token.into()));
        match Server::build(config).await {
            Err(ServerError::Config(msg)) => assert!(msg.contains("api_token"), "{msg}"),
            Err(other) => panic!("{token:?}: wrong error {other}"),
            Ok(_) => panic!("{token:?}: an empty api_token locks the API; the build must fail"),
        }
    }
}
