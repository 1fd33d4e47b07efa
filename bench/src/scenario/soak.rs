//! Scenario 6, soak (wasmgate only): minutes of steady, mixed load against one gateway serving
//! the chat plugin (`plugins/chat`), watching its memory and counting every error.
//!
//! - a pool of long-lived clients, each in one chat room (plugin `join`) and one API group
//!   (`bind_to_group`), saying a line every `soak_say_interval_ms`;
//! - churn: `soak_churn_per_sec` new clients per second, each taking a nickname, joining a room
//!   and an API group, saying lines for `soak_churn_life_ms`, then leaving: half with a close
//!   frame, the rest by a TCP FIN, a TCP reset, or closed through the API (`close_client`);
//! - `soak_pushes_per_sec` API pushes, rotating over `send_to_system`, `send_to_group` to a
//!   room and `send_to_group` to an API group; every pool member must receive every push meant
//!   for it exactly once.
//!
//! The gateway's RSS is sampled every `soak_sample_ms`. The run fails on any error (failed
//! connect, missing or non-zero plugin reply, unexpected close code, non-200 API answer,
//! missing or doubled push) and, when `soak_check_rss` is on (the full run, not the smoke),
//! when the RSS at the end exceeds `soak_rss_limit` × the RSS after the warm-up.

mod clients;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use self::clients::{Ctx, Event, Fault, PoolOutcome};
use crate::cpu::{CpuMeter, CpuUse};
use crate::fleet::{self, FleetSpec};
use crate::http::Api;
use crate::params::Params;
use crate::server::Server;

/// One RSS reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_secs: f64,
    /// The gateway's `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Connections the gateway reported (`/healthz`), if it answered.
    pub connections: Option<u64>,
}

/// Errors of the run, by kind (any of them fails it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Errors {
    /// Connections refused, timed out or without a welcome.
    pub connect_failed: u64,
    /// Plugin requests without a reply (or a `say` without its `said`) within 5 s.
    pub missing_reply: u64,
    /// Plugin replies with a non-zero code.
    pub bad_reply: u64,
    /// Connections closed with another code than asked, or by the server unasked.
    pub unexpected_close: u64,
    /// API calls answered non-200 or not at all.
    pub api: u64,
    /// API pushes a pool member never received.
    pub missing_push: u64,
    /// API pushes a pool member received twice.
    pub duplicate_push: u64,
    /// Sum of the above.
    pub total: u64,
    /// The first errors, described.
    pub first: Vec<String>,
}

/// Result of the soak.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakResult {
    /// Length of the steady load, seconds (as run).
    pub duration_secs: f64,
    /// Long-lived clients.
    pub pool_clients: usize,
    /// Churn clients connected (welcomed), pool excluded.
    pub churn_connects: u64,
    /// Departures: close frame answered by the server (pool members at the end included).
    pub left_close_frame: u64,
    /// Departures by TCP FIN without a close frame.
    pub left_fin: u64,
    /// Departures by TCP reset.
    pub left_reset: u64,
    /// Departures through the API (`close_client`, code 4000 seen by the client).
    pub left_kicked: u64,
    /// Chat events sent to the plugin.
    pub plugin_messages: u64,
    /// Plugin replies with code 0.
    pub plugin_replies: u64,
    /// API calls answered 200 (binds, kicks, pushes).
    pub api_calls: u64,
    /// API pushes sent (answered 200).
    pub pushes_sent: u64,
    /// API pushes received by any client.
    pub pushes_received: u64,
    /// Plugin chat lines (`said`) received.
    pub said_received: u64,
    /// Group notices (1001/1002) received.
    pub notices_received: u64,
    /// New connections per second over the run.
    pub connects_per_sec: f64,
    /// Client events per second: connects, departures, plugin messages and API calls.
    pub events_per_sec: f64,
    /// Frames received per second (pushes, chat lines, notices, replies).
    pub frames_received_per_sec: f64,
    /// The errors.
    pub errors: Errors,
    /// RSS of the fresh gateway, before any client, KiB.
    pub rss_start_kib: u64,
    /// RSS at the end of the warm-up (the first sample at or after it), KiB.
    pub rss_warmup_kib: u64,
    /// When that sample was taken, seconds into the load.
    pub warmup_secs: f64,
    /// RSS of the last sample under load, KiB.
    pub rss_end_kib: u64,
    /// Largest sample, KiB.
    pub rss_max_kib: u64,
    /// `rss_end_kib / rss_warmup_kib`.
    pub rss_ratio: f64,
    /// RSS a few seconds after every client left, KiB.
    pub rss_after_kib: u64,
    /// Whether the RSS criterion decided the outcome (not in smoke runs).
    pub rss_checked: bool,
    /// Every RSS sample.
    pub samples: Vec<Sample>,
    /// CPU over the load.
    pub cpu: CpuUse,
    /// Lines the gateway logged at WARN and at ERROR.
    pub gateway_warn_lines: usize,
    /// Lines the gateway logged at ERROR.
    pub gateway_error_lines: usize,
    /// The first WARN/ERROR lines of the gateway, for diagnosis.
    pub gateway_log_sample: Vec<String>,
    /// Why the run fails; empty when it passes.
    pub failures: Vec<String>,
}

/// Where a push went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PushTo {
    System,
    Room(usize),
    ApiGroup(usize),
}

/// Sends `rate` pushes per second until `until`; returns the ones answered 200.
async fn pusher(ctx: Arc<Ctx>, rate: u32, until: Instant) -> Vec<(u64, PushTo)> {
    let mut sent = Vec::new();
    if rate == 0 {
        return sent;
    }
    let mut api = Api::new(ctx.target.addr);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        if Instant::now() >= until {
            return sent;
        }
        seq += 1;
        let k = usize::try_from(seq / 3).unwrap_or(0) % ctx.rooms;
        let to = match seq % 3 {
            0 => PushTo::System,
            1 => PushTo::Room(k),
            _ => PushTo::ApiGroup(k),
        };
        let mut body =
            json!({ "sendUserId": "soak", "code": 0, "msg": "soak", "data": { "seq": seq } });
        let op = match to {
            PushTo::System => "send_to_system",
            PushTo::Room(k) => {
                body["groupName"] = ctx.room(k).into();
                "send_to_group"
            }
            PushTo::ApiGroup(k) => {
                // `api_group(i)` is `api-<i>` for i < rooms.
                body["groupName"] = ctx.api_group(k).into();
                "send_to_group"
            }
        };
        match api.call(op, Some(clients::SYSTEM), &body).await {
            Ok(_) => {
                ctx.tally.event(Event::ApiCall);
                sent.push((seq, to));
            }
            Err(e) => ctx.tally.fault(Fault::Api, || format!("push {seq}: {e:#}")),
        }
    }
}

/// Samples the gateway's RSS (and its connection count) every `every` until `until`, the
/// last sample at `until`.
async fn sampler(
    server_pid: u32,
    addr: std::net::SocketAddr,
    every: Duration,
    start: Instant,
    until: Instant,
) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut api = Api::with_timeout(addr, Duration::from_secs(5));
    let mut at = start;
    loop {
        tokio::time::sleep_until(at.into()).await;
        let connections = match api.get("/healthz").await {
            Ok(d) => d["connections"].as_u64(),
            Err(_) => None,
        };
        out.push(Sample {
            t_secs: start.elapsed().as_secs_f64(),
            rss_kib: crate::server::rss_kib(server_pid)?,
            connections,
        });
        if at >= until {
            return Ok(out);
        }
        at = (at + every).min(until);
    }
}

/// Checks every pool member got every push meant for it exactly once.
fn check_pushes(ctx: &Ctx, sent: &[(u64, PushTo)], pool: &[PoolOutcome]) {
    for m in pool.iter().filter(|m| m.ready) {
        let room = ctx.room(m.idx);
        let group = ctx.api_group(m.idx);
        let mut got = m.pushes.clone();
        got.sort_unstable();
        let before = got.len();
        got.dedup();
        let doubled = (before - got.len()) as u64;
        ctx.tally.faults(Fault::DuplicatePush, doubled, || {
            format!("pool member {}: {doubled} pushes received twice", m.idx)
        });
        let missing: Vec<u64> = sent
            .iter()
            .filter(|(_, to)| match *to {
                PushTo::System => true,
                PushTo::Room(k) => ctx.room(k) == room,
                PushTo::ApiGroup(k) => ctx.api_group(k) == group,
            })
            .map(|&(seq, _)| seq)
            .filter(|seq| got.binary_search(seq).is_err())
            .collect();
        ctx.tally
            .faults(Fault::MissingPush, missing.len() as u64, || {
                format!(
                    "pool member {}: {} pushes never arrived, first {:?}",
                    m.idx,
                    missing.len(),
                    &missing[..missing.len().min(5)]
                )
            });
    }
}

/// Runs the soak against a fresh gateway serving the chat plugin (system `chat`).
pub async fn run(server: &mut Server, p: &Params) -> Result<SoakResult> {
    if p.soak_pool < p.soak_rooms.max(1) {
        bail!(
            "the soak needs at least one pool member per room ({} < {})",
            p.soak_pool,
            p.soak_rooms
        );
    }
    let target = server.target();
    let ctx = Arc::new(Ctx::new(
        target,
        p.soak_rooms,
        Params::ms(p.soak_say_interval_ms),
    ));
    let rss_start_kib = server.rss_kib()?;
    // The pool: connected and in its groups before the load starts.
    let spec = FleetSpec {
        target,
        also: Vec::new(),
        system: Arc::from(clients::SYSTEM),
        spread: false,
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: clients::CONNECT_TIMEOUT,
    };
    let mut pool = JoinSet::new();
    let c = ctx.clone();
    let opened = fleet::open_many(&spec, 0..p.soak_pool, &mut pool, move |i, conn| {
        clients::pool_member(i, conn, c.clone())
    })
    .await?;
    if opened.failed > 0 {
        bail!(
            "{} of {} pool connections failed: {}",
            opened.failed,
            p.soak_pool,
            opened.first_error.unwrap_or_default()
        );
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    while ctx.ready.load(Ordering::Relaxed) < p.soak_pool {
        if Instant::now() > ready_by {
            bail!("pool members not in their groups after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let duration = Duration::from_secs(p.soak_secs);
    let start = Instant::now();
    let until = start + duration;
    tracing::info!(
        secs = p.soak_secs,
        pool = p.soak_pool,
        churn_per_sec = p.soak_churn_per_sec,
        "soak: load on"
    );
    let meter = CpuMeter::start(server.pid)?;
    let sampling = tokio::spawn(sampler(
        server.pid,
        server.addr(),
        Params::ms(p.soak_sample_ms),
        start,
        until,
    ));
    let pushing = tokio::spawn(pusher(ctx.clone(), p.soak_pushes_per_sec, until));
    // Churn: open loop, one new client every 1/rate s whatever the others are doing.
    let mut churn = JoinSet::new();
    let life = Params::ms(p.soak_churn_life_ms);
    if p.soak_churn_per_sec > 0 {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / p.soak_churn_per_sec);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut idx = 0u64;
        loop {
            tick.tick().await;
            if Instant::now() >= until {
                break;
            }
            churn.spawn(clients::churn_client(idx, life, ctx.clone()));
            idx += 1;
            while churn.try_join_next().is_some() {}
        }
    } else {
        tokio::time::sleep_until(until.into()).await;
    }
    let sent = pushing.await.context("pusher panicked")?;
    let samples = sampling.await.context("sampler panicked")??;
    let cpu = meter.stop()?;
    // Let the last churn clients finish (each is bounded by its timeouts).
    let bound = life + clients::CONNECT_TIMEOUT + Duration::from_secs(30);
    let churn_done =
        tokio::time::timeout(bound, async { while churn.join_next().await.is_some() {} }).await;
    if churn_done.is_err() {
        churn.shutdown().await;
        ctx.tally.fault(Fault::MissingReply, || {
            format!("churn clients still busy {bound:?} after the load stopped")
        });
    }
    ctx.stop.store(true, Ordering::Relaxed);
    let mut members = Vec::new();
    let pool_bound = ctx.drain + clients::REPLY_TIMEOUT + Duration::from_secs(15);
    let pool_done = tokio::time::timeout(pool_bound, async {
        while let Some(r) = pool.join_next().await {
            if let Ok(Some(m)) = r {
                members.push(m);
            }
        }
    })
    .await;
    if pool_done.is_err() {
        pool.shutdown().await;
        ctx.tally.fault(Fault::UnexpectedClose, || {
            "pool members did not finish leaving".into()
        });
    }
    check_pushes(&ctx, &sent, &members);
    server.check_alive()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after_kib = server.rss_kib()?;
    let out = summarize(
        p,
        &ctx,
        server,
        samples,
        cpu,
        sent.len() as u64,
        rss_start_kib,
        rss_after_kib,
    );
    tracing::info!(errors = out.errors.total, ratio = out.rss_ratio, failures = ?out.failures, "soak done");
    Ok(out)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every argument a measurement"
)]
fn summarize(
    p: &Params,
    ctx: &Ctx,
    server: &Server,
    samples: Vec<Sample>,
    cpu: CpuUse,
    pushes_sent: u64,
    rss_start_kib: u64,
    rss_after_kib: u64,
) -> SoakResult {
    let t = &ctx.tally;
    let f = |k| t.fault_count(k);
    let mut errors = Errors {
        connect_failed: f(Fault::ConnectFailed),
        missing_reply: f(Fault::MissingReply),
        bad_reply: f(Fault::BadReply),
        unexpected_close: f(Fault::UnexpectedClose),
        api: f(Fault::Api),
        missing_push: f(Fault::MissingPush),
        duplicate_push: f(Fault::DuplicatePush),
        total: 0,
        first: t.first_faults(),
    };
    errors.total = errors.connect_failed
        + errors.missing_reply
        + errors.bad_reply
        + errors.unexpected_close
        + errors.api
        + errors.missing_push
        + errors.duplicate_push;
    let secs = cpu.wall_secs.max(1e-9);
    let warmup_at = p.soak_secs as f64 * p.soak_warmup_fraction;
    let warm = samples
        .iter()
        .find(|s| s.t_secs >= warmup_at)
        .or(samples.last());
    let rss_warmup_kib = warm.map_or(0, |s| s.rss_kib);
    let rss_end_kib = samples.last().map_or(0, |s| s.rss_kib);
    let rss_ratio = rss_end_kib as f64 / rss_warmup_kib.max(1) as f64;
    let log = server.log();
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let e = |k| t.count(k);
    let churn_connects = e(Event::Connect);
    let departures =
        e(Event::LeaveClose) + e(Event::LeaveFin) + e(Event::LeaveReset) + e(Event::LeaveKicked);
    let mut out = SoakResult {
        duration_secs: cpu.wall_secs,
        pool_clients: p.soak_pool,
        churn_connects,
        left_close_frame: e(Event::LeaveClose),
        left_fin: e(Event::LeaveFin),
        left_reset: e(Event::LeaveReset),
        left_kicked: e(Event::LeaveKicked),
        plugin_messages: e(Event::PluginMessage),
        plugin_replies: e(Event::PluginReply),
        api_calls: e(Event::ApiCall),
        pushes_sent,
        pushes_received: e(Event::PushReceived),
        said_received: e(Event::SaidReceived),
        notices_received: e(Event::NoticeReceived),
        connects_per_sec: churn_connects as f64 / secs,
        events_per_sec: (churn_connects + departures + e(Event::PluginMessage) + e(Event::ApiCall))
            as f64
            / secs,
        frames_received_per_sec: (e(Event::PushReceived)
            + e(Event::SaidReceived)
            + e(Event::NoticeReceived)
            + e(Event::PluginReply)) as f64
            / secs,
        errors,
        rss_start_kib,
        rss_warmup_kib,
        warmup_secs: warm.map_or(0.0, |s| s.t_secs),
        rss_end_kib,
        rss_max_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        rss_ratio,
        rss_after_kib,
        rss_checked: p.soak_check_rss,
        samples,
        cpu,
        gateway_warn_lines: warn.len(),
        gateway_error_lines: warn.iter().filter(|l| l.contains(" ERROR ")).count(),
        gateway_log_sample: warn
            .iter()
            .take(5)
            .map(|l| l.chars().take(300).collect())
            .collect(),
        failures: Vec::new(),
    };
    out.failures = verdict(&out, p.soak_rss_limit);
    out
}

/// Why a soak fails: any error, and (when checked) end RSS above `limit` × warm-up RSS.
fn verdict(r: &SoakResult, limit: f64) -> Vec<String> {
    let mut why = Vec::new();
    if r.errors.total > 0 {
        why.push(format!(
            "{} errors: {:?}",
            r.errors.total,
            r.errors.first.first()
        ));
    }
    if r.rss_checked && r.rss_ratio > limit {
        why.push(format!(
            "end RSS {} KiB is {:.3}× the warm-up RSS {} KiB (limit {limit:.2}×)",
            r.rss_end_kib, r.rss_ratio, r.rss_warmup_kib
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_memory_growth_fail_the_run() {
        let mut r = SoakResult {
            rss_warmup_kib: 10_000,
            rss_end_kib: 10_900,
            rss_ratio: 1.09,
            rss_checked: true,
            ..SoakResult::default()
        };
        assert!(verdict(&r, 1.10).is_empty());
        r.rss_ratio = 1.11;
        assert_eq!(verdict(&r, 1.10).len(), 1);
        // Smoke runs are too short for a steady state: the RSS criterion is not applied.
        r.rss_checked = false;
        assert!(verdict(&r, 1.10).is_empty());
        r.errors.total = 1;
        assert_eq!(verdict(&r, 1.10).len(), 1);
    }

    #[test]
    fn a_push_missed_or_doubled_by_a_member_is_an_error() {
        let target = crate::client::Target {
            proto: crate::client::Proto::Gateway,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let ctx = Ctx::new(target, 2, Duration::from_secs(1));
        // Member 0: room-0 and api-0; member 1: room-1 and api-1.
        let sent = [
            (1, PushTo::Room(0)),
            (2, PushTo::ApiGroup(1)),
            (3, PushTo::System),
        ];
        let member = |idx, pushes: &[u64]| PoolOutcome {
            idx,
            ready: true,
            pushes: pushes.to_vec(),
        };
        check_pushes(&ctx, &sent, &[member(0, &[1, 3]), member(1, &[3, 2])]);
        assert_eq!(ctx.tally.fault_count(Fault::MissingPush), 0);
        check_pushes(&ctx, &sent, &[member(0, &[3, 3]), member(1, &[2])]);
        assert_eq!(
            ctx.tally.fault_count(Fault::MissingPush),
            2,
            "1 for 0, 3 for 1"
        );
        assert_eq!(ctx.tally.fault_count(Fault::DuplicatePush), 1);
    }
}
