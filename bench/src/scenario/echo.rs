//! Scenario 3, echo/RPC: clients in a closed loop (one request in flight each), measuring
//! answered requests per second and their latency. Two paths: the gateway's native
//! `ping`/`pong`, and an application echo (wasmgate: the echo plugin; peers: a JS handler).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::client::{Conn, Target};
use crate::cpu::{CpuMeter, CpuUse};
use crate::fleet::{self, FleetSpec};
use crate::params::Params;
use crate::server::Server;
use crate::stats::Dist;

/// Which echo is exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EchoPath {
    /// Text `ping` answered `pong` by the server itself.
    Native,
    /// Text `<x>` answered `echo:<x>` by application code (plugin / JS handler).
    App,
}

/// Result of one echo run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EchoResult {
    /// Path exercised.
    pub path: EchoPath,
    /// `systemId` the clients used.
    pub system: String,
    /// Concurrent clients (one request in flight each).
    pub clients: usize,
    /// Rounds of handler work each request asked for (`work:<n>:…`; 0: a bare echo).
    #[serde(default)]
    pub work: u32,
    /// Length of the measured window, seconds.
    pub window_secs: f64,
    /// Replies received inside the window.
    pub replies: usize,
    /// Replies per second inside the window.
    pub per_sec: f64,
    /// Request-to-reply latency of the replies inside the window.
    pub latency: Option<Dist>,
    /// Requests left unanswered for 5 s, or failed connections.
    pub errors: usize,
    /// Replies of the least served client ÷ the median client's, inside the window (1.0: every
    /// client served alike). Why: in a closed loop a starved client sends few requests, so its
    /// long waits are few samples and barely move the p99; this shows it.
    #[serde(default)]
    pub fairness: Option<f64>,
    /// CPU used in the window.
    pub cpu: CpuUse,
    /// Server CPU microseconds per reply (robust to a busy machine).
    pub server_us_per_reply: f64,
}

/// Bound on one reply: past it, the client gives up (counted in `errors`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The measured window (`start..end`), published once every client is connected.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

async fn client(
    idx: usize,
    mut conn: Conn,
    target: Target,
    path: EchoPath,
    work: u32,
    mut go: watch::Receiver<Option<Window>>,
    errors: Arc<AtomicUsize>,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut seq = 0u64;
    // Clients start together once all are connected.
    let w = match go.wait_for(Option::is_some).await {
        Ok(w) => match *w {
            Some(w) => w,
            None => return lat,
        },
        Err(_) => return lat,
    };
    while Instant::now() < w.end {
        seq += 1;
        // The native path allocates nothing per request: the client must stay cheap.
        let (req, expect): (Utf8Bytes, Cow<'static, str>) = match path {
            EchoPath::Native => (Utf8Bytes::from_static("ping"), Cow::Borrowed("pong")),
            EchoPath::App => {
                let body = if work > 0 {
                    format!("work:{work}:e{idx}.{seq}")
                } else {
                    format!("e{idx}.{seq}")
                };
                (
                    target.echo_request(&body).into(),
                    Cow::Owned(target.echo_reply(&body)),
                )
            }
        };
        let sent = Instant::now();
        if conn.send_text(req).await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
            return lat;
        }
        let wait = async {
            loop {
                match conn.recv().await {
                    Ok(Some(f)) if f.as_str() == expect.as_ref() => return true,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return false,
                }
            }
        };
        match tokio::time::timeout(REPLY_TIMEOUT, wait).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                return lat;
            }
        }
        let done = Instant::now();
        if done >= w.start && done < w.end {
            lat.push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX));
        }
    }
    lat
}

/// Runs the scenario against a fresh server, on `system`; with `work > 0` every application
/// request asks the handler for that many rounds of work first.
pub async fn run(
    server: &mut Server,
    p: &Params,
    path: EchoPath,
    system: &str,
    work: u32,
) -> Result<EchoResult> {
    let n = p.echo_clients;
    let target = server.target();
    let spec = FleetSpec {
        target,
        also: Vec::new(),
        system: Arc::from(system),
        spread: p.spread(n),
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: Duration::from_secs(30),
    };
    let (go, go_rx) = watch::channel(None);
    let errors = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    let e = errors.clone();
    let opened = fleet::open_many(&spec, 0..n, &mut set, move |i, c| {
        client(i, c, target, path, work, go_rx.clone(), e.clone())
    })
    .await?;
    if opened.failed > 0 {
        bail!(
            "{} of {n} connections failed: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        );
    }
    // Connecting is not measured: the window opens after the warm-up that follows it.
    let start = Instant::now() + Params::ms(p.echo_warmup_ms);
    let w = Window {
        start,
        end: start + Params::ms(p.echo_ms),
    };
    go.send_replace(Some(w));
    tokio::time::sleep_until(w.start.into()).await;
    let meter = CpuMeter::start(server.pid)?;
    tokio::time::sleep_until(w.end.into()).await;
    let cpu = meter.stop()?;
    let mut lat = Vec::new();
    let mut per_client = Vec::with_capacity(n);
    let deadline = w.end + REPLY_TIMEOUT + Duration::from_secs(2);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline.into(), set.join_next()).await {
        if let Ok(Some(v)) = r {
            per_client.push(v.len());
            lat.extend(v);
        }
    }
    set.shutdown().await;
    server.check_alive()?;
    let window_secs = Params::ms(p.echo_ms).as_secs_f64();
    let replies = lat.len();
    let out = EchoResult {
        path,
        system: system.to_owned(),
        clients: n,
        work,
        window_secs,
        replies,
        per_sec: replies as f64 / window_secs,
        latency: Dist::from_us(&mut lat),
        errors: errors.load(Ordering::Relaxed),
        fairness: fairness(&mut per_client),
        server_us_per_reply: cpu.server_secs * 1e6 / replies.max(1) as f64,
        cpu,
    };
    tracing::info!(server = server.kind.label(), ?out, "echo");
    Ok(out)
}

/// Least ÷ median of the clients' reply counts; `None` without clients or replies.
fn fairness(per_client: &mut [usize]) -> Option<f64> {
    per_client.sort_unstable();
    let least = *per_client.first()?;
    let median = per_client[per_client.len() / 2];
    (median > 0).then(|| least as f64 / median as f64)
}

#[cfg(test)]
mod tests {
    use super::fairness;

    #[test]
    fn fairness_is_the_least_served_client_over_the_median() {
        assert_eq!(fairness(&mut []), None);
        assert_eq!(fairness(&mut [0, 0, 0]), None);
        assert_eq!(fairness(&mut [10, 10, 10]), Some(1.0));
        assert_eq!(fairness(&mut [40, 10, 38, 2, 40]), Some(2.0 / 38.0));
    }
}
