//! Issue 12: the latency of one message to one client, from the HTTP `send_to_client` call to
//! the frame at the client. In a cluster every send crosses nodes: the API is called on node 1
//! and the addressed clients are those connected to the other nodes, so each message goes
//! node 1 → Redis `PUBLISH` → the client's node → its socket. On one server (wasmgate, Node
//! `ws`) the same sends stay inside the process, which is the figure to compare with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::fleet::{self, FleetSpec};
use crate::http::Api;
use crate::params::Params;
use crate::scenario::fanout::{parse_marker, payload};
use crate::server::{BENCH_SYSTEM, Server};
use crate::stats::Dist;

/// What one run of the scenario measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Clients connected (over every node).
    pub clients: usize,
    /// Clients the sends were addressed to: in a cluster only those on another node than the
    /// one whose API was called.
    pub addressed: usize,
    /// Whether every send crossed nodes.
    pub cross_node: bool,
    /// Sends made (one at a time, at `latency_rate` per second).
    pub sent: usize,
    /// Sends whose frame arrived.
    pub received: usize,
    /// Frames that arrived more than once.
    pub doubled: u64,
    /// Frames older than one their client had already seen.
    pub out_of_order: u64,
    /// From just before the HTTP call to the frame at the client.
    pub delivery: Option<Dist>,
    /// From just before the HTTP call to its answer.
    pub answer: Option<Dist>,
    /// Connections the server closed during the scenario.
    pub dropped: u64,
}

struct Shared {
    base: Instant,
    /// Per send: arrival (ns after `base`; 0 = not yet).
    arrival: Vec<AtomicU64>,
    doubled: AtomicU64,
    out_of_order: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

async fn receiver(mut conn: Conn, sh: Arc<Shared>) {
    let mut last = 0;
    loop {
        let frame = match conn.recv().await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => {
                sh.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Some(seq) = parse_marker(frame.as_str()) else {
            continue;
        };
        let now = sh.now_ns();
        if let Some(slot) = sh.arrival.get(seq)
            && slot
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            sh.doubled.fetch_add(1, Ordering::Relaxed);
        }
        if seq <= last {
            sh.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last = last.max(seq);
    }
}

/// Runs the scenario against a fresh server.
pub async fn run(server: &mut Server, p: &Params) -> Result<LatencyResult> {
    let n = p.latency_clients;
    let sends = p.latency_sends;
    let nodes = server.targets().len();
    let sh = Arc::new(Shared {
        base: Instant::now(),
        // Sends are numbered from 1.
        arrival: (0..=sends).map(|_| AtomicU64::new(0)).collect(),
        doubled: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let spec = FleetSpec {
        target: server.target(),
        also: server.targets().into_iter().skip(1).collect(),
        system: Arc::from(BENCH_SYSTEM),
        spread: false,
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: Duration::from_secs(30),
    };
    let mut set = JoinSet::new();
    let s = sh.clone();
    let opened =
        fleet::open_many(&spec, 0..n, &mut set, move |_, c| receiver(c, s.clone())).await?;
    if opened.failed > 0 {
        bail!(
            "{} of {n} connections failed: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        );
    }
    // Connection i is on node i % nodes and the API is node 1's (index 0): in a cluster only
    // the others' clients are addressed.
    let mut targets: Vec<(usize, String)> = opened
        .ids
        .into_iter()
        .filter(|&(i, _)| nodes == 1 || i % nodes != 0)
        .collect();
    targets.sort_unstable();
    if targets.is_empty() {
        bail!("no client to address");
    }
    server.check_alive()?;

    let mut api = Api::new(server.addr());
    let body = |client: &str, seq: usize| {
        serde_json::json!({
            "clientId": client, "sendUserId": "bench", "code": 0, "msg": "bench",
            "data": payload(seq, p.payload_bytes),
        })
    };
    // Warm the API connection and each client's path (in a cluster: the nodes' subscriptions),
    // with a frame that carries no sequence number.
    let warm = |client: &str| {
        serde_json::json!({
            "clientId": client, "sendUserId": "bench", "code": 0, "msg": "warm-up",
            "data": "warm-up",
        })
    };
    for (_, id) in &targets {
        api.call("send_to_client", Some(BENCH_SYSTEM), &warm(id))
            .await
            .context("warm-up send_to_client")?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let interval = Duration::from_secs_f64(1.0 / f64::from(p.latency_rate.max(1)));
    let mut sent_at = vec![0u64; sends + 1];
    let mut answers = Vec::with_capacity(sends);
    let start = Instant::now();
    for seq in 1..=sends {
        tokio::time::sleep_until((start + interval * u32::try_from(seq - 1)?).into()).await;
        let (_, id) = &targets[seq % targets.len()];
        let t0 = sh.now_ns();
        sent_at[seq] = t0;
        api.call("send_to_client", Some(BENCH_SYSTEM), &body(id, seq))
            .await
            .with_context(|| format!("send_to_client #{seq}"))?;
        answers.push(sh.now_ns() - t0);
    }
    // Everything sent; give the last frames a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && sh.arrival[1..]
            .iter()
            .any(|a| a.load(Ordering::Relaxed) == 0)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.check_alive()?;
    let delivery: Vec<u64> = (1..=sends)
        .filter_map(|s| {
            let a = sh.arrival[s].load(Ordering::Relaxed);
            (a > 0).then(|| a.saturating_sub(sent_at[s]))
        })
        .collect();
    let out = LatencyResult {
        clients: n,
        addressed: targets.len(),
        cross_node: nodes > 1,
        sent: sends,
        received: delivery.len(),
        doubled: sh.doubled.load(Ordering::Relaxed),
        out_of_order: sh.out_of_order.load(Ordering::Relaxed),
        delivery: Dist::from_ns_vec(delivery),
        answer: Dist::from_ns_vec(answers),
        dropped: sh.dropped.load(Ordering::Relaxed),
    };
    tracing::info!(server = server.kind.label(), ?out, "single-send latency");
    set.shutdown().await;
    Ok(out)
}
