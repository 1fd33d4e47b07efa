//! The soak's clients: long-lived pool members and short-lived churn clients speaking the chat
//! plugin's protocol (`plugins/chat`), the tally every one of them counts into, and the API
//! calls they make. Every failure a client sees is counted as a [`Fault`], never retried away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Conn, Received, Target};
use crate::http::Api;

/// The system the chat plugin serves (`chat.wasm`).
pub const SYSTEM: &str = crate::server::CHAT_PLUGIN_NAME;
/// Bound on one plugin reply (and the `said` push that comes with a `say`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a connection's handshake and welcome.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the close frame that answers a departure.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code the API's `close_client` asks for: the client must see exactly this.
const KICK_CODE: u16 = 4000;
/// How many fault descriptions the report keeps.
const KEEP_FAULTS: usize = 20;

/// Something that went wrong, by kind: any of them fails the soak.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// A connection was refused, timed out or had no welcome.
    ConnectFailed,
    /// A plugin request got no reply (or a `say` no `said`) within [`REPLY_TIMEOUT`].
    MissingReply,
    /// A plugin reply with a code other than 0.
    BadReply,
    /// A connection closed with another code than asked, or by the server unasked.
    UnexpectedClose,
    /// An API call answered non-200 (or not at all).
    Api,
    /// An API push a long-lived member never received.
    MissingPush,
    /// An API push received twice.
    DuplicatePush,
}

/// What the clients did, by kind.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A connection welcomed.
    Connect,
    /// Left with a close frame (1000) answered by the server.
    LeaveClose,
    /// Left by dropping the TCP connection (FIN, no close frame).
    LeaveFin,
    /// Left by a TCP reset.
    LeaveReset,
    /// Closed through the API (`close_client`), the close frame received.
    LeaveKicked,
    /// A chat event sent to the plugin.
    PluginMessage,
    /// A plugin reply with code 0.
    PluginReply,
    /// An API call answered 200.
    ApiCall,
    /// A push of the API (`send_to_group`, `send_to_system`) received.
    PushReceived,
    /// A chat line (`said`) pushed by the plugin received.
    SaidReceived,
    /// A group notice (1001/1002) received.
    NoticeReceived,
}

const FAULTS: usize = Fault::DuplicatePush as usize + 1;
const EVENTS: usize = Event::NoticeReceived as usize + 1;

/// Counters of every client, shared (the runtime has one thread, but tasks must be `Send`).
#[derive(Default)]
pub struct Tally {
    faults: [AtomicU64; FAULTS],
    events: [AtomicU64; EVENTS],
    first: Mutex<Vec<String>>,
}

impl Tally {
    /// Counts one fault; the first ones are kept with what happened.
    pub fn fault(&self, f: Fault, what: impl FnOnce() -> String) {
        self.faults[f as usize].fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < KEEP_FAULTS {
            let what = what();
            tracing::warn!(fault = ?f, %what, "soak fault");
            first.push(format!("{f:?}: {what}"));
        }
    }

    /// Counts `n` faults of one kind at once.
    pub fn faults(&self, f: Fault, n: u64, what: impl FnOnce() -> String) {
        if n > 0 {
            self.fault(f, what);
            self.faults[f as usize].fetch_add(n - 1, Ordering::Relaxed);
        }
    }

    /// Counts one event.
    pub fn event(&self, e: Event) {
        self.events[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Faults of one kind so far.
    pub fn fault_count(&self, f: Fault) -> u64 {
        self.faults[f as usize].load(Ordering::Relaxed)
    }

    /// Events of one kind so far.
    pub fn count(&self, e: Event) -> u64 {
        self.events[e as usize].load(Ordering::Relaxed)
    }

    /// The first faults, described.
    pub fn first_faults(&self) -> Vec<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What every client of one soak shares.
pub struct Ctx {
    /// The gateway.
    pub target: Target,
    /// Counters.
    pub tally: Tally,
    /// Idle keep-alive API connections, reused by whoever calls next.
    apis: Mutex<Vec<Api>>,
    /// Set when the load stops: pool members stop talking, drain their pushes and leave.
    pub stop: AtomicBool,
    /// Pool members that finished joining their groups (successfully or not).
    pub ready: AtomicUsize,
    /// Chat rooms, and as many API groups.
    pub rooms: usize,
    /// Time between two `say` of one client.
    pub say_interval: Duration,
    /// How long pool members keep reading after the load stopped, for pushes in flight.
    pub drain: Duration,
}

impl Ctx {
    /// A context for clients of the gateway at `target`.
    pub fn new(target: Target, rooms: usize, say_interval: Duration) -> Ctx {
        Ctx {
            target,
            tally: Tally::default(),
            apis: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            rooms: rooms.max(1),
            say_interval,
            drain: Duration::from_secs(2),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// Calls API `op` on the chat system; a non-200 answer counts as a fault.
    pub async fn api(&self, op: &str, body: &Value) -> bool {
        let taken = self.apis.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut api = taken.unwrap_or_else(|| Api::new(self.addr()));
        let res = api.call(op, Some(SYSTEM), body).await;
        self.apis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(api);
        match res {
            Ok(_) => {
                self.tally.event(Event::ApiCall);
                true
            }
            Err(e) => {
                self.tally.fault(Fault::Api, || format!("{e:#}"));
                false
            }
        }
    }

    /// The chat room of client `idx` (a plugin `join`).
    pub fn room(&self, idx: usize) -> String {
        format!("room-{}", idx % self.rooms)
    }

    /// The API group of client `idx` (`bind_to_group`): covers every group once `idx` has gone
    /// through `rooms` values, and differs from the room for later clients.
    pub fn api_group(&self, idx: usize) -> String {
        format!("api-{}", (idx + idx / self.rooms) % self.rooms)
    }
}

/// What a text frame from the gateway is.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A plugin reply `{"event","code",...}`.
    Reply { event: String, code: i64 },
    /// A chat line pushed by the plugin.
    Said { text: String },
    /// An API push of the soak, with its sequence number.
    Push(u64),
    /// A group notice.
    Notice,
    /// Anything else (never expected, not an error).
    Other,
}

fn classify(text: &str) -> Kind {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Kind::Other;
    };
    if let Some(event) = v["event"].as_str() {
        if let Some(code) = v["code"].as_i64() {
            return Kind::Reply {
                event: event.to_owned(),
                code,
            };
        }
        if event == "said" {
            let text = v["data"]["text"].as_str().unwrap_or_default().to_owned();
            return Kind::Said { text };
        }
        return Kind::Other;
    }
    if v["msg"] == "soak"
        && let Some(seq) = v["data"]["seq"].as_u64()
    {
        return Kind::Push(seq);
    }
    match v["code"].as_i64() {
        Some(1001 | 1002) => Kind::Notice,
        _ => Kind::Other,
    }
}

/// The connection ended unasked (already counted as a fault).
struct Ended;

/// One connected client.
struct Session<'a> {
    conn: Conn,
    ctx: &'a Ctx,
    /// Sequence numbers of the API pushes received (pool members only).
    pushes: Option<Vec<u64>>,
    said: u64,
}

impl<'a> Session<'a> {
    fn new(conn: Conn, ctx: &'a Ctx, record_pushes: bool) -> Session<'a> {
        Session {
            conn,
            ctx,
            pushes: record_pushes.then(Vec::new),
            said: 0,
        }
    }

    fn id(&self) -> &str {
        &self.conn.client_id
    }

    /// Files one received frame; a close or an end of stream here is a fault.
    fn file(&mut self, r: Received) -> Result<Kind, Ended> {
        let t = &self.ctx.tally;
        let text = match r {
            Received::Text(text) => text,
            Received::Close(code) => {
                t.fault(Fault::UnexpectedClose, || {
                    format!("{}: server closed with {code:?} unasked", self.id())
                });
                return Err(Ended);
            }
            Received::Eof => {
                t.fault(Fault::UnexpectedClose, || {
                    format!("{}: connection ended unasked", self.id())
                });
                return Err(Ended);
            }
        };
        let kind = classify(text.as_str());
        match &kind {
            Kind::Push(seq) => {
                t.event(Event::PushReceived);
                if let Some(p) = &mut self.pushes {
                    p.push(*seq);
                }
            }
            Kind::Said { .. } => t.event(Event::SaidReceived),
            Kind::Notice => t.event(Event::NoticeReceived),
            Kind::Reply { .. } | Kind::Other => {}
        }
        Ok(kind)
    }

    async fn next(&mut self, until: Instant) -> Result<Option<Kind>, Ended> {
        match tokio::time::timeout_at(until.into(), self.conn.receive()).await {
            Err(_) => Ok(None),
            Ok(Ok(r)) => self.file(r).map(Some),
            Ok(Err(e)) => {
                self.ctx.tally.fault(Fault::UnexpectedClose, || {
                    format!("{}: receive failed: {e:#}", self.id())
                });
                Err(Ended)
            }
        }
    }

    /// Reads and files what arrives until `until`.
    async fn idle_until(&mut self, until: Instant) -> Result<(), Ended> {
        while Instant::now() < until {
            if self.next(until).await?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Sends chat event `event` and waits for its reply; for a `say` of `text`, also for the
    /// `said` push of that text (the plugin sends it to the room, sender included). Whether it
    /// was answered with code 0 (a fault is counted when not).
    async fn request(&mut self, event: &str, data: Value) -> Result<bool, Ended> {
        let said = (event == "say").then(|| data["text"].as_str().unwrap_or_default().to_owned());
        let frame = json!({ "event": event, "data": data }).to_string();
        if let Err(e) = self.conn.send_text(frame).await {
            self.ctx.tally.fault(Fault::UnexpectedClose, || {
                format!("{}: send failed: {e:#}", self.id())
            });
            return Err(Ended);
        }
        self.ctx.tally.event(Event::PluginMessage);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let (mut replied, mut heard) = (false, said.is_none());
        while !(replied && heard) {
            match self.next(deadline).await? {
                None => {
                    self.ctx.tally.fault(Fault::MissingReply, || {
                        format!(
                            "{}: {event}: reply {replied}, said {heard} after {REPLY_TIMEOUT:?}",
                            self.id()
                        )
                    });
                    return Ok(false);
                }
                Some(Kind::Reply { event: e, code }) if e == event => {
                    if code != 0 {
                        self.ctx.tally.fault(Fault::BadReply, || {
                            format!("{}: {event} answered code {code}", self.id())
                        });
                        return Ok(false);
                    }
                    self.ctx.tally.event(Event::PluginReply);
                    replied = true;
                }
                Some(Kind::Said { text }) if Some(&text) == said.as_ref() => heard = true,
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// One chat line in `room`, unique to this client.
    async fn say(&mut self, room: &str) -> Result<bool, Ended> {
        self.said += 1;
        let text = format!("{}.{}", self.id(), self.said);
        self.request("say", json!({ "room": room, "text": text }))
            .await
    }

    /// Waits for the server's close frame with `code` (what arrives before it is filed).
    async fn expect_close(&mut self, code: u16, event: Event) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            let got = match tokio::time::timeout_at(deadline.into(), self.conn.receive()).await {
                Err(_) => "no close frame in time".to_owned(),
                Ok(Ok(Received::Text(t))) => {
                    let _ = self.file(Received::Text(t));
                    continue;
                }
                Ok(Ok(Received::Close(c))) if c == Some(code) => {
                    self.ctx.tally.event(event);
                    return;
                }
                Ok(Ok(Received::Close(c))) => format!("close code {c:?}"),
                Ok(Ok(Received::Eof)) => "end of stream without a close frame".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
            };
            self.ctx.tally.fault(Fault::UnexpectedClose, || {
                format!("{}: expected close {code}, got {got}", self.id())
            });
            return;
        }
    }

    /// Leaves with a close frame 1000 and checks the server answers it.
    async fn leave_with_close_frame(mut self) {
        if let Err(e) = self.conn.close(1000, "bye").await {
            self.ctx.tally.fault(Fault::UnexpectedClose, || {
                format!("{}: sending close failed: {e:#}", self.id())
            });
            return;
        }
        self.expect_close(1000, Event::LeaveClose).await;
    }
}

/// How a short-lived client leaves, by its index: half with a close frame, the rest by a TCP
/// FIN, a TCP reset, or closed through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Close frame 1000, answered by the server.
    CloseFrame,
    /// The TCP connection dropped (FIN) without a close frame.
    Fin,
    /// A TCP reset.
    Reset,
    /// `close_client` through the API with code 4000.
    Kicked,
}

impl Departure {
    /// The departure of churn client `idx`.
    pub fn of(idx: u64) -> Departure {
        match idx % 8 {
            0..=3 => Departure::CloseFrame,
            4 => Departure::Fin,
            5 => Departure::Reset,
            _ => Departure::Kicked,
        }
    }
}

/// What a pool member hands back: which pushes it received, if it got into its groups.
pub struct PoolOutcome {
    /// The member's index.
    pub idx: usize,
    /// Whether it joined its room and API group (only then are its pushes checked).
    pub ready: bool,
    /// Sequence numbers of the API pushes received, in arrival order.
    pub pushes: Vec<u64>,
}

/// A long-lived client: joins its room (plugin) and its API group, then says something every
/// `say_interval` until the load stops, reads the pushes still in flight and leaves with a
/// close frame.
pub async fn pool_member(idx: usize, conn: Conn, ctx: Arc<Ctx>) -> PoolOutcome {
    let mut s = Session::new(conn, &ctx, true);
    let room = ctx.room(idx);
    let mut out = PoolOutcome {
        idx,
        ready: false,
        pushes: Vec::new(),
    };
    let Ok(joined) = s.request("join", json!({ "room": room })).await else {
        ctx.ready.fetch_add(1, Ordering::Relaxed);
        return out;
    };
    let body = json!({ "clientId": s.id(), "groupName": ctx.api_group(idx) });
    out.ready = joined && ctx.api("bind_to_group", &body).await;
    ctx.ready.fetch_add(1, Ordering::Relaxed);
    // Spread the members' lines over the interval.
    let pool_phase = ctx.say_interval.mul_f64((idx % 97) as f64 / 97.0);
    let mut next = Instant::now() + pool_phase;
    let tick = Duration::from_millis(250);
    let alive = async {
        while !ctx.stop.load(Ordering::Relaxed) {
            s.idle_until(next.min(Instant::now() + tick)).await?;
            if Instant::now() >= next {
                s.say(&room).await?;
                next += ctx.say_interval;
            }
        }
        s.idle_until(Instant::now() + ctx.drain).await
    };
    if alive.await.is_ok() {
        out.pushes = s.pushes.take().unwrap_or_default();
        s.leave_with_close_frame().await;
    } else {
        out.ready = false;
    }
    out
}

/// A short-lived client: connects, takes a nickname, joins a room (plugin) and an API group,
/// says something every `say_interval` for `life`, then leaves as [`Departure::of`] says.
pub async fn churn_client(idx: u64, life: Duration, ctx: Arc<Ctx>) {
    let start = Instant::now();
    let open = Box::pin(Conn::open(ctx.target, SYSTEM, None));
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return ctx
                .tally
                .fault(Fault::ConnectFailed, || format!("churn {idx}: {e:#}"));
        }
        Err(_) => {
            return ctx.tally.fault(Fault::ConnectFailed, || {
                format!("churn {idx}: no welcome within {CONNECT_TIMEOUT:?}")
            });
        }
    };
    ctx.tally.event(Event::Connect);
    let mut s = Session::new(conn, &ctx, false);
    let i = usize::try_from(idx).unwrap_or(usize::MAX);
    let room = ctx.room(i);
    let talk = async {
        s.request("nick", json!({ "name": format!("c{idx}") }))
            .await?;
        s.request("join", json!({ "room": room })).await?;
        let body = json!({ "clientId": s.id(), "groupName": ctx.api_group(i) });
        ctx.api("bind_to_group", &body).await;
        let end = start + life;
        loop {
            s.say(&room).await?;
            let next = Instant::now() + ctx.say_interval;
            if next >= end {
                break;
            }
            s.idle_until(next).await?;
        }
        s.idle_until(end).await
    };
    if talk.await.is_err() {
        return;
    }
    match Departure::of(idx) {
        Departure::CloseFrame => s.leave_with_close_frame().await,
        Departure::Fin | Departure::Reset => {
            let reset = Departure::of(idx) == Departure::Reset;
            let event = if reset {
                Event::LeaveReset
            } else {
                Event::LeaveFin
            };
            match s.conn.abandon(reset) {
                Ok(()) => ctx.tally.event(event),
                Err(e) => ctx
                    .tally
                    .fault(Fault::UnexpectedClose, || format!("churn {idx}: {e:#}")),
            }
        }
        Departure::Kicked => {
            let body = json!({ "clientId": s.id(), "code": KICK_CODE, "reason": "soak" });
            if ctx.api("close_client", &body).await {
                s.expect_close(KICK_CODE, Event::LeaveKicked).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart() {
        let reply = r#"{"event":"say","code":0,"msg":"success","data":{"room":"r","delivered":3}}"#;
        assert_eq!(
            classify(reply),
            Kind::Reply {
                event: "say".into(),
                code: 0
            }
        );
        let said = r#"{"event":"said","data":{"room":"r","from":"a","text":"x.1"}}"#;
        assert_eq!(classify(said), Kind::Said { text: "x.1".into() });
        let push =
            r#"{"messageId":"m","sendUserId":"soak","code":0,"msg":"soak","data":{"seq":7}}"#;
        assert_eq!(classify(push), Kind::Push(7));
        let notice = r#"{"messageId":"m","sendUserId":"","code":1001,"msg":"online","data":{}}"#;
        assert_eq!(classify(notice), Kind::Notice);
        assert_eq!(classify("pong"), Kind::Other);
    }

    #[test]
    fn half_leave_with_a_close_frame() {
        let d: Vec<Departure> = (0..8).map(Departure::of).collect();
        let close = d.iter().filter(|&&x| x == Departure::CloseFrame).count();
        assert_eq!(close, 4);
        for other in [Departure::Fin, Departure::Reset, Departure::Kicked] {
            assert!(d.contains(&other), "{other:?}");
        }
    }

    #[test]
    fn api_groups_are_all_used_and_differ_from_rooms() {
        let target = Target {
            proto: crate::client::Proto::Gateway,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let ctx = Ctx::new(target, 4, Duration::from_secs(1));
        let groups: std::collections::BTreeSet<String> = (0..4).map(|i| ctx.api_group(i)).collect();
        assert_eq!(groups.len(), 4);
        assert_eq!(ctx.room(5), "room-1");
        assert_eq!(ctx.api_group(5), "api-2");
    }

    #[test]
    fn tally_counts_every_fault_and_keeps_the_first() {
        let t = Tally::default();
        t.faults(Fault::MissingPush, 3, || "three".into());
        t.faults(Fault::MissingPush, 0, || "none".into());
        t.fault(Fault::Api, || "api".into());
        assert_eq!(t.fault_count(Fault::MissingPush), 3);
        assert_eq!(t.fault_count(Fault::Api), 1);
        assert_eq!(t.first_faults(), vec!["MissingPush: three", "Api: api"]);
    }
}
