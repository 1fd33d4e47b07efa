//! Test harness shared by the end-to-end tests: a real gateway on 127.0.0.1:0, real WebSocket
//! clients (tokio-tungstenite) and a real HTTP client (reqwest).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;
use wasmgate::server::{self, Server};
use wasmgate::{Config, Gateway};

pub mod raw;

/// How long a test waits for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);

/// A gateway running in this process.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its handle.
    pub gateway: Gateway,
    /// HTTP client for the API.
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: JoinHandle<Result<(), server::ServerError>>,
}

impl TestGateway {
    /// Start `server::run` on 127.0.0.1:0 with `config`.
    pub async fn start(mut config: Config) -> TestGateway {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let listener = server::bind(config.listen).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::build(config).await.expect("gateway builds");
        let gateway = server.gateway.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(server.serve(listener, async move { token.cancelled().await }));
        TestGateway {
            addr,
            gateway,
            http: reqwest::Client::new(),
            stop,
            task,
        }
    }

    /// A config with one system declared.
    pub fn config_with(systems: &[&str]) -> Config {
        let mut config = Config::default();
        for s in systems {
            config.systems.insert((*s).to_owned(), Default::default());
        }
        config
    }

    /// The WebSocket URL of `system`.
    pub fn ws_url(&self, system: &str) -> String {
        format!("ws://{}/api/websocket/ws?systemId={system}", self.addr)
    }

    /// Connect a client to `system` and read its welcome frame.
    pub async fn connect(&self, system: &str) -> Client {
        Client::connect(&self.ws_url(system)).await
    }

    /// `POST /api/websocket/<op>` with header `systemId: system`.
    pub async fn api(&self, op: &str, system: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("http://{}/api/websocket/{op}", self.addr))
            .header("systemId", system)
            .json(&body)
            .send()
            .await
            .expect("API call");
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.expect("JSON answer");
        (status, body)
    }

    /// `POST /api/websocket/<op>`, asserting success, returning `data`.
    pub async fn ok(&self, op: &str, system: &str, body: Value) -> Value {
        let (status, answer) = self.api(op, system, body).await;
        assert_eq!(status, 200, "{op} failed: {answer}");
        assert_eq!(answer["code"], 0, "{op} failed: {answer}");
        assert_eq!(answer["msg"], "success");
        answer["data"].clone()
    }

    /// `GET path`: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("GET");
        (res.status().as_u16(), res.text().await.expect("body"))
    }

    /// `POST path` with a JSON body: status and JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON answer"))
    }

    /// Trigger graceful shutdown and wait for the server to return.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// A WebSocket client.
pub struct Client {
    /// Its clientId, from the welcome frame.
    pub id: String,
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connect to `url` and read the welcome frame.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("WebSocket connect");
        let mut client = Client {
            id: String::new(),
            ws,
        };
        let welcome = client.recv_json().await;
        assert_eq!(welcome["code"], 0, "welcome: {welcome}");
        assert_eq!(welcome["msg"], "success");
        client.id = welcome["data"]["clientId"]
            .as_str()
            .expect("clientId in welcome")
            .to_owned();
        client
    }

    /// Send a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    /// Send a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send binary");
    }

    /// The next text or binary message (pings and pongs skipped), within [`WAIT`].
    pub async fn recv(&mut self) -> Message {
        self.recv_within(WAIT).await
    }

    /// The next data or close frame, within `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Message {
        loop {
            let next = tokio::time::timeout(within, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("client {} got nothing within {within:?}", self.id));
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(msg)) => return msg,
                other => panic!("client {} expected a message, got {other:?}", self.id),
            }
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The next text message, parsed as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next text frame parsed as JSON, within `within`.
    pub async fn recv_json_within(&mut self, within: Duration) -> Value {
        match self.recv_within(within).await {
            Message::Text(t) => {
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
            }
            other => panic!("client {} expected text, got {other:?}", self.id),
        }
    }

    /// Wait for the server to close; returns the close code and reason (`None` without a frame).
    pub async fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("client {} was not closed in time", self.id));
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Assert nothing but pings arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("client {} expected silence, got {other:?}", self.id),
            }
        }
    }

    /// Close normally.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// Poll `f` until it returns true or [`WAIT`] passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Try to connect to `url` expecting a refusal before the upgrade: the HTTP status and the
/// JSON body of the refusal. Panics if the upgrade succeeds.
pub async fn connect_refused(url: &str) -> (u16, Value) {
    match connect_async(url).await {
        Ok(_) => panic!("{url}: connected, expected a refusal"),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let status = res.status().as_u16();
            let body = res.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "refusal body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            (status, json)
        }
        Err(other) => panic!("{url}: expected an HTTP refusal, got {other}"),
    }
}

/// Sum of every sample of a Prometheus text exposition whose series starts with `series`
/// (a metric name, optionally followed by the start of its labels, e.g.
/// `wasmgate_connections{system="app"`). 0 when there is none.
pub fn metric_sum(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{', ',', '}']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A JSON list of strings (client ids, uids, ...), sorted: for comparing sets.
pub fn sorted(v: &Value) -> Vec<String> {
    let mut list: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_owned()
        })
        .collect();
    list.sort();
    list
}

/// The `wasmgate` binary of this build (`target/<profile>/wasmgate`, next to `deps/` holding
/// this test), built first: `cargo test -p wasmgate-tests` alone does not build the host's
/// binary, and a stale one would test old code.
pub fn wasmgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .args(["build", "-p", "wasmgate", "--bin", "wasmgate"])
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .expect("run cargo build for the wasmgate binary");
    assert!(status.success(), "building the wasmgate binary failed");
    profile_dir.join("wasmgate")
}

/// A child process killed (and reaped) when dropped, so that a failing test leaves no gateway
/// running behind it.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
