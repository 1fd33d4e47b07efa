//! The bounded outbound queue of one client, and how a client is told to close.
//!
//! Senders (the HTTP API, plugins, broadcasts) never wait on a client: they push into its queue
//! and move on. A client that does not keep up overflows its queue (in messages or in bytes) and
//! is closed with 1008 "slow consumer" instead of making the gateway buffer without bound.
//!
//! What one push may cost: a message larger than `max_queue_bytes` is refused whole
//! ([`QueueError::TooLarge`]; it could never be delivered within the per-client bound), so one
//! push holds at most `max_queue_bytes` of payload, shared by every recipient (a `Message`'s
//! payload is a reference-counted `Bytes`, cloned per queue without copying). Writing it adds
//! at most one frame's worth per connection while it is being written, given back once the
//! write completes (see `connection::write_queued`). A message for one client that is written to
//! its socket at once ([`Outbound::push_one`]) is encoded into a buffer of the sending thread,
//! at most one frame ([`FRAGMENT_BYTES`] and its header) per thread, kept for the thread's life.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use crate::domain::close::{CloseCause, CloseCode, CloseReason};

/// Why a push into a client's queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The client is closing or gone.
    #[error("client is closing")]
    Closed,
    /// The queue is full: the client is being closed as a slow consumer.
    #[error("client is a slow consumer")]
    Overflow,
    /// The message alone is larger than the queue's byte bound: it can never be delivered, and
    /// the client is left alone. The API answers 413.
    #[error("message is {size} bytes, over max_queue_bytes ({max})")]
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// `max_queue_bytes`.
        max: usize,
    },
}

/// Whether a message of `size` bytes can ever be queued under a byte bound of `max_bytes`.
/// Senders check once per send (the size is the same for every recipient) with this rule, which
/// [`Outbound::push`] applies too.
pub fn check_size(size: usize, max_bytes: usize) -> Result<(), QueueError> {
    if size > max_bytes {
        return Err(QueueError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    Ok(())
}

/// A message ready to be pushed to many clients: the message, and the bytes of its WebSocket
/// frame encoded once (server frames are not masked, so every recipient gets the same bytes).
#[derive(Debug, Clone)]
pub struct Prepared {
    msg: Message,
    /// The whole frame (header and payload), for a text or binary message that goes in one
    /// frame (up to [`FRAGMENT_BYTES`]); `None` for anything else, which is always queued.
    wire: Option<Bytes>,
}

impl Prepared {
    /// Encode `msg` once for any number of [`Outbound::push_prepared`].
    pub fn new(msg: Message) -> Self {
        let wire =
            one_frame(&msg).map(|(binary, payload)| crate::wire::server_frame(binary, payload));
        Self { msg, wire }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.msg
    }
}

/// Whether `msg` is written to a socket directly as one frame (a text or binary message up to
/// [`FRAGMENT_BYTES`]), and its opcode (binary or not) and payload if so.
fn one_frame(msg: &Message) -> Option<(bool, &[u8])> {
    let (binary, payload) = match msg {
        Message::Text(text) => (false, text.as_bytes()),
        Message::Binary(bytes) => (true, &bytes[..]),
        _ => return None,
    };
    (payload.len() <= FRAGMENT_BYTES).then_some((binary, payload))
}

thread_local! {
    /// The frame of a message for one client ([`Outbound::push_one`]), encoded here to be
    /// written to its socket at once: nothing allocated per message once it has grown. At most
    /// one frame ([`FRAGMENT_BYTES`] and its header: the encoder reserves exactly) per thread,
    /// kept for the thread's life.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How a sender may write a message's frame to the socket itself.
#[derive(Clone, Copy)]
enum Wire<'a> {
    /// The frame, encoded once for every recipient ([`Prepared`]).
    Shared(&'a Bytes),
    /// Encoded now into this thread's [`SCRATCH`]; what the socket does not take is copied.
    Scratch { binary: bool, payload: &'a [u8] },
}

/// What a sender's write of a frame to the socket did.
enum Wrote {
    /// The socket took the whole frame.
    All,
    /// It took part of it: this is the rest.
    Part(Bytes),
    /// It took nothing (it is full, or failed: the connection task finds out).
    Nothing,
}

impl Wire<'_> {
    /// Write the frame to `socket` without waiting.
    fn write(self, socket: &TcpStream) -> Wrote {
        match self {
            Wire::Shared(frame) => match socket.try_write(frame) {
                Ok(n) if n == frame.len() => Wrote::All,
                Ok(n) if n > 0 => Wrote::Part(frame.slice(n..)),
                _ => Wrote::Nothing,
            },
            Wire::Scratch { binary, payload } => SCRATCH.with_borrow_mut(|frame| {
                frame.clear();
                crate::wire::encode_server_frame(frame, binary, payload);
                match socket.try_write(frame) {
                    Ok(n) if n == frame.len() => Wrote::All,
                    Ok(n) if n > 0 => Wrote::Part(Bytes::copy_from_slice(&frame[n..])),
                    _ => Wrote::Nothing,
                }
            }),
        }
    }
}

/// Something waiting in a client's queue.
#[derive(Debug)]
enum Item {
    /// A message, framed by the connection's WebSocket stream when it is written.
    Message(Message),
    /// The rest of a frame a sender began writing straight to the socket: it must go out
    /// before anything else.
    Raw(Bytes),
}

/// Who may write to the client's socket right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The connection task is writing, or has something to write: senders queue.
    Task,
    /// Nothing is queued or half written and the connection task is waiting: a sender that
    /// holds the queue's lock may write a whole frame to the socket itself.
    Open,
    /// The connection is closing: the connection task alone writes, until the end.
    Shut,
}

/// The queue proper. A `VecDeque` rather than a channel: an idle client's queue holds no
/// allocation at all (a bounded tokio channel allocates a block of 32 slots up front, about
/// 2 KB per connection), and one that drained a burst gives its memory back.
#[derive(Debug)]
struct Queue {
    messages: VecDeque<Item>,
    /// Bytes of the messages waiting, bounded by `max_bytes`.
    bytes: usize,
    /// Who writes to the socket; senders write directly only when [`Writer::Open`].
    writer: Writer,
    /// The client's TCP socket, for senders' direct writes: set once the connection is
    /// upgraded (never for a stream that is not a plain TCP socket), dropped when it closes so
    /// that the socket closes with the connection task's stream.
    socket: Option<Arc<TcpStream>>,
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
    /// Why the client is to close, set before `cancel` fires; the first cause set wins.
    close: Mutex<Option<CloseCause>>,
    /// Cancelled to make the connection task close the socket. A child of the gateway's root
    /// token, so shutdown reaches every client.
    cancel: CancellationToken,
    /// Set when a close is asked through this queue ([`Outbound::close_for`]) or the connection
    /// task starts closing ([`OutboundRx::shut`]). Every push reads this flag, beside the
    /// queue's lock, instead of the token: the token's state sits behind a mutex in a separate
    /// allocation per connection, a cache miss per push under load (0.3 us of the 11.2 us of
    /// server CPU per plugin echo reply, perf, 1000 clients). A shutdown cancels the token from
    /// the root without setting it: until the connection task notices and shuts, pushes are
    /// still queued, and go with the connection.
    closing: AtomicBool,
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
    /// The rest of a message being handed out in fragments. Boxed: an idle connection keeps
    /// 8 bytes for it.
    fragments: Option<Box<Fragments>>,
}

/// Messages larger than this are handed to the socket in fragments of this size.
///
/// Why: tungstenite copies every frame it writes into a per-connection buffer that keeps its
/// capacity for the connection's life. Written whole, one 900 KB push to 200 clients left RSS
/// 173 MB higher until they disconnected; in fragments, that buffer never exceeds one fragment
/// (plus a 14-byte header). The fragments are slices of the shared payload, not copies. 8 KiB
/// keeps the write calls few (113 for 900 KB) and the buffer under what a read buffer costs.
pub const FRAGMENT_BYTES: usize = 8 * 1024;

/// A message being cut into fragments.
#[derive(Debug)]
struct Fragments {
    /// What is left to send.
    rest: Bytes,
    /// The opcode of the next fragment: the message's own, then `Continue`.
    opcode: OpData,
}

impl Fragments {
    /// The next fragment; `rest` is empty once the final one was taken.
    fn next_frame(&mut self) -> Frame {
        let chunk = self.rest.split_to(self.rest.len().min(FRAGMENT_BYTES));
        let frame = Frame::message(chunk, OpCode::Data(self.opcode), self.rest.is_empty());
        self.opcode = OpData::Continue;
        frame
    }
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
        queue: Mutex::new(Queue {
            messages: VecDeque::new(),
            bytes: 0,
            // The connection task holds the socket until it has sent the welcome frame.
            writer: Writer::Task,
            socket: None,
        }),
        ready: Notify::new(),
        max_messages: max_messages.max(1),
        max_bytes,
        close: Mutex::new(None),
        cancel,
        closing: AtomicBool::new(false),
    });
    (
        Outbound {
            shared: shared.clone(),
        },
        OutboundRx {
            shared,
            fragments: None,
        },
    )
}

impl Outbound {
    /// Queue a message without waiting. On overflow the client is told to close with 1008.
    /// A message larger than the byte bound is refused ([`QueueError::TooLarge`]) and the
    /// client is left alone.
    pub fn push(&self, msg: Message) -> Result<(), QueueError> {
        self.offer(&msg, None)
    }

    /// Like [`Outbound::push`], for a message encoded once for many clients. When nothing is
    /// queued or half written to this client and its connection task is not writing, the
    /// frame is written to the socket right here, as Node's `ws` does: no wake-up, no task
    /// switch, no copy into the connection's write buffer. Whatever the socket does not take
    /// at once is queued (the rest of a partly written frame first), so order holds.
    ///
    /// Why: a broadcast to 10k idle clients spent most of its time in one wake-up, one task
    /// poll and one timer per recipient; written here it costs about one `write` each (perf,
    /// 10k clients pinned to one core: first delivery 12.1 → 0.79 ms, last 128 → 94.5 ms,
    /// medians of 5 runs; BENCHMARKS.md).
    pub fn push_prepared(&self, p: &Prepared) -> Result<(), QueueError> {
        self.offer(&p.msg, p.wire.as_ref().map(Wire::Shared))
    }

    /// Like [`Outbound::push`], for a message to this client alone (a reply to the client
    /// whose message a plugin handles, a send to one client): written to the socket right here
    /// when it may be, like [`Outbound::push_prepared`], its frame encoded into a buffer this
    /// thread reuses; the message is cloned only when it has to be queued.
    ///
    /// Why: a frame encoded for one write was three allocations and their frees (the payload's
    /// `Bytes` made shared to be cloned, the frame's `Vec`, its `Bytes` header), for nothing
    /// kept after the write.
    pub fn push_one(&self, msg: &Message) -> Result<(), QueueError> {
        self.offer(
            msg,
            one_frame(msg).map(|(binary, payload)| Wire::Scratch { binary, payload }),
        )
    }

    /// Write `msg`'s frame (`wire`) to the socket when nothing is queued or half written and
    /// the connection task is not writing; queue whatever the socket did not take. A frame for
    /// one client is encoded under the queue's lock (the connection task takes it to claim the
    /// socket or a message): only when it is written at once, never to be queued.
    fn offer(&self, msg: &Message, wire: Option<Wire<'_>>) -> Result<(), QueueError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        let size = msg.len();
        check_size(size, self.shared.max_bytes)?;
        {
            let mut q = self.shared.queue.lock();
            if q.writer == Writer::Open
                && let (Some(wire), Some(socket)) = (wire, &q.socket)
            {
                // Held under the queue's lock: no other sender, and not the connection task
                // (it takes the socket back through this lock), writes meanwhile.
                match wire.write(socket) {
                    Wrote::All => return Ok(()),
                    Wrote::Part(rest) => {
                        q.bytes += rest.len();
                        q.messages.push_back(Item::Raw(rest));
                        q.writer = Writer::Task;
                        drop(q);
                        self.shared.ready.notify_one();
                        return Ok(());
                    }
                    Wrote::Nothing => {}
                }
            }
            let full = q.messages.len() >= self.shared.max_messages
                || q.bytes + size > self.shared.max_bytes;
            if full {
                drop(q);
                self.close_for(CloseCause::SlowConsumer);
                return Err(QueueError::Overflow);
            }
            q.messages.push_back(Item::Message(msg.clone()));
            q.bytes += size;
            if q.writer == Writer::Open {
                q.writer = Writer::Task;
            }
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Ask the connection to close with `code` and `reason` (cut to 123 bytes) once what is
    /// queued is sent: [`CloseCause::Requested`]. The first close requested wins.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) {
        self.close_for(CloseCause::Requested {
            code: code.into(),
            reason: CloseReason::truncated(reason),
        });
    }

    /// Ask the connection to close for `cause`. The first close requested wins.
    pub fn close_for(&self, cause: CloseCause) {
        {
            let mut close = self.shared.close.lock();
            if close.is_none() {
                *close = Some(cause);
            }
        }
        self.shared.closing.store(true, Ordering::Release);
        self.shared.cancel.cancel();
    }

    /// Whether `rx` is this queue's receiving side.
    pub(crate) fn is_queue_of(&self, rx: &OutboundRx) -> bool {
        Arc::ptr_eq(&self.shared, &rx.shared)
    }

    /// Whether the connection has been told to close.
    pub fn is_closing(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }
}

impl OutboundRx {
    /// A sending side of this queue, for the connection's own use: its task hands it to the
    /// plugin call it makes, so that a reply to the sender skips the connections map.
    pub(crate) fn sender(&self) -> Outbound {
        Outbound {
            shared: self.shared.clone(),
        }
    }

    /// Wait until [`OutboundRx::try_recv`] has something (it does not take it, so a caller that
    /// gives up waiting loses nothing).
    pub async fn ready(&self) {
        loop {
            if self.fragments.is_some() || !self.shared.queue.lock().messages.is_empty() {
                return;
            }
            // `notify_one` leaves a permit when nobody waits, so no wake-up is lost between
            // the check above and this wait.
            self.shared.ready.notified().await;
        }
    }

    /// The next thing to write, without waiting: the next fragment of a message being cut, else
    /// the next queued message (its first fragment when it is over [`FRAGMENT_BYTES`]).
    pub fn try_recv(&mut self) -> Option<Message> {
        if let Some(fragments) = &mut self.fragments {
            let frame = fragments.next_frame();
            if fragments.rest.is_empty() {
                self.fragments = None;
            }
            return Some(Message::Frame(frame));
        }
        let msg = {
            let mut q = self.shared.queue.lock();
            if matches!(q.messages.front(), Some(Item::Raw(_))) {
                // The caller writes it first (`raw_head`).
                return None;
            }
            let Some(Item::Message(msg)) = q.messages.pop_front() else {
                return None;
            };
            q.bytes -= msg.len();
            if q.messages.is_empty() && q.messages.capacity() > KEEP_CAPACITY {
                q.messages = VecDeque::new();
            }
            msg
        };
        let opcode = match &msg {
            _ if msg.len() <= FRAGMENT_BYTES => return Some(msg),
            Message::Text(_) => OpData::Text,
            Message::Binary(_) => OpData::Binary,
            _ => return Some(msg),
        };
        let mut fragments = Box::new(Fragments {
            rest: msg.into_data(),
            opcode,
        });
        let first = fragments.next_frame();
        self.fragments = Some(fragments);
        Some(Message::Frame(first))
    }

    /// Whether a message is half written: its remaining fragments (or the rest of a frame a
    /// sender wrote in part) must go before any other frame.
    pub fn is_mid_message(&self) -> bool {
        self.fragments.is_some() || self.raw_head().is_some()
    }

    /// The rest of a frame a sender wrote in part to the socket: these bytes go out, as they
    /// are, before anything else (see [`OutboundRx::advance_raw`]).
    pub fn raw_head(&self) -> Option<Bytes> {
        match self.shared.queue.lock().messages.front() {
            Some(Item::Raw(b)) => Some(b.clone()),
            _ => None,
        }
    }

    /// `n` bytes of [`OutboundRx::raw_head`] were written.
    pub fn advance_raw(&self, n: usize) {
        let mut q = self.shared.queue.lock();
        if let Some(Item::Raw(b)) = q.messages.front_mut() {
            let n = n.min(b.len());
            let _ = b.split_to(n);
            let empty = b.is_empty();
            q.bytes -= n;
            if empty {
                q.messages.pop_front();
            }
        }
    }

    /// Let senders write to the socket directly ([`Outbound::push_prepared`],
    /// [`Outbound::push_one`]): the client
    /// gets it once this task has written everything it had (call it only with the stream
    /// flushed) and nothing is queued.
    pub fn set_socket(&self, socket: Arc<TcpStream>) {
        let mut q = self.shared.queue.lock();
        if q.writer != Writer::Shut {
            q.socket = Some(socket);
        }
    }

    /// Take the socket back from senders before this task writes anything (a pong, a ping):
    /// after this, only this task writes until [`OutboundRx::release`]. A frame a sender
    /// wrote in part is then in the queue ([`OutboundRx::is_mid_message`]): finish it first.
    pub fn claim(&self) {
        let mut q = self.shared.queue.lock();
        if q.writer == Writer::Open {
            q.writer = Writer::Task;
        }
    }

    /// Hand the socket to senders while this task waits; only when nothing is queued or half
    /// written, and the stream was flushed by the caller.
    pub fn release(&self) {
        if self.fragments.is_some() {
            return;
        }
        let mut q = self.shared.queue.lock();
        if q.writer == Writer::Task
            && q.socket.is_some()
            && q.messages.is_empty()
            && !self.shared.closing.load(Ordering::Acquire)
        {
            q.writer = Writer::Open;
        }
    }

    /// The connection is closing: from now on only this task writes to the socket.
    pub fn shut(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let mut q = self.shared.queue.lock();
        q.writer = Writer::Shut;
        q.socket = None;
    }

    /// The token that fires when the connection has been told to close.
    pub fn close_requested(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Why the connection was told to close: what was requested, else
    /// [`CloseCause::Shutdown`] (the gateway's root token fired).
    pub fn close_cause(&self) -> CloseCause {
        self.shared
            .close
            .lock()
            .clone()
            .unwrap_or(CloseCause::Shutdown)
    }
}

impl Drop for OutboundRx {
    /// The connection task is done: senders must not write to (or keep open) its socket.
    fn drop(&mut self) {
        self.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    /// Longest a test here waits on a socket: a frame lost or queued by mistake fails the test
    /// instead of hanging it.
    const WAIT: Duration = Duration::from_secs(10);

    /// A queue whose senders may write to the gateway's end of a loopback TCP connection with
    /// send and receive buffers of about `buffer` bytes, and the client's end.
    async fn open_queue(buffer: u32) -> (Outbound, OutboundRx, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(buffer).expect("send buffer");
        socket.set_recv_buffer_size(buffer).expect("receive buffer");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let client = tokio::net::TcpSocket::new_v4().expect("socket");
        client.set_recv_buffer_size(buffer).expect("receive buffer");
        let client = client
            .connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (tx, rx) = channel(1 << 20, 1 << 30, CancellationToken::new());
        rx.set_socket(Arc::new(server));
        rx.release();
        (tx, rx, client)
    }

    /// Read exactly `n` bytes from `client`.
    async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        timeout(WAIT, client.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .expect("read");
        got
    }

    /// Nothing queued, nothing half written, and senders may still write.
    fn nothing_queued(tx: &Outbound) -> bool {
        let q = tx.shared.queue.lock();
        q.messages.is_empty() && q.bytes == 0 && q.writer == Writer::Open
    }

    /// The frame the gateway writes for `msg`.
    fn frame_of(msg: &Message) -> Bytes {
        let (binary, payload) = one_frame(msg).expect("one frame");
        crate::wire::server_frame(binary, payload)
    }

    /// A message for one client is written to its socket as the frame `server_frame` encodes,
    /// from the thread's buffer, and a second one after it (the buffer is reused, not appended
    /// to); nothing is queued.
    #[tokio::test]
    async fn a_message_for_one_client_is_written_to_its_socket_whole() {
        let (tx, _rx, mut client) = open_queue(1 << 20).await;
        let (a, b) = (Message::text("hello"), Message::binary(vec![7u8; 300]));
        tx.push_one(&a).expect("a");
        tx.push_one(&b).expect("b");
        assert!(nothing_queued(&tx), "both frames went to the socket");
        let want = [frame_of(&a), frame_of(&b)].concat();
        assert_eq!(read_n(&mut client, want.len()).await, want);
    }

    /// When the socket takes only part of a frame, the rest is queued first (its bytes
    /// counted) and the messages after it behind it: the client gets every frame whole and in
    /// order, and the queue's byte count comes back to zero.
    #[tokio::test]
    async fn the_rest_of_a_frame_the_socket_took_in_part_goes_first() {
        // Small buffers, so a few frames fill the socket. The kernel may refuse a whole frame
        // rather than take part of it (then it is queued whole): try another connection.
        for _ in 0..20 {
            let (tx, mut rx, mut client) = open_queue(16 * 1024).await;
            let mut sent = Vec::new();
            while nothing_queued(&tx) && sent.len() < 10_000 {
                let i = sent.len();
                let msg = Message::binary(vec![(i % 251) as u8; FRAGMENT_BYTES - i % 7]);
                tx.push_one(&msg).expect("written or queued");
                sent.push(msg);
            }
            let Some(rest) = rx.raw_head() else { continue };
            for i in sent.len()..sent.len() + 3 {
                let msg = Message::binary(vec![(i % 251) as u8; 100 + i % 7]);
                tx.push_one(&msg).expect("queued");
                sent.push(msg);
            }
            let queued: usize = sent[sent.len() - 3..].iter().map(Message::len).sum();
            assert_eq!(tx.shared.queue.lock().bytes, rest.len() + queued);
            let want: Vec<u8> = sent.iter().flat_map(|m| frame_of(m).to_vec()).collect();
            let reader = tokio::spawn(async move { read_n(&mut client, want.len()).await == want });
            // Play the connection task: the rest of the frame, then the queued messages.
            let socket = rx.shared.queue.lock().socket.clone().expect("socket");
            let write_all = async {
                while let Some(raw) = rx.raw_head() {
                    socket.writable().await.expect("writable");
                    match socket.try_write(&raw) {
                        Ok(n) => rx.advance_raw(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("write: {e}"),
                    }
                }
                while let Some(msg) = rx.try_recv() {
                    let frame = frame_of(&msg);
                    let mut at = 0;
                    while at < frame.len() {
                        socket.writable().await.expect("writable");
                        match socket.try_write(&frame[at..]) {
                            Ok(n) => at += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                }
            };
            timeout(WAIT, write_all).await.expect("everything written");
            assert!(
                reader.await.expect("reader"),
                "every frame whole and in order"
            );
            assert_eq!(tx.shared.queue.lock().bytes, 0);
            return;
        }
        panic!("no socket took part of a frame in 20 connections");
    }

    #[tokio::test]
    async fn overflow_in_messages_closes_as_slow_consumer() {
        let (tx, mut rx) = channel(2, 1 << 20, CancellationToken::new());
        tx.push(Message::text("a")).expect("1");
        tx.push(Message::text("b")).expect("2");
        assert_eq!(tx.push(Message::text("c")), Err(QueueError::Overflow));
        assert!(tx.is_closing());
        assert_eq!(rx.close_cause(), CloseCause::SlowConsumer);
        assert_eq!(rx.close_cause().code(), CloseCode::POLICY);
        rx.ready().await;
        assert_eq!(rx.try_recv(), Some(Message::text("a")));
        assert_eq!(tx.push(Message::text("d")), Err(QueueError::Closed));
    }

    #[test]
    fn pushes_are_refused_once_the_connection_closes() {
        // Told to close through its queue.
        let (tx, _rx) = channel(8, 1 << 20, CancellationToken::new());
        tx.close(CloseCode::POLICY, "bye");
        assert_eq!(tx.push(Message::text("a")), Err(QueueError::Closed));
        // A shutdown (the root token) reaches the connection task, which shuts the queue.
        let root = CancellationToken::new();
        let (tx, rx) = channel(8, 1 << 20, root.child_token());
        root.cancel();
        assert!(tx.is_closing());
        assert_eq!(rx.close_cause(), CloseCause::Shutdown);
        rx.shut();
        assert_eq!(tx.push(Message::text("b")), Err(QueueError::Closed));
    }

    #[tokio::test]
    async fn overflow_in_bytes_closes_and_a_too_large_message_is_refused() {
        let (tx, mut rx) = channel(100, 10, CancellationToken::new());
        assert_eq!(
            tx.push(Message::text("x".repeat(11))),
            Err(QueueError::TooLarge { size: 11, max: 10 })
        );
        assert!(
            !tx.is_closing(),
            "a refused message leaves the client alone"
        );
        tx.push(Message::text("x".repeat(10)))
            .expect("fits exactly");
        assert_eq!(tx.push(Message::text("y")), Err(QueueError::Overflow));
        assert_eq!(rx.try_recv().map(|m| m.len()), Some(10));
    }

    #[test]
    fn a_requested_close_keeps_the_first_cause() {
        let (tx, rx) = channel(1, 1, CancellationToken::new());
        tx.close(CloseCode::NORMAL, &"é".repeat(100));
        tx.close_for(CloseCause::SlowConsumer);
        let cause = rx.close_cause();
        assert_eq!(cause.code(), CloseCode::NORMAL);
        assert!(cause.reason().len() <= CloseReason::MAX_BYTES);
        assert!(cause.flushes_queue());
    }

    #[test]
    fn a_big_message_is_handed_out_in_fragments_of_the_shared_payload() {
        let (tx, mut rx) = channel(10, 1 << 20, CancellationToken::new());
        let text = "é".repeat(FRAGMENT_BYTES); // 2 fragments, cut inside a character
        tx.push(Message::text(text.clone())).expect("queued");
        tx.push(Message::text("next")).expect("queued");
        let mut payload = Vec::new();
        let mut opcodes = Vec::new();
        while rx.is_mid_message() || payload.is_empty() {
            let Some(Message::Frame(frame)) = rx.try_recv() else {
                panic!("expected a fragment");
            };
            assert!(frame.len() <= FRAGMENT_BYTES + 14);
            opcodes.push((frame.header().opcode, frame.header().is_final));
            payload.extend_from_slice(frame.payload());
        }
        assert_eq!(
            opcodes,
            vec![
                (OpCode::Data(OpData::Text), false),
                (OpCode::Data(OpData::Continue), true)
            ]
        );
        assert_eq!(payload, text.as_bytes());
        assert_eq!(rx.try_recv(), Some(Message::text("next")));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn shutdown_is_the_cause_when_none_was_set() {
        let root = CancellationToken::new();
        let (tx, rx) = channel(1, 1, root.child_token());
        root.cancel();
        assert!(tx.is_closing());
        assert_eq!(rx.close_cause(), CloseCause::Shutdown);
    }
}
