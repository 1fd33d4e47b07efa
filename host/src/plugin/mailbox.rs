//! The queue between the gateway and one plugin's actor thread.
//!
//! Client events are bounded (`plugin.queue_capacity`): when the plugin falls behind, further
//! events are refused and the caller drops and counts them, so a slow plugin costs memory in
//! proportion to the bound, never more. Timer events bypass the bound (their number is bounded by
//! the timer quota instead, and a fired timer must not be lost). Control messages (swap to a new
//! version, stop) have their own lane and overtake events: an event is handled by whichever
//! version is current when it is taken from the queue, so none is lost or handled twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::ConnectVerdict;

use super::actor::Loaded;

/// Something for the plugin to handle.
pub(crate) enum Event {
    /// `on-connect`; the verdict goes back to the connection.
    Connect {
        /// The client's system.
        system: Arc<str>,
        /// The client.
        client: String,
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

/// Orders for the actor itself.
pub(crate) enum Control {
    /// Instantiate `loaded`, run its `init`, and on success make it the current version.
    Swap {
        /// The compiled version.
        loaded: Box<Loaded>,
        /// The outcome: `Err` carries why the old version stays.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Drop the instance and end the thread; queued events are dropped.
    Stop,
}

/// What the actor gets next.
pub(crate) enum Next {
    /// An order.
    Control(Control),
    /// An event.
    Event(Event),
    /// The wait deadline passed.
    Timeout,
}

#[derive(Default)]
struct Lanes {
    events: VecDeque<Event>,
    control: VecDeque<Control>,
}

/// A bounded event queue plus a control lane, with one consumer (the actor thread).
pub(crate) struct Mailbox {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    capacity: usize,
}

impl Mailbox {
    /// A mailbox holding at most `capacity` client events.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queue a client event; gives it back when the queue is full.
    pub(crate) fn push(&self, event: Event) -> Result<(), Event> {
        let mut lanes = self.lanes.lock();
        if lanes.events.len() >= self.capacity {
            return Err(event);
        }
        lanes.events.push_back(event);
        drop(lanes);
        self.ready.notify_one();
        Ok(())
    }

    /// Queue an event past the bound (fired timers).
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

    /// Wait for the next order, or event when `events` is true, until `until` (forever if
    /// `None`).
    pub(crate) fn next(&self, events: bool, until: Option<Instant>) -> Next {
        let mut lanes = self.lanes.lock();
        loop {
            if let Some(c) = lanes.control.pop_front() {
                return Next::Control(c);
            }
            if events && let Some(e) = lanes.events.pop_front() {
                return Next::Event(e);
            }
            match until {
                Some(t) => {
                    if self.ready.wait_until(&mut lanes, t).timed_out() {
                        return Next::Timeout;
                    }
                }
                None => self.ready.wait(&mut lanes),
            }
        }
    }

    /// Take every queued event (when stopping).
    pub(crate) fn drain(&self) -> Vec<Event> {
        self.lanes.lock().events.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn msg(n: u32) -> Event {
        Event::Message {
            system: "s".into(),
            client: n.to_string(),
            msg: Message::text("x"),
        }
    }

    fn client_of(next: Next) -> Option<String> {
        match next {
            Next::Event(Event::Message { client, .. }) => Some(client),
            _ => None,
        }
    }

    #[test]
    fn bounded_in_order_and_timers_bypass_the_bound() {
        let mb = Mailbox::new(2);
        assert!(mb.push(msg(1)).is_ok());
        assert!(mb.push(msg(2)).is_ok());
        assert!(mb.push(msg(3)).is_err());
        mb.push_unbounded(Event::Timer { id: 9 });
        assert_eq!(mb.len(), 3);
        assert_eq!(client_of(mb.next(true, None)).as_deref(), Some("1"));
        assert_eq!(client_of(mb.next(true, None)).as_deref(), Some("2"));
        assert!(matches!(
            mb.next(true, None),
            Next::Event(Event::Timer { id: 9 })
        ));
    }

    #[test]
    fn control_overtakes_and_events_can_be_held_back() {
        let mb = Mailbox::new(4);
        assert!(mb.push(msg(1)).is_ok());
        mb.control(Control::Stop);
        assert!(matches!(mb.next(true, None), Next::Control(Control::Stop)));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(mb.next(false, Some(soon)), Next::Timeout));
        assert_eq!(client_of(mb.next(true, None)).as_deref(), Some("1"));
    }

    #[test]
    fn a_waiting_consumer_is_woken() {
        let mb = Arc::new(Mailbox::new(4));
        let producer = mb.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            assert!(producer.push(msg(7)).is_ok());
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            client_of(mb.next(true, Some(deadline))).as_deref(),
            Some("7")
        );
        assert!(t.join().is_ok());
    }
}
