//! Scenario 5, hot reload under load (wasmgate only): clients echo through the plugin in a
//! closed loop while the plugin file is replaced again and again; every request is tracked
//! so lost, doubled and late replies, dropped connections and the latency during the swaps
//! can be told apart from the no-swap baseline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::{Conn, Target};
use crate::fleet::{self, FleetSpec};
use crate::http::Api;
use crate::params::Params;
use crate::server::{ECHO_PLUGIN_FILE, ECHO_SYSTEM, Server, echo_plugin_state};
use crate::stats::Dist;

/// Result of the hot-reload scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReloadResult {
    /// Clients echoing through the plugin.
    pub clients: usize,
    /// Times the plugin file was replaced.
    pub swaps: usize,
    /// Time between two replacements.
    pub swap_interval_ms: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (in time or late).
    pub answered: u64,
    /// Requests never answered.
    pub lost: u64,
    /// Replies received more than once.
    pub doubled: u64,
    /// Replies that came after the timeout (the client had moved on).
    pub late: u64,
    /// Connections closed by the server during the run.
    pub dropped_connections: usize,
    /// Latency before the first swap.
    pub baseline: Option<Dist>,
    /// Latency of requests sent while swaps were going on.
    pub during_swaps: Option<Dist>,
    /// Reloads the gateway applied during the run (`reloads` of `GET /api/plugins`).
    pub reloads_applied: u64,
    /// The plugin's `lastError` after the run, if any.
    pub last_error: Option<String>,
    /// Time from the last write until the gateway served that build (its blake3 hash is the
    /// `version` of `GET /api/plugins`); `None` if it did not within 60 s.
    pub last_swap_live_ms: Option<f64>,
    /// Plugin instances asked for (`None`: the gateway's default, 1).
    #[serde(default)]
    pub instances: Option<usize>,
    /// Per swap seen serving before the next write: time from the write until every instance
    /// served that build (polled every 5 ms).
    #[serde(default)]
    pub swap_live: Option<Dist>,
    /// Swaps not seen serving before the next write (superseded, or coalesced by the gateway).
    #[serde(default)]
    pub swaps_not_seen: usize,
    /// What "serving" was read from: every instance's `version` when `GET /api/plugins` lists
    /// the instances, else the plugin's `version`.
    #[serde(default)]
    pub live_from: String,
    /// Replies that came back out of order on one connection (a client has one request in
    /// flight, so only a late reply can arrive after a newer one).
    #[serde(default)]
    pub reordered: u64,
}

/// Bound on waiting for the last build to serve (a debug build compiles slowly).
const LIVE_LIMIT: Duration = Duration::from_secs(60);

const PENDING: u8 = 0;
const ANSWERED: u8 = 1;
const TIMED_OUT: u8 = 2;
const LATE: u8 = 3;

struct Phase {
    swapping: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct ClientStats {
    sent: u64,
    answered: u64,
    lost: u64,
    doubled: u64,
    late: u64,
    reordered: u64,
    /// Highest sequence number answered so far.
    highest: usize,
    dropped: bool,
    baseline_us: Vec<u32>,
    swap_us: Vec<u32>,
}

/// `echo:r<idx>.<seq>` (inside any framing) → seq, when it is this client's.
fn parse_reply(frame: &str, idx: usize) -> Option<usize> {
    let at = frame.find("echo:r")? + "echo:r".len();
    let rest = &frame[at..];
    let (who, rest) = rest.split_once('.')?;
    if who.parse::<usize>().ok()? != idx {
        return None;
    }
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Records a reply for `seq`; true when it answers the request in flight (`current`).
fn on_reply(st: &mut ClientStats, states: &mut [u8], seq: usize, current: usize) -> bool {
    let Some(state) = states.get_mut(seq) else {
        return false;
    };
    if seq < st.highest {
        st.reordered += 1;
    }
    st.highest = st.highest.max(seq);
    match *state {
        PENDING => {
            *state = ANSWERED;
            st.answered += 1;
            return seq == current;
        }
        TIMED_OUT => {
            *state = LATE;
            st.late += 1;
            st.answered += 1;
        }
        _ => st.doubled += 1,
    }
    false
}

async fn client(
    idx: usize,
    mut conn: Conn,
    target: Target,
    timeout: Duration,
    drain: Duration,
    ph: Arc<Phase>,
) -> ClientStats {
    let mut st = ClientStats::default();
    // Index = sequence number; 0 unused.
    let mut states = vec![ANSWERED];
    'send: while !ph.stop.load(Ordering::Relaxed) {
        let seq = states.len();
        states.push(PENDING);
        let swapping = ph.swapping.load(Ordering::Relaxed);
        let sent = Instant::now();
        if conn
            .send_text(target.echo_request(&format!("r{idx}.{seq}")))
            .await
            .is_err()
        {
            st.dropped = true;
            break;
        }
        st.sent += 1;
        loop {
            match tokio::time::timeout_at((sent + timeout).into(), conn.recv()).await {
                Err(_) => {
                    states[seq] = TIMED_OUT;
                    continue 'send;
                }
                Ok(Ok(Some(f))) => {
                    let Some(s) = parse_reply(f.as_str(), idx) else {
                        continue;
                    };
                    if on_reply(&mut st, &mut states, s, seq) {
                        let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                        if swapping {
                            st.swap_us.push(us)
                        } else {
                            st.baseline_us.push(us)
                        }
                        continue 'send;
                    }
                }
                Ok(Ok(None) | Err(_)) => {
                    st.dropped = true;
                    break 'send;
                }
            }
        }
    }
    if !st.dropped {
        // Late replies may still be on their way.
        let until = Instant::now() + drain;
        while let Ok(Ok(Some(f))) = tokio::time::timeout_at(until.into(), conn.recv()).await {
            if let Some(s) = parse_reply(f.as_str(), idx) {
                on_reply(&mut st, &mut states, s, 0);
            }
        }
    }
    st.lost = states
        .iter()
        .filter(|&&s| s == TIMED_OUT || s == PENDING)
        .count() as u64;
    st
}

/// `wasm` with a custom section appended: the same component, a different file content
/// (so a content-hashing gateway sees a new build every time).
pub fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"wasmgate-bench-swap";
    let payload = i.to_string();
    let mut content = leb128(name.len());
    content.extend_from_slice(name);
    content.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.extend(leb128(content.len()));
    out.extend(content);
    out
}

fn leb128(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Runs the scenario against a fresh gateway started with the echo plugin (`echo_wasm`).
pub async fn run(server: &mut Server, p: &Params, echo_wasm: &Path) -> Result<ReloadResult> {
    let base = std::fs::read(echo_wasm).with_context(|| format!("read {}", echo_wasm.display()))?;
    let n = p.reload_clients;
    let target = server.target();
    let spec = FleetSpec {
        target,
        also: Vec::new(),
        system: Arc::from(ECHO_SYSTEM),
        spread: p.spread(n),
        source_addrs: p.source_addrs,
        inflight: p.setup_inflight,
        timeout: Duration::from_secs(30),
    };
    let ph = Arc::new(Phase {
        swapping: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let timeout = Params::ms(p.reload_timeout_ms);
    let drain = Duration::from_secs(2);
    let mut api = Api::new(server.addr());
    let reloads_before = echo_plugin_state(&mut api).await?.reloads;
    let last_hash = blake3::hash(&variant(&base, p.reload_swaps))
        .to_hex()
        .to_string();
    let mut set = JoinSet::new();
    let ph2 = ph.clone();
    let opened = fleet::open_many(&spec, 0..n, &mut set, move |i, c| {
        client(i, c, target, timeout, drain, ph2.clone())
    })
    .await?;
    if opened.failed > 0 {
        bail!(
            "{} of {n} connections failed: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        );
    }
    tokio::time::sleep(Params::ms(p.reload_baseline_ms)).await;
    ph.swapping.store(true, Ordering::Relaxed);
    let file = server.plugins_dir.join(ECHO_PLUGIN_FILE);
    let interval = Params::ms(p.reload_interval_ms);
    let start = Instant::now();
    let (mut live_us, mut swaps_not_seen, mut last_write) = (Vec::new(), 0, None);
    let mut live_from = String::new();
    for i in 0..p.reload_swaps {
        tokio::time::sleep_until((start + interval * u32::try_from(i)?).into()).await;
        // A plain overwrite, as `cp new.wasm plugins/` does (not an atomic rename).
        let build = variant(&base, i + 1);
        let hash = blake3::hash(&build).to_hex().to_string();
        tokio::fs::write(&file, build)
            .await
            .with_context(|| format!("replace {}", file.display()))?;
        let written = Instant::now();
        last_write = Some(written);
        if i + 1 == p.reload_swaps {
            break; // the last one is waited for below, without the next write's bound
        }
        // Until the next write: when did every instance serve this build?
        let next = start + interval * u32::try_from(i + 1)?;
        let mut seen = false;
        while Instant::now() < next {
            let state = echo_plugin_state(&mut api).await?;
            live_from = state.live_from().to_owned();
            if state.serves(&hash) {
                live_us.push(u32::try_from(written.elapsed().as_micros()).unwrap_or(u32::MAX));
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        swaps_not_seen += usize::from(!seen);
    }
    // Keep the load on until the last build serves, and a little after.
    let last_write = last_write.unwrap_or_else(Instant::now);
    let mut last_swap_live_ms = None;
    while p.reload_swaps > 0 && last_write.elapsed() < LIVE_LIMIT {
        if echo_plugin_state(&mut api).await?.serves(&last_hash) {
            last_swap_live_ms = Some(last_write.elapsed().as_secs_f64() * 1e3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(interval.max(Duration::from_millis(500))).await;
    ph.stop.store(true, Ordering::Relaxed);
    if let Some(ms) = last_swap_live_ms {
        live_us.push((ms * 1e3) as u32);
    } else if p.reload_swaps > 0 {
        swaps_not_seen += 1;
    }
    let mut out = ReloadResult {
        clients: n,
        swaps: p.reload_swaps,
        swap_interval_ms: p.reload_interval_ms,
        instances: p.plugin_instances,
        swap_live: Dist::from_us(&mut live_us),
        swaps_not_seen,
        live_from,
        ..ReloadResult::default()
    };
    let (mut baseline, mut swap) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + timeout + drain + Duration::from_secs(5);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline.into(), set.join_next()).await {
        let Ok(Some(st)) = r else { continue };
        out.sent += st.sent;
        out.answered += st.answered;
        out.lost += st.lost;
        out.doubled += st.doubled;
        out.late += st.late;
        out.reordered += st.reordered;
        out.dropped_connections += usize::from(st.dropped);
        baseline.extend(st.baseline_us);
        swap.extend(st.swap_us);
    }
    set.shutdown().await;
    server.check_alive()?;
    out.baseline = Dist::from_us(&mut baseline);
    out.during_swaps = Dist::from_us(&mut swap);
    let after = echo_plugin_state(&mut api).await?;
    if out.live_from.is_empty() {
        out.live_from = after.live_from().to_owned();
    }
    out.reloads_applied = after.reloads.saturating_sub(reloads_before);
    out.last_swap_live_ms = last_swap_live_ms;
    out.last_error = after.last_error;
    tracing::info!(?out, "hot reload");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_matched_to_their_client() {
        assert_eq!(parse_reply("echo:r7.42", 7), Some(42));
        assert_eq!(parse_reply("42[\"echo\",\"echo:r7.42\"]", 7), Some(42));
        assert_eq!(parse_reply("echo:r8.42", 7), None);
        assert_eq!(parse_reply("pong", 7), None);
    }

    #[test]
    fn reply_bookkeeping_tells_late_from_doubled() {
        let mut st = ClientStats::default();
        let mut states = vec![ANSWERED, TIMED_OUT, PENDING];
        assert!(on_reply(&mut st, &mut states, 2, 2));
        assert!(!on_reply(&mut st, &mut states, 2, 3));
        assert!(!on_reply(&mut st, &mut states, 1, 3));
        assert!(!on_reply(&mut st, &mut states, 1, 3));
        assert!(!on_reply(&mut st, &mut states, 9, 3));
        assert_eq!((st.answered, st.late, st.doubled), (2, 1, 2));
        assert_eq!(st.reordered, 2, "the replies to 1 came after the one to 2");
    }

    #[test]
    fn variants_append_a_well_formed_custom_section() {
        let base = b"\0asm\x0d\0\x01\0".to_vec();
        let v = variant(&base, 3);
        assert_eq!(&v[..base.len()], &base[..]);
        let tail = &v[base.len()..];
        let name = b"wasmgate-bench-swap";
        assert_eq!(tail[0], 0, "custom section id");
        assert_eq!(usize::from(tail[1]), 1 + name.len() + 1, "section size");
        assert_eq!(usize::from(tail[2]), name.len());
        assert_eq!(&tail[3..3 + name.len()], name);
        assert_eq!(&tail[3 + name.len()..], b"3");
        assert_ne!(variant(&base, 1), variant(&base, 2));
        assert_eq!(leb128(300), vec![0xac, 0x02]);
    }
}
