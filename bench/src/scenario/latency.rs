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
    /// Sends made: one at a time (the next only after the frame arrived, or 1 s), at most
    /// `latency_rate` per second.
    pub sent: usize,
    /// Sends whose frame arrived.
    pub received: usize,
    /// Frames that arrived more than once.
    pub doubled: u64,
    /// Frames that reached another client than the one addressed.
    #[serde(default)]
    pub misrouted: u64,
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
    /// Per send: the connection index it is addressed to (set before the send).
    to: Vec<AtomicU64>,
    doubled: AtomicU64,
    misrouted: AtomicU64,
    out_of_order: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

async fn receiver(idx: usize, mut conn: Conn, sh: Arc<Shared>) {
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
        let (Some(slot), Some(to)) = (sh.arrival.get(seq), sh.to.get(seq)) else {
            continue;
        };
        if to.load(Ordering::Relaxed) != idx as u64 {
            sh.misrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if slot
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            sh.doubled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if seq < last {
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
        to: (0..=sends).map(|_| AtomicU64::new(u64::MAX)).collect(),
        doubled: AtomicU64::new(0),
        misrouted: AtomicU64::new(0),
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
        fleet::open_many(&spec, 0..n, &mut set, move |i, c| receiver(i, c, s.clone())).await?;
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

    // One send in flight at a time: the next goes after this one's frame arrived (or 1 s), at
    // the next tick; a late tick is not caught up with a burst.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(p.latency_rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_at = vec![0u64; sends + 1];
    let mut answers = Vec::with_capacity(sends);
    for seq in 1..=sends {
        tick.tick().await;
        let (idx, id) = &targets[seq % targets.len()];
        let request = body(id, seq);
        sh.to[seq].store(*idx as u64, Ordering::Relaxed);
        let t0 = sh.now_ns();
        sent_at[seq] = t0;
        api.call("send_to_client", Some(BENCH_SYSTEM), &request)
            .await
            .with_context(|| format!("send_to_client #{seq}"))?;
        answers.push(sh.now_ns() - t0);
        let waited = Instant::now();
        while sh.arrival[seq].load(Ordering::Relaxed) == 0
            && waited.elapsed() < Duration::from_secs(1)
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    // Late frames (and doubles) still count.
    tokio::time::sleep(Duration::from_millis(200)).await;
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
        misrouted: sh.misrouted.load(Ordering::Relaxed),
        out_of_order: sh.out_of_order.load(Ordering::Relaxed),
        delivery: Dist::from_ns_vec(delivery),
        answer: Dist::from_ns_vec(answers),
        dropped: sh.dropped.load(Ordering::Relaxed),
    };
    tracing::info!(server = server.kind.label(), ?out, "single-send latency");
    set.shutdown().await;
    Ok(out)
}
