//! The bounded outbound queue of one client, and how a client is told to close.
//!
//! Senders (the HTTP API, plugins, broadcasts) never wait on a client: they push into its queue
//! and move on. A client that does not keep up overflows its queue (in messages or in bytes) and
//! is closed with 1008 "slow consumer" instead of making the gateway buffer without bound.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// Why a push into a client's queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The client is closing or gone.
    #[error("client is closing")]
    Closed,
    /// The queue is full: the client is being closed as a slow consumer.
    #[error("client is a slow consumer")]
    Overflow,
}

/// The queue proper. A `VecDeque` rather than a channel: an idle client's queue holds no
/// allocation at all (a bounded tokio channel allocates a block of 32 slots up front, about
/// 2 KB per connection), and one that drained a burst gives its memory back.
#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    /// Bytes of the messages waiting, bounded by `max_bytes`.
    bytes: usize,
}

/// State shared by a client's connection task and everyone who sends to it.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the connection task when a message arrives.
    ready: Notify,
    /// Message bound of the queue.
    max_messages: usize,
    /// Byte bound of the queue.
    max_bytes: usize,
    /// The close frame to send when `cancel` fires; the first reason set wins.
    close: Mutex<Option<CloseFrame>>,
    /// Cancelled to make the connection task close the socket. A child of the gateway's root
    /// token, so shutdown reaches every client.
    cancel: CancellationToken,
}

/// The sending side of a client's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

/// The receiving side, owned by the connection task.
#[derive(Debug)]
pub struct OutboundRx {
    shared: Arc<Shared>,
}

/// Queues that drained a burst keep at most this many slots.
const KEEP_CAPACITY: usize = 16;

/// A queue bounded by `max_messages` and `max_bytes`, closed when `cancel` fires.
pub fn channel(
    max_messages: usize,
    max_bytes: usize,
    cancel: CancellationToken,
) -> (Outbound, OutboundRx) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
        max_messages: max_messages.max(1),
        max_bytes,
        close: Mutex::new(None),
        cancel,
    });
    (
        Outbound {
            shared: shared.clone(),
        },
        OutboundRx { shared },
    )
}

impl Outbound {
    /// Queue a message without waiting. On overflow the client is told to close with 1008.
    /// A lone message larger than the byte bound is still accepted into an empty queue.
    pub fn push(&self, msg: Message) -> Result<(), QueueError> {
        if self.shared.cancel.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let size = msg.len();
        {
            let mut q = self.shared.queue.lock();
            let full = q.messages.len() >= self.shared.max_messages
                || (q.bytes > 0 && q.bytes + size > self.shared.max_bytes);
            if !full {
                q.messages.push_back(msg);
                q.bytes += size;
            }
            if full {
                drop(q);
                self.close(CloseCode::Policy, "slow consumer");
                return Err(QueueError::Overflow);
            }
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Ask the connection to close with `code` and `reason` once what is queued is sent.
    /// The first close requested wins.
    pub fn close(&self, code: CloseCode, reason: &str) {
        {
            let mut close = self.shared.close.lock();
            if close.is_none() {
                *close = Some(CloseFrame {
                    code,
                    reason: truncate_reason(reason).into(),
                });
            }
        }
        self.shared.cancel.cancel();
    }

    /// Whether the connection has been told to close.
    pub fn is_closing(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }
}

impl OutboundRx {
    /// The next queued message, waiting for one.
    pub async fn recv(&mut self) -> Message {
        loop {
            if let Some(msg) = self.try_recv() {
                return msg;
            }
            // `notify_one` leaves a permit when nobody waits, so no wake-up is lost between
            // the check above and this wait.
            self.shared.ready.notified().await;
        }
    }

    /// A queued message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        let mut q = self.shared.queue.lock();
        let msg = q.messages.pop_front()?;
        q.bytes -= msg.len();
        if q.messages.is_empty() && q.messages.capacity() > KEEP_CAPACITY {
            q.messages = VecDeque::new();
        }
        Some(msg)
    }

    /// The token that fires when the connection has been told to close.
    pub fn close_requested(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// The close frame to send: what was requested, else 1001 "going away" (shutdown).
    pub fn close_frame(&self) -> CloseFrame {
        self.shared.close.lock().clone().unwrap_or(CloseFrame {
            code: CloseCode::Away,
            reason: "server shutting down".into(),
        })
    }

    /// Whether the close was requested because the client could not keep up; its queue is then
    /// not worth flushing.
    pub fn is_slow_consumer(&self) -> bool {
        self.shared
            .close
            .lock()
            .as_ref()
            .is_some_and(|f| f.reason.as_str() == "slow consumer")
    }
}

/// Close reasons may be at most 123 bytes; cut on a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_in_messages_closes_as_slow_consumer() {
        let (tx, mut rx) = channel(2, 1 << 20, CancellationToken::new());
        tx.push(Message::text("a")).expect("1");
        tx.push(Message::text("b")).expect("2");
        assert_eq!(tx.push(Message::text("c")), Err(QueueError::Overflow));
        assert!(tx.is_closing());
        assert!(rx.is_slow_consumer());
        assert_eq!(rx.close_frame().code, CloseCode::Policy);
        assert_eq!(rx.recv().await, Message::text("a"));
        assert_eq!(tx.push(Message::text("d")), Err(QueueError::Closed));
    }

    #[tokio::test]
    async fn overflow_in_bytes_closes_but_one_big_message_fits() {
        let (tx, mut rx) = channel(100, 10, CancellationToken::new());
        tx.push(Message::text("x".repeat(50)))
            .expect("a lone message may exceed");
        assert_eq!(tx.push(Message::text("y")), Err(QueueError::Overflow));
        assert_eq!(rx.try_recv().map(|m| m.len()), Some(50));
    }

    #[test]
    fn reasons_are_cut_to_123_bytes_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert!(long.starts_with(cut));
    }
}
