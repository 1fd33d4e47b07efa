//! A minimal keep-alive HTTP/1.1 client for the seed-001 API (`POST /api/websocket/<op>`).
//! Hand-rolled so a trigger costs one small write on an open connection and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Default bound on one API call, so a stuck server cannot hang the benchmark.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection to the API, reopened when the server closes it.
pub struct Api {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Bound on one call (a server that answers only after delivering may need long).
    timeout: Duration,
}

impl Api {
    /// A client for the server at `addr` (connects lazily).
    pub fn new(addr: SocketAddr) -> Api {
        Api::with_timeout(addr, CALL_TIMEOUT)
    }

    /// A client whose calls may take up to `timeout`.
    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Api {
        Api {
            addr,
            conn: None,
            timeout,
        }
    }

    /// Calls `op` with an optional `systemId` header; returns `data` of a `code: 0` answer.
    pub async fn call(&mut self, op: &str, system: Option<&str>, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body).context("encode body")?;
        let mut head = format!(
            "POST /api/websocket/{op} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(s) = system {
            head.push_str(&format!("systemId: {s}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        self.send(op, &request).await
    }

    /// `GET path`; returns `data` of a `code: 0` answer (e.g. wasmgate's `/api/plugins`).
    pub async fn get(&mut self, path: &str) -> Result<Value> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.addr);
        self.send(path, request.as_bytes()).await
    }

    async fn send(&mut self, what: &str, request: &[u8]) -> Result<Value> {
        // A kept-alive connection may have been closed by the server: retry once on a new one.
        let reused = self.conn.is_some();
        let limit = self.timeout;
        match tokio::time::timeout(limit, self.exchange(request)).await {
            Ok(Ok(v)) => return check(what, v),
            Ok(Err(e)) if !reused => return Err(e),
            Err(_) => bail!("{what}: no answer within {limit:?}"),
            Ok(Err(_)) => {}
        }
        self.conn = None;
        let v = tokio::time::timeout(limit, self.exchange(request))
            .await
            .with_context(|| format!("{what}: no answer within {limit:?}"))??;
        check(what, v)
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Value)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect to API at {}", self.addr))?;
            s.set_nodelay(true).context("TCP_NODELAY")?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().context("no API connection")?;
        let result = exchange_on(conn, request).await;
        match result {
            Ok((status, body, keep)) => {
                if !keep {
                    self.conn = None;
                }
                let v = serde_json::from_slice(&body).with_context(|| {
                    format!("API answer is not JSON: {}", String::from_utf8_lossy(&body))
                })?;
                Ok((status, v))
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

fn check(op: &str, (status, v): (u16, Value)) -> Result<Value> {
    if status != 200 || v["code"] != 0 {
        bail!("{op}: HTTP {status}, answer {v}");
    }
    Ok(v["data"].clone())
}

async fn exchange_on(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> Result<(u16, Vec<u8>, bool)> {
    conn.get_mut()
        .write_all(request)
        .await
        .context("write request")?;
    let mut line = String::new();
    conn.read_line(&mut line).await.context("read status")?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep = true;
    loop {
        line.clear();
        let n = conn.read_line(&mut line).await.context("read header")?;
        if n == 0 {
            bail!("connection closed inside headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().context("content-length")?)
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await.context("read chunk size")?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await.context("read chunk")?;
            if size == 0 {
                break;
            }
            chunk.truncate(size);
            body.extend_from_slice(&chunk);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body).await.context("read body")?;
    } else {
        conn.read_to_end(&mut body).await.context("read body")?;
        keep = false;
    }
    Ok((status, body, keep))
}

/// Binds every client id to `group` over `parallel` keep-alive connections.
pub async fn bind_all(
    addr: SocketAddr,
    system: &str,
    group: &str,
    ids: Vec<String>,
    parallel: usize,
) -> Result<()> {
    let ids = Arc::new(ids);
    let parallel = parallel.clamp(1, ids.len().max(1));
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        let ids = ids.clone();
        let system = system.to_owned();
        let group = group.to_owned();
        set.spawn(async move {
            let mut api = Api::new(addr);
            for id in ids.iter().skip(worker).step_by(parallel) {
                let body =
                    serde_json::json!({"sendUserId": "bench", "clientId": id, "groupName": group});
                api.call("bind_to_group", Some(&system), &body).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("bind task panicked")??;
    }
    Ok(())
}
