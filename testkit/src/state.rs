//! The simulated gateway's state: clients with their inboxes, groups, uids, info maps, the
//! key-value store, timers on a virtual clock, and the log. It is the store data of the plugin
//! instance (host calls act on it) and outlives instances (a trap replaces the instance, not
//! this).

use std::collections::{BTreeMap, BTreeSet};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::wasmgate::plugin::types::Member;

/// A frame a client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl Frame {
    /// The text of a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t),
            Frame::Binary(_) => None,
        }
    }

    /// A text frame parsed as JSON (`None` for binary frames and text that is not JSON).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.as_text()?).ok()
    }
}

/// A line the plugin logged (`host.log`, or a line of its stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace` … `error`, or `stdout` / `stderr`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// One client, connected or gone (its inbox and close stay readable after it left).
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    pub connected: bool,
    pub uid: Option<String>,
    pub groups: BTreeMap<String, Member>,
    pub info: BTreeMap<String, String>,
    pub inbox: Vec<Frame>,
    /// How the gateway closed it (code, reason), if it did.
    pub closed: Option<(u16, String)>,
}

/// A pending timer.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub due_ms: u64,
    pub payload: String,
    pub client: Option<String>,
}

/// Events the plugin caused that the simulation delivers after the current event.
#[derive(Debug)]
pub(crate) enum Followup {
    /// `close-client`: the client leaves with this code and reason.
    Close(String, u16, String),
}

/// The store data.
pub(crate) struct SimState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// Bytes of stdout/stderr already turned into log lines.
    pub stdio_seen: [usize; 2],
    pub world: World,
}

/// Everything the plugin can observe or change, kept across instances.
#[derive(Debug, Default)]
pub(crate) struct World {
    /// The gateway configuration whose limits apply (the gateway's defaults unless the
    /// builder was given one).
    pub config: wasmgate::Config,
    /// Sends the current event may still make (`rules::sends_per_event`).
    pub sends_left: u32,
    /// Log lines the current event may still write (`rules::LOG_LINES_PER_EVENT`).
    pub logs_left: u32,
    pub system: String,
    pub clients: BTreeMap<String, ClientState>,
    pub kv: BTreeMap<String, Vec<u8>>,
    pub timers: BTreeMap<u64, Pending>,
    pub next_timer: u64,
    pub now_ms: u64,
    pub logs: Vec<LogLine>,
    pub followups: Vec<Followup>,
    pub next_message: u64,
}

impl SimState {
    pub(crate) fn new(world: World) -> Self {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let stderr = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        SimState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(world.config.plugin.max_memory_bytes)
                .build(),
            stdout,
            stderr,
            stdio_seen: [0, 0],
            world,
        }
    }

    /// Turn what the guest wrote to stdout/stderr since the last call into log lines.
    pub(crate) fn collect_stdio(&mut self) {
        for (i, (pipe, level)) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")]
            .into_iter()
            .enumerate()
        {
            let all = pipe.contents();
            let new = &all[self.stdio_seen[i].min(all.len())..];
            // Complete lines only; a partial line waits for its end.
            let Some(end) = new.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            for line in String::from_utf8_lossy(&new[..end]).lines() {
                // stdout/stderr lines count against the event's log budget, as in the gateway.
                if !self.world.take_log_line() {
                    continue;
                }
                self.world.logs.push(LogLine {
                    level: level.to_owned(),
                    message: line.to_owned(),
                });
            }
            self.stdio_seen[i] += end + 1;
        }
    }
}

impl WasiView for SimState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl World {
    /// A new event starts: its send and log budgets are full again.
    pub(crate) fn start_event(&mut self) {
        self.sends_left = wasmgate::plugin::rules::sends_per_event(&self.config);
        self.logs_left = wasmgate::plugin::rules::LOG_LINES_PER_EVENT;
    }

    /// Take one line from the event's log budget (past it, lines are dropped).
    pub(crate) fn take_log_line(&mut self) -> bool {
        match self.logs_left.checked_sub(1) {
            Some(left) => {
                self.logs_left = left;
                true
            }
            None => false,
        }
    }

    /// A connected client.
    pub(crate) fn client(&mut self, id: &str) -> Option<&mut ClientState> {
        self.clients.get_mut(id).filter(|c| c.connected)
    }

    /// Connected clients.
    pub(crate) fn connected(&self) -> impl Iterator<Item = (&String, &ClientState)> {
        self.clients.iter().filter(|(_, c)| c.connected)
    }

    /// Members of `group`, connected.
    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        self.connected()
            .filter(|(_, c)| c.groups.contains_key(group))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Clients bound to `uid`.
    pub(crate) fn by_uid(&self, uid: &str) -> Vec<String> {
        self.connected()
            .filter(|(_, c)| c.uid.as_deref() == Some(uid))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every group with a member.
    pub(crate) fn groups(&self) -> BTreeSet<String> {
        self.connected()
            .flat_map(|(_, c)| c.groups.keys().cloned())
            .collect()
    }

    /// Queue `frame` for `client` (connected); whether it was.
    pub(crate) fn deliver(&mut self, client: &str, frame: Frame) -> bool {
        match self.client(client) {
            Some(c) => {
                c.inbox.push(frame);
                true
            }
            None => false,
        }
    }

    /// The group notice the gateway sends (`{"messageId","sendUserId","code","msg","data"}`).
    pub(crate) fn notify(&mut self, to: &[String], code: i64, about: &str, member: &Member) {
        self.next_message += 1;
        let notice = serde_json::json!({
            "messageId": format!("sim-{}", self.next_message),
            "sendUserId": "",
            "code": code,
            "msg": if code == 1001 { "online" } else { "offline" },
            "data": {"clientId": about, "userId": member.user_id, "extend": member.extend},
        });
        let text = notice.to_string();
        for c in to {
            self.deliver(c, Frame::Text(text.clone()));
        }
    }

    /// `client` leaves: out of its groups (their members get 1002), its bound timers cancelled.
    pub(crate) fn remove(&mut self, client: &str) {
        let Some(state) = self.client(client) else {
            return;
        };
        state.connected = false;
        state.uid = None;
        let groups = std::mem::take(&mut state.groups);
        for (group, member) in groups {
            let others = self.members(&group);
            self.notify(&others, 1002, client, &member);
        }
        self.timers
            .retain(|_, t| t.client.as_deref() != Some(client));
    }
}
