//! The queue between the gateway and one instance (lane) of a plugin, and the fairness rules
//! that let every client of a plugin be served when some of them send more than it can handle.
//!
//! Before this module kept shares, 8 clients sending 60 KB frames filled a plugin's queue (4096
//! events, 250 MB): 70k events of *other* clients were dropped, a victim lost 5 of 17 requests,
//! new clients were refused with 1013 and RSS went from 31 to 369 MB. With the rules below, the
//! same flood (8 clients, 60 KB frames, a plugin busy 2 ms per message) keeps ~40 events queued
//! (5 per flooder: their 256 KiB byte shares), the victim gets 17 of 17 answers, nothing is
//! dropped, new clients are served and RSS grows by 7-13 MB (`tests/plugin_fairness.rs`). The
//! rules:
//!
//! - **Client messages are never dropped.** Each client has a share of the queue
//!   ([`QueueBounds::client_events`] events, [`QueueBounds::client_bytes`] bytes). A message is
//!   always queued; when it brings its client to its share, or the whole queue to its bound
//!   ([`QueueBounds::events`], [`QueueBounds::bytes`]), [`Mailbox::push_message`] says
//!   [`Admission::Hold`] and the client's connection reads nothing more until [`Mailbox::room`] resolves
//!   (TCP backpressure: the sender is slowed, nobody else notices).
//! - **Memory is bounded.** A client that is not held has queued less than its share, so its
//!   messages take at most `client_events` events and `client_bytes` plus one message; the
//!   queue holds at most `events` message events and `bytes` bytes, plus one message of each
//!   client that was not held when it filled (its next read was already under way).
//! - **Connects** have their own budget of `events` waiting `on-connect`s, so a message flood
//!   can never make the gateway refuse clients; past it (a connect storm at a stuck plugin) a
//!   connect is refused with 1013 and counted.
//! - **Closes and timers bypass every bound**: a plugin must always hear `on-close` (or it leaks
//!   the client's state) and a fired timer must not be lost. Their number is bounded by the
//!   number of connections and the timer quota.
//!
//! Control messages (swap to a new version, stop) have their own lane and overtake events: an
//! event is handled by whichever version is current when it is taken from the queue, so none is
//! lost or handled twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{ConnectContext, ConnectVerdict};

use super::actor::{Instance, Loaded};

/// Something for the plugin to handle.
pub(crate) enum Event {
    /// `on-connect`; the verdict goes back to the connection.
    Connect {
        /// The client's system.
        system: Arc<str>,
        /// The client.
        client: String,
        /// How it connected (for 0.2 guests).
        context: Box<ConnectContext>,
        /// Where the verdict goes.
        reply: oneshot::Sender<ConnectVerdict>,
    },
    /// `on-message`.
    Message {
        /// The client's system.
        system: Arc<str>,
        /// The client.
        client: String,
        /// What it sent.
        msg: Message,
    },
    /// `on-close`.
    Close {
        /// The client's system.
        system: Arc<str>,
        /// The client.
        client: String,
        /// The WebSocket close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// `on-timer`; system and payload are kept by the timer table until it fires.
    Timer {
        /// The timer id.
        id: u64,
    },
}

/// Orders for the lane itself.
pub(crate) enum Control {
    /// Serve events with `instance` (of `loaded`, `init` already done) from now on. The
    /// loader prepares every instance of the pool before it sends the first swap, so a version
    /// that fails `init` never serves any event.
    Swap {
        /// The compiled version, for re-instantiation after a trap.
        loaded: Arc<Loaded>,
        /// Its instance for this lane.
        instance: Box<Instance>,
        /// Answered once the instance serves.
        reply: oneshot::Sender<()>,
    },
    /// Drop the instance and end the task; queued events are dropped.
    Stop,
}

/// What the lane gets next.
pub(crate) enum Next {
    /// An order.
    Control(Control),
    /// An event.
    Event(Event),
}

/// The bounds of one plugin's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBounds {
    /// Client messages waiting (`plugin.queue_capacity`); also the budget of waiting connects.
    pub events: usize,
    /// Bytes of client messages waiting (`plugin.queue_bytes`).
    pub bytes: usize,
    /// Messages of one client waiting (`plugin.client_queue_share`).
    pub client_events: usize,
    /// Bytes of one client's messages waiting: the same fraction of `bytes` as `client_events`
    /// is of `events` (by default 64/4096 of 16 MiB = 256 KiB).
    pub client_bytes: usize,
}

impl QueueBounds {
    /// Bounds from the configuration; zeros are raised to one.
    pub(crate) fn new(events: usize, bytes: usize, client_events: usize) -> Self {
        let events = events.max(1);
        let bytes = bytes.max(1);
        let client_events = client_events.max(1);
        let share = (bytes as u128 * client_events.min(events) as u128) / events as u128;
        Self {
            events,
            bytes,
            client_events,
            client_bytes: usize::try_from(share).unwrap_or(usize::MAX).max(1),
        }
    }
}

/// What became of a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Queued; the client may send more.
    Queued,
    /// Queued, but the client reached its share or the queue its bound: read nothing more from
    /// it until [`Mailbox::room`] resolves.
    Hold,
}

/// What one client has waiting.
#[derive(Default)]
struct Share {
    events: usize,
    bytes: usize,
    /// Woken when the client falls below its share; made when it first has to wait.
    room: Option<Arc<Notify>>,
}

#[derive(Default)]
struct Lanes {
    events: VecDeque<Event>,
    control: VecDeque<Control>,
    /// Message events waiting, and their bytes.
    messages: usize,
    bytes: usize,
    /// Connect events waiting.
    connects: usize,
    /// Per client with messages waiting (entries leave when their last message is taken).
    clients: HashMap<Box<str>, Share>,
    /// The actor stopped: nothing will be taken any more, nobody should wait.
    stopped: bool,
}

impl Lanes {
    fn full(&self, b: &QueueBounds) -> bool {
        self.messages >= b.events || self.bytes >= b.bytes
    }

    /// Account for an event leaving the queue; wake who may now send.
    fn taken(&mut self, event: &Event, b: &QueueBounds, global: &Notify) {
        match event {
            Event::Connect { .. } => self.connects = self.connects.saturating_sub(1),
            Event::Message { client, msg, .. } => {
                let len = msg.len();
                self.messages = self.messages.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub(len);
                if let Some(share) = self.clients.get_mut(client.as_str()) {
                    share.events = share.events.saturating_sub(1);
                    share.bytes = share.bytes.saturating_sub(len);
                    if share.events < b.client_events
                        && share.bytes < b.client_bytes
                        && let Some(room) = &share.room
                    {
                        room.notify_one();
                    }
                    if share.events == 0 {
                        self.clients.remove(client.as_str());
                    }
                }
                if !self.full(b) {
                    global.notify_one();
                }
            }
            Event::Close { .. } | Event::Timer { .. } => {}
        }
    }
}

/// A bounded, per-client fair event queue plus a control lane, with one consumer (its lane's
/// task).
pub(crate) struct Mailbox {
    lanes: Mutex<Lanes>,
    /// Wakes the consumer; a wake-up with nobody waiting is kept for its next wait.
    ready: Notify,
    bounds: QueueBounds,
    /// Woken (one waiter per event taken) while the queue is below its bound: clients held
    /// because the whole queue was full take turns in arrival order.
    global: Arc<Notify>,
}

impl Mailbox {
    /// An empty mailbox with these bounds.
    pub(crate) fn new(bounds: QueueBounds) -> Self {
        Self {
            lanes: Mutex::new(Lanes::default()),
            ready: Notify::new(),
            bounds,
            global: Arc::new(Notify::new()),
        }
    }

    /// Queue a client's message. It is always taken (it was already read); the answer says
    /// whether its client must wait before sending more.
    pub(crate) fn push_message(&self, system: Arc<str>, client: &str, msg: Message) -> Admission {
        let len = msg.len();
        let b = &self.bounds;
        let mut lanes = self.lanes.lock();
        let share = match lanes.clients.get_mut(client) {
            Some(share) => share,
            None => lanes.clients.entry(client.into()).or_default(),
        };
        share.events += 1;
        share.bytes = share.bytes.saturating_add(len);
        let over_share = share.events >= b.client_events || share.bytes >= b.client_bytes;
        lanes.messages += 1;
        lanes.bytes = lanes.bytes.saturating_add(len);
        let hold = over_share || lanes.full(b);
        lanes.events.push_back(Event::Message {
            system,
            client: client.to_owned(),
            msg,
        });
        drop(lanes);
        self.ready.notify_one();
        if hold {
            Admission::Hold
        } else {
            Admission::Queued
        }
    }

    /// Queue an `on-connect`; gives it back when `events` connects are already waiting.
    pub(crate) fn push_connect(&self, event: Event) -> Result<(), Event> {
        let mut lanes = self.lanes.lock();
        if lanes.connects >= self.bounds.events {
            return Err(event);
        }
        lanes.connects += 1;
        lanes.events.push_back(event);
        drop(lanes);
        self.ready.notify_one();
        Ok(())
    }

    /// Queue an event past every bound (closes, fired timers).
    pub(crate) fn push_unbounded(&self, event: Event) {
        self.lanes.lock().events.push_back(event);
        self.ready.notify_one();
    }

    /// Queue an order; it overtakes queued events.
    pub(crate) fn control(&self, control: Control) {
        self.lanes.lock().control.push_back(control);
        self.ready.notify_one();
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.lanes.lock().events.len()
    }

    /// Resolves when a held `client` may send again (at once if it already may, or when the
    /// plugin stopped).
    pub(crate) async fn room(&self, client: &str) {
        let mut next = self.wait_for(client);
        while let Some(notify) = next {
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the second look, so a wake-up in between is not lost.
            notified.as_mut().enable();
            next = self.wait_for(client);
            if next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &notify)) {
                notified.await;
                next = self.wait_for(client);
            }
        }
    }

    /// What a held `client` must wait for: `None` when it may send again.
    fn wait_for(&self, client: &str) -> Option<Arc<Notify>> {
        let b = &self.bounds;
        let mut lanes = self.lanes.lock();
        if lanes.stopped {
            return None;
        }
        let full = lanes.full(b);
        match lanes.clients.get_mut(client) {
            Some(share) if share.events >= b.client_events || share.bytes >= b.client_bytes => {
                Some(share.room.get_or_insert_with(Default::default).clone())
            }
            _ if full => Some(self.global.clone()),
            _ => None,
        }
    }

    /// Wait until an order, or an event when `events` is true, is waiting, or [`Mailbox::wake`]
    /// is called, or `until` passes (forever if `None`). Takes nothing: the lane's task takes
    /// under its lock (`actor.rs`), and looks again at what it has to do after each wait.
    pub(crate) async fn wait(&self, events: bool, until: Option<Instant>) {
        if self.has_next(events) {
            return;
        }
        match until {
            Some(t) => {
                let sleep = tokio::time::sleep_until(t.into());
                tokio::select! {
                    () = self.ready.notified() => {}
                    () = sleep => {}
                }
            }
            None => self.ready.notified().await,
        }
    }

    /// Wake the lane's task without an event (a direct call trapped: it makes the next
    /// instance).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    fn has_next(&self, events: bool) -> bool {
        let lanes = self.lanes.lock();
        !lanes.control.is_empty() || (events && !lanes.events.is_empty())
    }

    /// Nothing waits: no order, no event. A message may then be handled at once by the
    /// caller (`actor::try_direct`) without overtaking anything.
    pub(crate) fn is_idle(&self) -> bool {
        !self.has_next(true)
    }

    /// The next order, or event when `events` is true, if one is waiting.
    pub(crate) fn try_next(&self, events: bool) -> Option<Next> {
        let mut lanes = self.lanes.lock();
        if let Some(c) = lanes.control.pop_front() {
            return Some(Next::Control(c));
        }
        if events && let Some(e) = lanes.events.pop_front() {
            lanes.taken(&e, &self.bounds, &self.global);
            return Some(Next::Event(e));
        }
        None
    }

    /// Take every queued event (when stopping) and release every held client. Orders still
    /// queued are dropped: a swap's reply sender must not outlive the lane, or the reload
    /// waiting on it (a shutdown that raced it) would never return.
    pub(crate) fn drain(&self) -> Vec<Event> {
        let mut lanes = self.lanes.lock();
        lanes.stopped = true;
        lanes.control.clear();
        lanes.messages = 0;
        lanes.bytes = 0;
        lanes.connects = 0;
        for share in std::mem::take(&mut lanes.clients).into_values() {
            if let Some(room) = share.room {
                room.notify_waiters();
            }
        }
        self.global.notify_waiters();
        lanes.events.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bounds(events: usize, bytes: usize, client_events: usize) -> QueueBounds {
        QueueBounds::new(events, bytes, client_events)
    }

    fn push(mb: &Mailbox, client: &str, len: usize) -> Admission {
        mb.push_message("s".into(), client, Message::binary(vec![0u8; len]))
    }

    fn take(mb: &Mailbox) -> Option<String> {
        match mb.try_next(true)? {
            Next::Event(Event::Message { client, .. }) => Some(client),
            Next::Event(Event::Close { client, .. }) => Some(format!("close:{client}")),
            Next::Event(Event::Timer { id }) => Some(format!("timer:{id}")),
            Next::Event(Event::Connect { client, .. }) => Some(format!("connect:{client}")),
            _ => None,
        }
    }

    /// Whether `room` resolves without waiting.
    fn has_room(mb: &Mailbox, client: &str) -> bool {
        mb.wait_for(client).is_none()
    }

    #[test]
    fn the_byte_share_is_the_event_shares_fraction() {
        let d = bounds(4096, 16 << 20, 64);
        assert_eq!(d.client_bytes, 256 << 10);
        // A share above the queue is the whole queue.
        assert_eq!(bounds(4, 1000, 64).client_bytes, 1000);
        assert_eq!(bounds(0, 0, 0), bounds(1, 1, 1));
    }

    #[test]
    fn a_client_at_its_share_is_held_and_nobody_else_is() {
        let mb = Mailbox::new(bounds(100, 1 << 20, 3));
        assert_eq!(push(&mb, "a", 10), Admission::Queued);
        assert_eq!(push(&mb, "a", 10), Admission::Queued);
        assert_eq!(push(&mb, "a", 10), Admission::Hold);
        assert!(!has_room(&mb, "a"));
        assert_eq!(push(&mb, "b", 10), Admission::Queued);
        assert!(has_room(&mb, "b"));
        // In order; one of a's messages taken gives it room again.
        assert_eq!(take(&mb).as_deref(), Some("a"));
        assert!(has_room(&mb, "a"));
        for want in ["a", "a", "b"] {
            assert_eq!(take(&mb).as_deref(), Some(want));
        }
        assert_eq!(mb.len(), 0);
        assert!(
            mb.lanes.lock().clients.is_empty(),
            "no entry outlives its messages"
        );
    }

    #[test]
    fn bytes_count_like_events() {
        // 1000 bytes for the queue, a client's share is 500.
        let mb = Mailbox::new(bounds(4, 1000, 2));
        assert_eq!(push(&mb, "a", 300), Admission::Queued);
        assert_eq!(push(&mb, "a", 300), Admission::Hold);
        assert_eq!(push(&mb, "b", 350), Admission::Queued);
        // The queue is past its bytes: b is held though under its own share.
        assert_eq!(push(&mb, "b", 100), Admission::Hold);
        assert!(!has_room(&mb, "c"));
        assert_eq!(take(&mb).as_deref(), Some("a"));
        assert!(has_room(&mb, "c"));
    }

    #[test]
    fn closes_and_timers_pass_a_full_queue_and_connects_have_their_own_budget() {
        let mb = Mailbox::new(bounds(2, 1 << 20, 64));
        assert_eq!(push(&mb, "a", 1), Admission::Queued);
        assert_eq!(push(&mb, "a", 1), Admission::Hold);
        // The messages filled the queue, not the connects' budget.
        for n in 0..2 {
            let (reply, _) = oneshot::channel();
            let connect = Event::Connect {
                system: "s".into(),
                client: format!("n{n}"),
                context: Box::default(),
                reply,
            };
            assert!(mb.push_connect(connect).is_ok());
        }
        let (reply, _) = oneshot::channel();
        let third = Event::Connect {
            system: "s".into(),
            client: "n2".into(),
            context: Box::default(),
            reply,
        };
        assert!(mb.push_connect(third).is_err());
        for n in 0..100 {
            mb.push_unbounded(Event::Close {
                system: "s".into(),
                client: format!("c{n}"),
                code: 1000,
                reason: String::new(),
            });
        }
        mb.push_unbounded(Event::Timer { id: 9 });
        assert_eq!(mb.len(), 105);
        let taken: Vec<_> = std::iter::from_fn(|| take(&mb)).collect();
        assert_eq!(taken.len(), 105);
        assert_eq!(taken[..4], ["a", "a", "connect:n0", "connect:n1"]);
        assert_eq!(taken[104], "timer:9");
    }

    #[test]
    fn a_drained_mailbox_keeps_no_orders() {
        let mb = Mailbox::new(bounds(4, 1 << 20, 4));
        mb.control(Control::Stop);
        mb.control(Control::Stop);
        assert!(matches!(
            mb.try_next(true),
            Some(Next::Control(Control::Stop))
        ));
        assert!(mb.drain().is_empty());
        assert!(mb.try_next(true).is_none(), "the second order was dropped");
    }

    #[tokio::test]
    async fn control_overtakes_and_events_can_be_held_back() {
        let mb = Mailbox::new(bounds(4, 1 << 20, 4));
        assert!(mb.is_idle());
        push(&mb, "1", 1);
        assert!(!mb.is_idle(), "an event waits");
        mb.control(Control::Stop);
        mb.wait(true, None).await;
        assert!(matches!(
            mb.try_next(true),
            Some(Next::Control(Control::Stop))
        ));
        let soon = Instant::now() + Duration::from_millis(20);
        mb.wait(false, Some(soon)).await;
        assert!(mb.try_next(false).is_none(), "events held back");
        assert!(!mb.is_idle());
        assert_eq!(take(&mb).as_deref(), Some("1"));
        assert!(mb.is_idle());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_consumer_is_woken() {
        let mb = Arc::new(Mailbox::new(bounds(4, 1 << 20, 4)));
        let producer = mb.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            push(&producer, "7", 1);
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        mb.wait(true, Some(deadline)).await;
        assert_eq!(take(&mb).as_deref(), Some("7"));
        assert!(t.join().is_ok());
    }

    #[tokio::test]
    async fn held_clients_are_released_by_the_consumer_and_by_a_stop() {
        let mb = Arc::new(Mailbox::new(bounds(3, 1 << 20, 2)));
        push(&mb, "a", 1);
        assert_eq!(push(&mb, "a", 1), Admission::Hold);
        assert_eq!(push(&mb, "b", 1), Admission::Hold, "the queue is full");
        let (m1, m2) = (mb.clone(), mb.clone());
        let a = tokio::spawn(async move { m1.room("a").await });
        let b = tokio::spawn(async move { m2.room("b").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!a.is_finished() && !b.is_finished());
        let consumer = mb.clone();
        std::thread::spawn(move || take(&consumer)).join().ok();
        let wait = Duration::from_secs(5);
        assert!(tokio::time::timeout(wait, a).await.is_ok(), "a has room");
        assert!(
            tokio::time::timeout(wait, b).await.is_ok(),
            "the queue has room"
        );

        // A stopped plugin holds nobody.
        push(&mb, "c", 1);
        push(&mb, "c", 1);
        let m3 = mb.clone();
        let c = tokio::spawn(async move { m3.room("c").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!c.is_finished());
        assert_eq!(mb.drain().len(), 4);
        assert!(
            tokio::time::timeout(wait, c).await.is_ok(),
            "released by the stop"
        );
        assert!(has_room(&mb, "c"));
    }
}
