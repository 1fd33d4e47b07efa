//! Scenario 2, fan-out: N clients in one group; one broadcast timed to its first, median,
//! p99 and last delivery, then sustained broadcasts at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::cpu::{CpuMeter, CpuUse};
use crate::fleet::{self, FleetSpec};
use crate::http::{self, Api};
use crate::params::Params;
use crate::server::{BENCH_SYSTEM, QUIET_SYSTEM, Server, ServerKind};
use crate::stats::{Dist, rank};

const GROUP: &str = "bench-fanout";
/// The system registered for the `system` variant, holding only the fan-out clients.
const FANOUT_SYSTEM: &str = "fanout";

/// How the N clients are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A system registered for the run (`register`), broadcast with `send_to_system`. No
    /// join notices, so setup is linear in N.
    System,
    /// One group (`bind_to_group` per client), broadcast with `send_to_group`. Where joining
    /// notifies the group's members (seed-001 code 1001, as wasmgate does), setup sends
    /// N²/2 notices: use it for small N.
    Group,
}
const MARKER: &str = "#bench#";

/// Delivery of the single broadcast.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Single {
    /// Clients that received it.
    pub received: usize,
    /// Time from just before the HTTP trigger to the first delivery, ms.
    pub first_ms: f64,
    /// ... to the median delivery.
    pub p50_ms: f64,
    /// ... to the 99th-percentile delivery.
    pub p99_ms: f64,
    /// ... to the last delivery.
    pub last_ms: f64,
    /// How long the HTTP trigger itself took to be answered.
    pub trigger_ms: f64,
}

/// The sustained phase.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sustained {
    /// Broadcasts sent.
    pub sent: usize,
    /// Deliveries expected (sent × clients).
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Deliveries of a message not newer than the last one that client saw.
    pub out_of_order: u64,
    /// Delivered messages per second, first trigger to last delivery.
    pub msgs_per_sec: f64,
    /// Per broadcast, trigger to its last delivery.
    pub last_delivery: Option<Dist>,
    /// CPU used from the first trigger to the last delivery.
    pub cpu: CpuUse,
    /// Server CPU microseconds per delivered message.
    pub server_us_per_delivery: f64,
    /// A cluster: commands its Redis ran per broadcast during the phase, the nodes' own
    /// background (lease refreshes, pings) included.
    #[serde(default)]
    pub redis_commands_per_broadcast: Option<f64>,
}

/// Result of the fan-out scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FanoutResult {
    /// How the clients were addressed.
    pub via: Via,
    /// Clients connected to the system.
    pub clients: usize,
    /// Clients the broadcasts are for (all of them, or the group's members).
    #[serde(default)]
    pub members: usize,
    /// Broadcast frames that reached a client outside the group (must stay 0).
    #[serde(default)]
    pub strays: u64,
    /// Seconds to connect them and bind them to the group.
    pub setup_secs: f64,
    /// The single broadcast.
    pub single: Single,
    /// The sustained phase.
    pub sustained: Sustained,
    /// Connections the server closed during the scenario.
    pub dropped: usize,
}

/// Receive-side records, written by the per-connection tasks.
struct Shared {
    base: Instant,
    /// Every frame, used to wait for quiet after setup.
    frames: AtomicU64,
    /// Per client: arrival of broadcast 0 (ns after `base`, 0 = not yet).
    single: Vec<AtomicU64>,
    single_count: AtomicUsize,
    /// Per broadcast 1..: deliveries and the latest arrival (ns after `base`).
    seq_count: Vec<AtomicU32>,
    seq_last: Vec<AtomicU64>,
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    last_arrival: AtomicU64,
    dropped: AtomicUsize,
    /// Broadcast frames seen by clients that are not members.
    strays: AtomicU64,
}

/// Who is connected and who the broadcasts address.
#[derive(Clone, Copy, Debug)]
struct Shape {
    via: Via,
    /// The system every client connects to.
    system: &'static str,
    /// Whether the system is registered through the API first.
    register: bool,
    /// Clients connected.
    clients: usize,
    /// The first `members` clients are the group (all of them for [`Via::System`]).
    members: usize,
}

impl Shape {
    /// Scenario 2: every client is addressed, as one system or one group.
    fn all(p: &Params) -> Shape {
        let (system, register) = match p.fanout_via {
            Via::System => (FANOUT_SYSTEM, true),
            Via::Group => (BENCH_SYSTEM, false),
        };
        Shape {
            via: p.fanout_via,
            system,
            register,
            clients: p.fanout_clients,
            members: p.fanout_clients,
        }
    }

    /// Issue 13: a group that is a part of a larger system; wasmgate declares that system
    /// without group notices (see [`QUIET_SYSTEM`]), the peers register it.
    fn group_in_system(p: &Params, kind: ServerKind) -> Shape {
        Shape {
            via: Via::Group,
            system: QUIET_SYSTEM,
            register: !matches!(kind, ServerKind::Wasmgate | ServerKind::Cluster),
            clients: p.group_system_clients,
            members: p.group_members.min(p.group_system_clients),
        }
    }
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// `#bench#<seq>#` anywhere in the frame → seq.
pub(crate) fn parse_marker(frame: &str) -> Option<usize> {
    let at = frame.find(MARKER)? + MARKER.len();
    let digits = &frame[at..];
    let end = digits.find('#')?;
    digits[..end].parse().ok()
}

pub(crate) fn payload(seq: usize, len: usize) -> String {
    let mut s = format!("{MARKER}{seq}#");
    while s.len() < len {
        s.push('x');
    }
    s
}

async fn receiver(idx: usize, member: bool, mut conn: Conn, sh: Arc<Shared>) {
    let mut last_seq = 0;
    loop {
        let frame = match conn.recv().await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => {
                sh.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        sh.frames.fetch_add(1, Ordering::Relaxed);
        let Some(seq) = parse_marker(frame.as_str()) else {
            continue;
        };
        if !member {
            sh.strays.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = sh.now_ns();
        if seq == 0 {
            if let Some(slot) = sh.single.get(idx)
                && slot
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                sh.single_count.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if seq <= last_seq {
            sh.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last_seq = last_seq.max(seq);
        if let (Some(c), Some(l)) = (sh.seq_count.get(seq), sh.seq_last.get(seq)) {
            c.fetch_add(1, Ordering::Relaxed);
            l.fetch_max(now, Ordering::Relaxed);
        }
        sh.delivered.fetch_add(1, Ordering::Relaxed);
        sh.last_arrival.fetch_max(now, Ordering::Relaxed);
    }
}

/// Waits until no frame arrived for `quiet` (bounded by `limit`): join notices and the
/// like must be over before anything is timed.
async fn wait_quiet(sh: &Shared, quiet: Duration, limit: Duration) {
    let start = Instant::now();
    let mut seen = sh.frames.load(Ordering::Relaxed);
    while start.elapsed() < limit {
        tokio::time::sleep(quiet).await;
        let now = sh.frames.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
    tracing::warn!("frames still arriving after {limit:?} of setup");
}

/// Waits until `done()` or `limit`, also giving up after `stall` without progress.
async fn wait_for(mut progress: impl FnMut() -> (bool, u64), limit: Duration, stall: Duration) {
    let start = Instant::now();
    let (mut last, mut last_change) = (progress().1, Instant::now());
    while start.elapsed() < limit {
        let (done, n) = progress();
        if done {
            return;
        }
        if n != last {
            last = n;
            last_change = Instant::now();
        } else if last_change.elapsed() > stall {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The API call that broadcasts message `seq`: (op, systemId, body).
fn trigger(
    seq: usize,
    p: &Params,
    shape: Shape,
) -> (&'static str, &'static str, serde_json::Value) {
    let data = payload(seq, p.payload_bytes);
    match shape.via {
        Via::System => (
            "send_to_system",
            shape.system,
            serde_json::json!({"sendUserId": "bench", "code": 0, "msg": "bench", "data": data}),
        ),
        Via::Group => (
            "send_to_group",
            shape.system,
            serde_json::json!({
                "groupName": GROUP, "sendUserId": "bench", "code": 0, "msg": "bench", "data": data,
            }),
        ),
    }
}

/// Runs scenario 2 against a fresh server.
pub async fn run(server: &mut Server, p: &Params) -> Result<FanoutResult> {
    run_shape(server, p, Shape::all(p)).await
}

/// Runs the group fan-out of issue 13 against a fresh server: `group_members` of
/// `group_system_clients` clients form the group, the others only hold their connection
/// (and must receive none of the broadcasts).
pub async fn run_group_in_system(server: &mut Server, p: &Params) -> Result<FanoutResult> {
    run_shape(server, p, Shape::group_in_system(p, server.kind)).await
}

async fn run_shape(server: &mut Server, p: &Params, shape: Shape) -> Result<FanoutResult> {
    let n = shape.clients;
    let members = shape.members;
    let sent_target = (f64::from(p.fanout_rate) * p.fanout_secs).round().max(1.0) as usize;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        frames: AtomicU64::new(0),
        single: (0..members).map(|_| AtomicU64::new(0)).collect(),
        single_count: AtomicUsize::new(0),
        seq_count: (0..=sent_target).map(|_| AtomicU32::new(0)).collect(),
        seq_last: (0..=sent_target).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        last_arrival: AtomicU64::new(0),
        dropped: AtomicUsize::new(0),
        strays: AtomicU64::new(0),
    });
    let system = shape.system;
    let mut api = Api::new(server.addr());
    if shape.register {
        api.call("register", None, &serde_json::json!({"systemId": system}))
            .await
            .with_context(|| format!("register the system {system}"))?;
    }
    let spec = FleetSpec {
        target: server.target(),
        also: server.targets().into_iter().skip(1).collect(),
        system: Arc::from(system),
        spread: p.spread(n),
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: Duration::from_secs(30),
    };
    let setup = Instant::now();
    let mut set = JoinSet::new();
    let s = sh.clone();
    let opened = fleet::open_many(&spec, 0..n, &mut set, move |i, c| {
        receiver(i, i < members, c, s.clone())
    })
    .await?;
    if opened.failed > 0 {
        bail!(
            "{} of {n} connections failed: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        );
    }
    if shape.via == Via::Group {
        let ids = opened
            .ids
            .into_iter()
            .filter(|&(i, _)| i < members)
            .map(|(_, id)| id)
            .collect();
        http::bind_all(server.addr(), system, GROUP, ids, 8).await?;
    }
    wait_quiet(&sh, Duration::from_millis(300), Duration::from_secs(30)).await;
    let setup_secs = setup.elapsed().as_secs_f64();
    server.check_alive()?;

    // Warm the API connection so the timed trigger is one write on an open socket.
    api.call(
        "send_to_system",
        Some(system),
        &serde_json::json!({
            "sendUserId": "bench", "code": 0, "msg": "warm-up", "data": "warm-up"
        }),
    )
    .await
    .context("warm-up send_to_system")?;
    wait_quiet(&sh, Duration::from_millis(200), Duration::from_secs(10)).await;

    let t0 = sh.now_ns();
    let (op, sys, body) = trigger(0, p, shape);
    api.call(op, Some(sys), &body).await?;
    let trigger_ms = (sh.now_ns() - t0) as f64 / 1e6;
    let s = sh.clone();
    wait_for(
        move || {
            let c = s.single_count.load(Ordering::Relaxed);
            (c >= members, c as u64)
        },
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    let mut arrivals: Vec<u64> = sh
        .single
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|&a| a > 0)
        .map(|a| a.saturating_sub(t0))
        .collect();
    arrivals.sort_unstable();
    if arrivals.is_empty() {
        bail!("the broadcast reached none of the {members} clients");
    }
    let ms = |v: u64| v as f64 / 1e6;
    let single = Single {
        received: arrivals.len(),
        first_ms: ms(arrivals[0]),
        p50_ms: ms(arrivals[rank(arrivals.len(), 0.5)]),
        p99_ms: ms(arrivals[rank(arrivals.len(), 0.99)]),
        last_ms: ms(arrivals[arrivals.len() - 1]),
        trigger_ms,
    };
    tracing::info!(server = server.kind.label(), ?single, "fan-out single");

    let sustained = sustained(server, p, shape, &sh, sent_target).await?;
    server.check_alive()?;
    let dropped = sh.dropped.load(Ordering::Relaxed);
    set.shutdown().await;
    Ok(FanoutResult {
        via: shape.via,
        clients: n,
        members,
        strays: sh.strays.load(Ordering::Relaxed),
        setup_secs,
        single,
        sustained,
        dropped,
    })
}

/// Bound on one trigger of the sustained phase: a server that answers the API only after
/// writing to every client (Node) answers the last trigger long after it was sent.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(60);

/// Broadcasts at a fixed rate, open loop: each trigger goes out on its own connection at its
/// scheduled time, whether or not the server has answered the previous ones (a closed loop
/// would slow the rate down to what a slow server allows and hide its backlog).
async fn sustained(
    server: &Server,
    p: &Params,
    shape: Shape,
    sh: &Arc<Shared>,
    count: usize,
) -> Result<Sustained> {
    let n = shape.members;
    let interval = Duration::from_secs_f64(1.0 / f64::from(p.fanout_rate.max(1)));
    let mut sent_at = vec![0u64; count + 1];
    let redis_before = server.redis_commands().await;
    let meter = CpuMeter::start_all(server.pids())?;
    let start = Instant::now();
    let first_send = sh.now_ns();
    let mut triggers = JoinSet::new();
    for (seq, at) in sent_at.iter_mut().enumerate().skip(1) {
        tokio::time::sleep_until((start + interval * u32::try_from(seq - 1)?).into()).await;
        *at = sh.now_ns();
        let (op, sys, body) = trigger(seq, p, shape);
        let addr = server.addr();
        triggers.spawn(async move {
            Api::with_timeout(addr, TRIGGER_TIMEOUT)
                .call(op, Some(sys), &body)
                .await
        });
    }
    while let Some(r) = triggers.join_next().await {
        r.context("trigger task")?.context("sustained trigger")?;
    }
    let expected = (count * n) as u64;
    let s = sh.clone();
    wait_for(
        move || {
            let d = s.delivered.load(Ordering::Relaxed);
            (d >= expected, d)
        },
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    let cpu = meter.stop()?;
    let redis_commands_per_broadcast = match (redis_before, server.redis_commands().await) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / count.max(1) as f64),
        _ => None,
    };
    let delivered = sh.delivered.load(Ordering::Relaxed);
    let span = sh
        .last_arrival
        .load(Ordering::Relaxed)
        .saturating_sub(first_send);
    let last: Vec<u64> = (1..=count)
        .filter(|&s| sh.seq_count[s].load(Ordering::Relaxed) > 0)
        .map(|s| {
            sh.seq_last[s]
                .load(Ordering::Relaxed)
                .saturating_sub(sent_at[s])
        })
        .collect();
    let out = Sustained {
        sent: count,
        expected,
        delivered,
        out_of_order: sh.out_of_order.load(Ordering::Relaxed),
        msgs_per_sec: if span > 0 {
            delivered as f64 / (span as f64 / 1e9)
        } else {
            0.0
        },
        last_delivery: Dist::from_ns_vec(last),
        server_us_per_delivery: cpu.server_secs * 1e6 / delivered.max(1) as f64,
        redis_commands_per_broadcast,
        cpu,
    };
    tracing::info!(server = server.kind.label(), ?out, "fan-out sustained");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_its_sequence_number() {
        let p = payload(42, 100);
        assert_eq!(p.len(), 100);
        let framed = format!("{{\"messageId\":\"1\",\"data\":\"{p}\"}}");
        assert_eq!(parse_marker(&framed), Some(42));
        assert_eq!(parse_marker("{\"code\":1001}"), None);
        assert_eq!(parse_marker("#bench#12"), None);
    }
}
