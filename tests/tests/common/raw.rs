//! A hand-rolled WebSocket client over a plain TCP socket, for what tungstenite will not do:
//! stay silent (never answer a ping), never read (so the gateway's writes back up), choose the
//! socket's receive buffer, and send frames a well-behaved client never sends (invalid UTF-8,
//! oversized frames).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// A WebSocket client speaking the protocol by hand.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read past the end of what was parsed so far.
    buf: Vec<u8>,
    /// The clientId from the welcome frame (empty until [`RawClient::read_welcome`]).
    pub id: String,
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload (servers never mask).
    pub payload: Vec<u8>,
}

impl RawClient {
    /// Connect to `addr`, upgrade on `path_and_query`; `rcvbuf` shrinks the socket's receive
    /// buffer (which also turns off its autotuning) so that a client that does not read backs
    /// up the server quickly. Panics unless the server answers 101.
    pub async fn connect(addr: SocketAddr, path_and_query: &str, rcvbuf: Option<u32>) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await.expect("TCP connect");
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
            id: String::new(),
        };
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        client
            .stream
            .write_all(request.as_bytes())
            .await
            .expect("send handshake");
        let head = client.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got: {head}"
        );
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong Sec-WebSocket-Accept: {head}"
        );
        client
    }

    /// Connect and read the welcome frame.
    pub async fn connect_welcomed(
        addr: SocketAddr,
        path_and_query: &str,
        rcvbuf: Option<u32>,
    ) -> RawClient {
        let mut client = Self::connect(addr, path_and_query, rcvbuf).await;
        client.read_welcome().await;
        client
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(super::WAIT, self.stream.read(&mut chunk))
                .await
                .expect("handshake answer in time")
                .expect("read handshake answer");
            assert!(n > 0, "server closed during the handshake");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read the welcome frame and remember the clientId.
    pub async fn read_welcome(&mut self) -> Value {
        let frame = self.read_frame().await.expect("welcome frame");
        assert_eq!(frame.opcode, TEXT, "welcome is text");
        let welcome: Value = serde_json::from_slice(&frame.payload).expect("welcome is JSON");
        assert_eq!(welcome["code"], 0, "welcome: {welcome}");
        self.id = welcome["data"]["clientId"]
            .as_str()
            .expect("clientId")
            .to_owned();
        welcome
    }

    /// Send one masked frame with the given FIN bit, opcode and payload.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let bytes = encode_frame(fin, opcode, payload);
        self.stream.write_all(&bytes).await.expect("send frame");
    }

    /// The next frame, or `None` when the server closed the TCP connection. Waits at most
    /// ten seconds.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("a frame or EOF within 10 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read (without ever answering pings) until the server's close frame; returns its code
    /// and reason, or `None` when the connection ended without one. `seen` gets the opcode of
    /// every frame read before the close.
    pub async fn read_until_close(&mut self, seen: &mut Vec<u8>) -> Option<(u16, String)> {
        loop {
            let frame = self.read_frame().await?;
            if frame.opcode == CLOSE {
                if frame.payload.len() < 2 {
                    return Some((1005, String::new()));
                }
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                let reason = String::from_utf8_lossy(&frame.payload[2..]).into_owned();
                return Some((code, reason));
            }
            seen.push(frame.opcode);
        }
    }
}

/// A client-to-server frame: masked, with the shortest length encoding.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Parse one server frame from the front of `buf`: the frame and how many bytes it used.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at,
    ))
}
