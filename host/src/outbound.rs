//! The bounded outbound queue of one client, and how a client is told to close.
//!
//! Senders (the HTTP API, plugins, broadcasts) never wait on a client: they push into its queue
//! and move on. A client that does not keep up overflows its queue (in messages or in bytes) and
//! is closed with 1008 "slow consumer" instead of making the gateway buffer without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;
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

/// State shared by a client's connection task and everyone who sends to it.
#[derive(Debug)]
struct Shared {
    /// Bytes waiting in the queue, bounded by `max_bytes`.
    queued_bytes: AtomicUsize,
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
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
}

/// The receiving side, owned by the connection task.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
}

/// A queue bounded by `max_messages` and `max_bytes`, closed when `cancel` fires.
pub fn channel(
    max_messages: usize,
    max_bytes: usize,
    cancel: CancellationToken,
) -> (Outbound, OutboundRx) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        close: Mutex::new(None),
        cancel,
    });
    (
        Outbound {
            tx,
            shared: shared.clone(),
        },
        OutboundRx { rx, shared },
    )
}

fn cost(msg: &Message) -> usize {
    msg.len()
}

impl Outbound {
    /// Queue a message without waiting. On overflow the client is told to close with 1008.
    pub fn push(&self, msg: Message) -> Result<(), QueueError> {
        if self.shared.cancel.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let size = cost(&msg);
        let before = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.shared.max_bytes {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.close(CloseCode::Policy, "slow consumer");
            return Err(QueueError::Overflow);
        }
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                self.close(CloseCode::Policy, "slow consumer");
                Err(QueueError::Overflow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                Err(QueueError::Closed)
            }
        }
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
    /// The next queued message; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        let msg = self.rx.recv().await?;
        self.account(&msg);
        Some(msg)
    }

    /// A queued message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        let msg = self.rx.try_recv().ok()?;
        self.account(&msg);
        Some(msg)
    }

    fn account(&self, msg: &Message) {
        self.shared
            .queued_bytes
            .fetch_sub(cost(msg), Ordering::AcqRel);
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
        assert_eq!(rx.recv().await, Some(Message::text("a")));
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
