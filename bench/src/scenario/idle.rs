//! Scenario 1, idle memory: server RSS per connection at increasing numbers of idle
//! connections, the RSS of the fresh server subtracted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::fleet::{self, FleetSpec};
use crate::params::Params;
use crate::server::{BENCH_SYSTEM, Server};

/// One reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleLevel {
    /// Connections open when the reading was taken.
    pub conns: usize,
    /// Server RSS at that point, KiB.
    pub rss_kib: u64,
    /// (RSS - baseline) / connections, in KB (1000 bytes).
    pub kb_per_conn: f64,
}

/// Result of the idle-memory scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleResult {
    /// RSS of the started server before any WebSocket connection, KiB.
    pub baseline_rss_kib: u64,
    /// One entry per level reached.
    pub levels: Vec<IdleLevel>,
    /// Whether connections were spread over source addresses.
    pub spread: bool,
    /// Connections the server closed while idle.
    pub dropped: usize,
}

/// Runs the scenario against a fresh server.
pub async fn run(server: &mut Server, p: &Params) -> Result<IdleResult> {
    let max = p.idle_levels.iter().copied().max().unwrap_or(0);
    let spec = FleetSpec {
        target: server.target(),
        also: server.targets().into_iter().skip(1).collect(),
        system: Arc::from(BENCH_SYSTEM),
        spread: p.spread(max),
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: std::time::Duration::from_secs(30),
    };
    tokio::time::sleep(Params::ms(p.idle_settle_ms)).await;
    let baseline = server.rss_kib()?;
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    let mut levels = Vec::new();
    let mut open = 0;
    for &level in &p.idle_levels {
        if level <= open {
            continue;
        }
        let d = dropped.clone();
        let opened = fleet::open_many(&spec, open..level, &mut set, move |_, conn| {
            fleet::hold(conn, d.clone())
        })
        .await?;
        if opened.failed > 0 {
            bail!(
                "{} of {} connections failed on the way to {level}: {}",
                opened.failed,
                level - open,
                opened.first_error.unwrap_or_default()
            );
        }
        open = level;
        tokio::time::sleep(Params::ms(p.idle_settle_ms)).await;
        server.check_alive()?;
        let rss = server.rss_kib()?;
        levels.push(IdleLevel {
            conns: level,
            rss_kib: rss,
            kb_per_conn: rss.saturating_sub(baseline) as f64 * 1.024 / level as f64,
        });
        tracing::info!(
            server = server.kind.label(),
            level,
            rss_kib = rss,
            "idle level"
        );
    }
    let dropped = dropped.load(Ordering::Relaxed);
    set.shutdown().await;
    Ok(IdleResult {
        baseline_rss_kib: baseline,
        levels,
        spread: spec.spread,
        dropped,
    })
}
