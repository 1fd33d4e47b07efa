//! The client's TCP socket under its WebSocket stream: shared with the senders that write to
//! it directly while the connection's queue is empty
//! ([`crate::outbound::Outbound::push_prepared`], [`crate::outbound::Outbound::push_one`];
//! [`crate::outbound::OutboundRx`] says who may
//! write when), and read without a buffer of its own while the client is quiet.
//!
//! Why reads go through a per-thread buffer: tungstenite's frame codec allocates its read
//! chunk (`read_buffer_size`) when the stream is made and keeps it for the connection's life.
//! At 1 KiB that was a quarter of what an idle connection cost (4.5 KB at 19k connections).
//! So the codec gets a small chunk ([`CODEC_CHUNK`]), and the socket is read up to
//! `read_buffer_size` at a time into the worker thread's scratch buffer. What the codec does
//! not take at once stays in an exact-size `pending` buffer, which is dropped as soon as it has
//! been consumed. A quiet connection holds no read buffer but the codec's chunk. Measured with
//! `scripts/bench.sh --only idle`: see BENCHMARKS.md (issue 12, memory).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Bytes;

/// The read chunk of the WebSocket codec on the direct path: allocated per connection and
/// kept. The codec copies at most this much per read call from [`DirectIo`]; the socket reads
/// are `read_buffer_size` (16 KiB by default), so a large frame costs few syscalls.
pub const CODEC_CHUNK: usize = 128;

thread_local! {
    /// The socket read buffer of this thread, shared by every connection it serves.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What hyper had read past the upgrade request, in an allocation of its own. `read_buf` is a
/// slice of hyper's whole read buffer, and even empty it kept that buffer alive for the
/// connection's life: 9.4 KB per idle connection instead of 4.2 (`scripts/bench.sh --only
/// idle`, pinned, 19k connections, one run each before and after).
fn unpinned(read_buf: Bytes) -> Option<Bytes> {
    (!read_buf.is_empty()).then(|| Bytes::copy_from_slice(&read_buf))
}

/// A client's socket as its WebSocket stream reads and writes it. Reads and writes go through
/// the socket's readiness like `TcpStream`'s own.
pub struct DirectIo {
    tcp: Arc<TcpStream>,
    /// Read from the socket but not yet taken by the codec (first: what hyper had read past
    /// the upgrade request); never empty. `None`, holding no allocation, once it is taken.
    pending: Option<Bytes>,
    /// Bytes read from the socket at a time.
    read_size: usize,
}

impl DirectIo {
    /// The socket `tcp`, with `read_buf` (what hyper read past the upgrade) to be read first,
    /// read `read_size` bytes at a time.
    pub fn new(tcp: Arc<TcpStream>, read_buf: Bytes, read_size: usize) -> Self {
        Self {
            tcp,
            pending: unpinned(read_buf),
            read_size: read_size.max(CODEC_CHUNK),
        }
    }

    /// One socket read into this thread's scratch buffer: what fits goes to `buf`, the rest to
    /// `pending`.
    fn read_through_scratch(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        SCRATCH.with_borrow_mut(|scratch| {
            if scratch.len() < self.read_size {
                scratch.resize(self.read_size, 0);
            }
            let n = read_once(&self.tcp, &mut scratch[..self.read_size])?;
            let now = n.min(buf.remaining());
            buf.put_slice(&scratch[..now]);
            if n > now {
                self.pending = Some(Bytes::copy_from_slice(&scratch[now..n]));
            }
            Ok(())
        })
    }
}

/// One read of at most `into.len()` bytes from `tcp`.
///
/// A short read (fewer bytes than asked, but some) means the socket's receive buffer is
/// drained: its read readiness is cleared with it, as `TcpStream::poll_read` does, so the next
/// poll waits for epoll instead of asking the kernel again. `try_read` alone clears it only on
/// `EAGAIN`: every frame then cost a second `recvfrom` that returned `EAGAIN` (perf trace, echo
/// bench: 973k `recvfrom` for 487k `sendto`). Data that arrives after the read is not missed:
/// tokio clears only the readiness it saw before the read, and a new edge sets it again.
fn read_once(tcp: &TcpStream, into: &mut [u8]) -> io::Result<usize> {
    let asked = into.len();
    let mut got = 0;
    let read = tcp.try_io(Interest::READABLE, || {
        got = tcp.try_read(into)?;
        if got > 0 && got < asked {
            // Drained: `WouldBlock` makes `try_io` clear the readiness; `got` is kept.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

impl AsyncRead for DirectIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(pending) = &mut this.pending {
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            // `advance`, not `split_to`: no second handle, so the buffer stays uniquely owned
            // and is freed as soon as it is consumed.
            bytes::Buf::advance(pending, n);
            if pending.is_empty() {
                this.pending = None;
            }
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            let read = if buf.remaining() >= this.read_size {
                // Room for a whole read: straight into the caller's buffer.
                read_once(&this.tcp, buf.initialize_unfilled()).map(|n| buf.advance(n))
            } else {
                this.read_through_scratch(buf)
            };
            match read {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for DirectIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends our side of the stream (FIN). `shutdown` needs no exclusive access to the socket;
    /// a duplicate descriptor reaches it without `unsafe`.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use std::os::fd::AsFd;
        let fd = self.tcp.as_fd().try_clone_to_owned()?;
        Poll::Ready(std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// What hyper read past the upgrade must not keep hyper's read buffer alive: an empty rest
    /// took 5 KB per idle connection (see [`unpinned`]).
    #[test]
    fn the_rest_of_the_upgrade_read_holds_no_part_of_hypers_buffer() {
        for rest in [&b""[..], &b"\x81\x02hi"[..]] {
            let mut buf = bytes::BytesMut::with_capacity(8192);
            buf.extend_from_slice(b"GET /ws HTTP/1.1\r\n\r\n");
            buf.extend_from_slice(rest);
            let whole = buf.freeze();
            let read_buf = whole.slice(whole.len() - rest.len()..);
            let kept = unpinned(read_buf).unwrap_or_default();
            assert_eq!(&kept[..], rest);
            assert!(
                whole.is_unique(),
                "the {}-byte rest still shares the buffer",
                rest.len()
            );
        }
    }

    /// Both ends of a loopback TCP connection: the client's, and the server's as accepted.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    /// A read smaller than the socket holds leaves the rest in `pending`, in order, and a
    /// consumed `pending` holds nothing: a quiet connection keeps no read buffer.
    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_keep_nothing_after() {
        let (mut client, server) = connected().await;
        let mut io = DirectIo::new(Arc::new(server), Bytes::from_static(b"ab"), 1024);
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 100];
        while got.len() < 2 + sent.len() {
            let n = io.read(&mut chunk).await.expect("read");
            assert!(n > 0 && n <= 100, "{n}");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..2], b"ab");
        assert_eq!(&got[2..], &sent[..]);
        assert!(
            io.pending.is_none(),
            "a consumed pending buffer is given back"
        );
        drop(client);
        assert_eq!(io.read(&mut chunk).await.expect("read"), 0, "end of stream");
    }

    /// A read that drains the socket clears its read readiness, so the next poll of a quiet
    /// client costs no `recvfrom` that returns `EAGAIN` (one per frame before, [`read_once`]);
    /// and what arrives later is still read. Both read paths: straight into the caller's
    /// buffer, and through the thread's scratch buffer.
    #[tokio::test]
    async fn a_read_that_drains_the_socket_clears_its_readiness() {
        let (mut client, server) = connected().await;
        let tcp = Arc::new(server);
        let mut io = DirectIo::new(tcp.clone(), Bytes::new(), 1024);
        let read_ready =
            || std::future::poll_fn(|cx| Poll::Ready(tcp.poll_read_ready(cx).is_ready()));
        for (round, size) in [(1u8, 2048), (2, 16), (3, 2048)] {
            let frame = [round; 5];
            client.write_all(&frame).await.expect("write");
            tcp.readable().await.expect("readable");
            let mut buf = vec![0u8; size];
            let n = io.read(&mut buf).await.expect("read");
            assert_eq!(&buf[..n], &frame, "round {round}");
            assert!(
                !read_ready().await,
                "round {round} ({size}-byte buffer): the socket is drained but still marked readable"
            );
        }
    }
}
