//! Scenario 4, connect storm: open connections as fast as the server welcomes them (a
//! bounded number of handshakes in flight) until the target count is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::cpu::{CpuMeter, CpuUse};
use crate::fleet::{self, FleetSpec};
use crate::params::Params;
use crate::server::{BENCH_SYSTEM, Server};
use crate::stats::Dist;

/// Result of the connect storm.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StormResult {
    /// Connections attempted.
    pub target: usize,
    /// Connections welcomed.
    pub connected: usize,
    /// Connections that failed or timed out.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Handshakes in flight at once.
    pub inflight: usize,
    /// Seconds from the first attempt to the last welcome.
    pub secs: f64,
    /// Welcomed connections per second.
    pub per_sec: f64,
    /// Per connection, attempt to welcome (a 1 s outlier is a SYN retransmit).
    pub connect: Option<Dist>,
    /// Connections the server closed after welcoming them.
    pub dropped: usize,
    /// CPU used during the storm.
    pub cpu: CpuUse,
    /// Server CPU microseconds per accepted connection.
    pub server_us_per_conn: f64,
}

/// Runs the scenario against a fresh server.
pub async fn run(server: &mut Server, p: &Params) -> Result<StormResult> {
    let n = p.storm_conns;
    let spec = FleetSpec {
        target: server.target(),
        also: Vec::new(),
        system: Arc::from(BENCH_SYSTEM),
        spread: p.spread(n),
        source_addrs: p.source_addrs,
        inflight: p.storm_inflight,
        timeout: Duration::from_secs(30),
    };
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    let d = dropped.clone();
    let meter = CpuMeter::start(server.pid)?;
    let mut opened =
        fleet::open_many(&spec, 0..n, &mut set, move |_, c| fleet::hold(c, d.clone())).await?;
    let cpu = meter.stop()?;
    // Let any close that follows a welcome show up before counting drops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.check_alive()?;
    let secs = opened.elapsed.as_secs_f64();
    let out = StormResult {
        target: n,
        connected: opened.ids.len(),
        failed: opened.failed,
        first_error: opened.first_error.take(),
        inflight: p.storm_inflight,
        secs,
        per_sec: opened.ids.len() as f64 / secs.max(1e-9),
        connect: Dist::from_us(&mut opened.connect_us),
        dropped: dropped.load(Ordering::Relaxed),
        server_us_per_conn: cpu.server_secs * 1e6 / opened.ids.len().max(1) as f64,
        cpu,
    };
    set.shutdown().await;
    tracing::info!(server = server.kind.label(), per_sec = out.per_sec, "storm");
    Ok(out)
}
