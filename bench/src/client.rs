//! One benchmark WebSocket connection: TCP connect (optionally from a chosen source address),
//! the WebSocket handshake with a small read buffer, and the welcome exchange of each protocol.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Read buffer per connection. tungstenite allocates and zero-fills it up front, so the
/// default (128 KiB) would make the load generator heavier than the servers it measures.
const READ_BUFFER: usize = 2048;

/// Wire protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// seed-001: `/api/websocket/ws?systemId=..`, JSON welcome, `ping`/`pong`, text echo.
    Gateway,
    /// Socket.IO v4 over raw WebSocket (Engine.IO v4 framing).
    SocketIo,
}

/// Where and how to connect.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Protocol spoken by the server.
    pub proto: Proto,
    /// Listening address of the server.
    pub addr: SocketAddr,
}

impl Target {
    fn url(&self, system: &str) -> String {
        match self.proto {
            Proto::Gateway => format!("ws://{}/api/websocket/ws?systemId={system}", self.addr),
            Proto::SocketIo => format!(
                "ws://{}/socket.io/?EIO=4&transport=websocket&systemId={system}",
                self.addr
            ),
        }
    }

    /// The frame that asks for an application-level echo of `body`.
    pub fn echo_request(&self, body: &str) -> String {
        match self.proto {
            Proto::Gateway => body.to_owned(),
            Proto::SocketIo => format!("42[\"echo\",\"{body}\"]"),
        }
    }

    /// The exact frame the server answers to [`Target::echo_request`].
    pub fn echo_reply(&self, body: &str) -> String {
        match self.proto {
            Proto::Gateway => format!("echo:{body}"),
            Proto::SocketIo => format!("42[\"echo\",\"echo:{body}\"]"),
        }
    }
}

/// Source address for the `i`-th connection: round-robin over 127.0.0.1..=127.0.0.`count`
/// when `spread` (one process runs out of ephemeral ports per source address near 20k
/// connections), none otherwise (the kernel picks).
pub fn source_addr(i: usize, spread: bool, count: u8) -> Option<Ipv4Addr> {
    if !spread || count == 0 {
        return None;
    }
    let host = u8::try_from(i % usize::from(count))
        .unwrap_or(0)
        .saturating_add(1);
    Some(Ipv4Addr::new(127, 0, 0, host))
}

/// One thing read from a connection, close frames included (see [`Conn::receive`]).
#[derive(Debug)]
pub enum Received {
    /// A text frame (or a binary one, as lossy text).
    Text(Utf8Bytes),
    /// The peer's close frame, with its code (`None`: a close frame without a status).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF or reset).
    Eof,
}

/// An open connection that has received its welcome.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    proto: Proto,
    /// Id the server assigned (seed-001 `clientId`, Socket.IO socket id).
    pub client_id: String,
}

impl Conn {
    /// Connects, upgrades and waits for the welcome frame carrying the client id.
    pub async fn open(target: Target, system: &str, src: Option<Ipv4Addr>) -> Result<Conn> {
        let tcp = connect_tcp(target.addr, src).await?;
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(target.url(system), tcp, Some(config))
                .await
                .context("websocket handshake")?;
        let mut conn = Conn {
            ws,
            proto: target.proto,
            client_id: String::new(),
        };
        conn.client_id = match target.proto {
            Proto::Gateway => conn.gateway_welcome().await?,
            Proto::SocketIo => conn.socketio_welcome().await?,
        };
        Ok(conn)
    }

    async fn gateway_welcome(&mut self) -> Result<String> {
        let first = self
            .recv()
            .await?
            .context("closed before the welcome frame")?;
        let v: serde_json::Value =
            serde_json::from_str(first.as_str()).context("welcome frame is not JSON")?;
        if v["code"] != 0 {
            bail!("welcome frame has code {}: {first}", v["code"]);
        }
        v["data"]["clientId"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("welcome frame without data.clientId: {first}"))
    }

    async fn socketio_welcome(&mut self) -> Result<String> {
        // Engine.IO open packet `0{...}`, then our namespace connect `40`, the server's
        // `40{"sid":..}`, then the application's `welcome` event.
        for _ in 0..8 {
            let frame = self
                .recv()
                .await?
                .context("closed during Socket.IO handshake")?;
            let text = frame.as_str();
            if text.starts_with("0{") {
                self.send_text("40").await?;
            } else if let Some(rest) = text.strip_prefix("42[\"welcome\",") {
                let v: serde_json::Value = serde_json::from_str(rest.trim_end_matches(']'))
                    .context("welcome event is not JSON")?;
                return v["clientId"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("welcome event without clientId: {text}"));
            } else if text.starts_with("44") {
                bail!("Socket.IO connect refused: {text}");
            }
        }
        bail!("no Socket.IO welcome within 8 frames")
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .context("send")
    }

    /// Next text (or binary, as lossy text) frame; `None` once the connection is closed.
    /// Engine.IO pings (`2`) are answered (`3`) on the way and never returned.
    pub async fn recv(&mut self) -> Result<Option<Utf8Bytes>> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Ok(None);
            };
            match msg.context("receive")? {
                Message::Text(t) => {
                    if self.proto == Proto::SocketIo && t.as_str() == "2" {
                        self.send_text("3").await?;
                        continue;
                    }
                    return Ok(Some(t));
                }
                Message::Binary(b) => {
                    return Ok(Some(Utf8Bytes::from(
                        String::from_utf8_lossy(&b).into_owned(),
                    )));
                }
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

impl Conn {
    /// Next text frame or close, telling a close frame (and its code) from a bare end of the
    /// stream: the soak checks the code every departure ends with. Pings are answered by
    /// tungstenite on the way; Engine.IO pings are not (gateway protocol only).
    pub async fn receive(&mut self) -> Result<Received> {
        loop {
            match self.ws.next().await {
                None => return Ok(Received::Eof),
                Some(Err(e)) => {
                    use tokio_tungstenite::tungstenite::Error as E;
                    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
                    return match e {
                        E::ConnectionClosed
                        | E::AlreadyClosed
                        | E::Io(_)
                        | E::Protocol(P::ResetWithoutClosingHandshake) => Ok(Received::Eof),
                        other => Err(anyhow::Error::new(other).context("receive")),
                    };
                }
                Some(Ok(Message::Text(t))) => return Ok(Received::Text(t)),
                Some(Ok(Message::Binary(b))) => {
                    return Ok(Received::Text(Utf8Bytes::from(
                        String::from_utf8_lossy(&b).into_owned(),
                    )));
                }
                Some(Ok(Message::Close(f))) => {
                    return Ok(Received::Close(f.map(|f| u16::from(f.code))));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }

    /// Sends a close frame with `code` and `reason` (the peer's answer is read with
    /// [`Conn::receive`]).
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<()> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        self.ws.close(Some(frame)).await.context("send close")
    }

    /// Leaves without a close frame: with `reset`, by a TCP reset (`SO_LINGER` 0, what a
    /// killed process or a lost phone looks like), else by a plain FIN.
    pub fn abandon(self, reset: bool) -> Result<()> {
        if reset {
            self.ws.get_ref().set_zero_linger().context("SO_LINGER 0")?;
        }
        drop(self);
        Ok(())
    }
}

async fn connect_tcp(addr: SocketAddr, src: Option<Ipv4Addr>) -> Result<TcpStream> {
    let stream = match src {
        Some(ip) => {
            let socket = TcpSocket::new_v4().context("socket")?;
            socket
                .bind(SocketAddr::from((ip, 0)))
                .with_context(|| format!("bind source address {ip}"))?;
            socket.connect(addr).await
        }
        None => TcpStream::connect(addr).await,
    }
    .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_the_range() {
        assert_eq!(source_addr(0, false, 50), None);
        assert_eq!(source_addr(0, true, 50), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            source_addr(49, true, 50),
            Some(Ipv4Addr::new(127, 0, 0, 50))
        );
        assert_eq!(source_addr(50, true, 50), Some(Ipv4Addr::new(127, 0, 0, 1)));
    }

    #[test]
    fn socketio_echo_frames_match() {
        let t = Target {
            proto: Proto::SocketIo,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        assert_eq!(t.echo_request("e1.2"), "42[\"echo\",\"e1.2\"]");
        assert_eq!(t.echo_reply("e1.2"), "42[\"echo\",\"echo:e1.2\"]");
    }
}
