//! Harness of the cluster tests: a `redis-server` of the test's own on a free port (never the
//! machine's 6379), real `wasmgate` processes started with `--redis`, real WebSocket clients
//! and a real HTTP client. Every process is killed when its guard drops.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)] // node logs on request

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test, killed when dropped.
pub struct RedisServer {
    pub child: Child,
    pub port: u16,
    /// How it keeps data: nothing (`--save '' --appendonly no`), or an append-only file.
    persistence: Vec<String>,
}

impl RedisServer {
    /// A server that keeps nothing: a restart comes back empty.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server that writes every command to an append-only file in `dir` before answering:
    /// a restart (even after SIGKILL) comes back with its data.
    pub fn start_persistent(dir: &std::path::Path) -> Self {
        let dir = dir.to_str().unwrap();
        Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir,
        ])
    }

    fn start_with(persistence: &[&str]) -> Self {
        let port = free_port();
        let persistence: Vec<String> = persistence.iter().map(|s| (*s).to_owned()).collect();
        let child = Self::spawn(port, &persistence);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            persistence,
        }
    }

    fn spawn(port: u16, persistence: &[String]) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kill it now (a Redis outage).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port, with what its persistence kept.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = Self::spawn(self.port, &self.persistence);
            let up = Instant::now() + Duration::from_secs(2);
            while Instant::now() < up {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The port may still be held by the old socket for a moment: try again.
            self.kill();
            assert!(Instant::now() < deadline, "redis-server did not restart");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A key prefix of this test alone.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("t-{test}-{}-{nanos}:", std::process::id())
}

/// A `wasmgate` process of the cluster, killed (SIGKILL) when dropped.
pub struct Node {
    pub child: Child,
    pub port: u16,
    pub id: u32,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Start node `id` on a free port with system `app` declared, and wait until it listens.
    pub fn start(redis: &RedisServer, prefix: &str, id: u32) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("wasmgate.toml");
        std::fs::write(&file, "[systems.app]\n").unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .arg("--config")
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis", &redis.url(), "--redis-prefix", prefix])
            .args(["--node-id", &id.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wasmgate starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let echo = std::env::var_os("WASMGATE_TEST_NODE_LOGS").is_some();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("node {id}: {line}");
                }
                if line.contains("wasmgate listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the node logs that it listens");
        Node {
            child,
            port,
            id,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Send `signal` (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        // A stopped process dies of SIGKILL too; no SIGCONT needed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn connect(&self, system: &str) -> Client {
        Client::connect(&format!(
            "ws://127.0.0.1:{}/api/websocket/ws?systemId={system}",
            self.port
        ))
        .await
    }

    /// `POST /api/websocket/<op>`: status and JSON answer.
    pub async fn api(&self, op: &str, system: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("http://127.0.0.1:{}/api/websocket/{op}", self.port))
            .header("systemId", system)
            .json(&body)
            .send()
            .await
            .expect("API call");
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON answer"))
    }

    /// An API call that must succeed: its `data`.
    pub async fn ok(&self, op: &str, system: &str, body: Value) -> Value {
        let (status, answer) = self.api(op, system, body).await;
        assert_eq!(status, 200, "{op} on node {} failed: {answer}", self.id);
        assert_eq!(answer["code"], 0, "{op} failed: {answer}");
        answer["data"].clone()
    }

    /// `GET path`: the body.
    pub async fn get(&self, path: &str) -> String {
        self.http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A WebSocket client.
pub struct Client {
    pub id: String,
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("WebSocket connect");
        let mut client = Client {
            id: String::new(),
            ws,
        };
        let welcome = client.recv_json().await;
        client.id = welcome["data"]["clientId"]
            .as_str()
            .expect("clientId in welcome")
            .to_owned();
        client
    }

    /// The next text message as JSON, within [`WAIT`].
    pub async fn recv_json(&mut self) -> Value {
        self.recv_json_within(WAIT).await
    }

    /// The next text message as JSON, within `within`.
    pub async fn recv_json_within(&mut self, within: Duration) -> Value {
        loop {
            let next = tokio::time::timeout(within, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("client {} got nothing within {within:?}", self.id));
            match next {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("client {} expected text, got {other:?}", self.id),
            }
        }
    }

    /// Wait for the server to close: code and reason.
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

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's close answer so the close is complete.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Poll `f` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A JSON list of strings, sorted.
pub fn sorted(v: &Value) -> Vec<String> {
    let mut list: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

/// Sum of the samples of a Prometheus series.
pub fn metric_sum(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
