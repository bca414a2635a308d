//! One simulated member: dial (from a rotating 127.0.0.N source address),
//! open the WebSocket offering `kindred.v1`, `hello`, `join` (accepting the
//! rules when asked), then classify incoming frames cheaply. Every frame we
//! send is a `kindred_protocol::ClientMessage`; frames we receive are parsed
//! as `ServerMessage` except the hot ones (`message`, `sent`, `presence`),
//! which are recognised by their leading `type` tag.

use futures_util::{SinkExt, StreamExt};
use kindred_protocol::{ClientMessage, CloseCode, ErrorCode, RequestId, RoomId, ServerMessage};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

pub type Ws = WebSocketStream<TcpStream>;

/// A server to connect to.
#[derive(Debug, Clone)]
struct Target {
    /// `ws://host:port/path`
    url: String,
    addr: SocketAddr,
}

/// Opens connections, spreading them over the servers and the source addresses.
#[derive(Debug, Clone)]
pub struct Dialer {
    targets: Vec<Target>,
    /// Local addresses to bind before connecting, rotated per connection; empty: let the kernel pick.
    sources: Vec<IpAddr>,
    /// The longest any one setup step may take.
    pub step_timeout: Duration,
}

/// Why a connection did not reach `joined`; its label is what the report counts.
#[derive(Debug)]
pub enum SetupError {
    Connect(std::io::Error),
    Http(u16),
    WebSocket(String),
    Timeout(&'static str),
    Refused(ErrorCode),
    Closed(u16),
}

impl SetupError {
    pub fn label(&self) -> String {
        match self {
            SetupError::Connect(e) => format!("connect_{:?}", e.kind()).to_lowercase(),
            SetupError::Http(status) => format!("http_{status}"),
            SetupError::WebSocket(_) => "websocket".into(),
            SetupError::Timeout(step) => format!("timeout_{step}"),
            SetupError::Refused(code) => code.as_str().into(),
            SetupError::Closed(code) => format!("closed_{code}"),
        }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Connect(e) => write!(f, "connect: {e}"),
            SetupError::WebSocket(e) => write!(f, "websocket: {e}"),
            other => f.write_str(&other.label()),
        }
    }
}

impl Dialer {
    /// Resolve every `--url` once. `source_ips` > 0 binds loopback targets'
    /// connections to 127.0.0.1 … 127.0.0.N in turn, so that more than one
    /// address's worth of ephemeral ports (~28k) is available.
    pub async fn new(urls: &[String], source_ips: u8, step_timeout: Duration) -> anyhow::Result<Dialer> {
        anyhow::ensure!(!urls.is_empty(), "give at least one --url");
        let mut targets = Vec::new();
        for url in urls {
            let rest = url
                .strip_prefix("ws://")
                .or_else(|| url.strip_prefix("http://"))
                .ok_or_else(|| anyhow::anyhow!("{url}: use ws://host:port[/ws] (TLS is not supported)"))?;
            let (hostport, path) = match rest.find('/') {
                Some(i) if &rest[i..] != "/" => (&rest[..i], &rest[i..]),
                Some(i) => (&rest[..i], "/ws"),
                None => (rest, "/ws"),
            };
            let addr = tokio::net::lookup_host(hostport).await?.next().ok_or_else(|| anyhow::anyhow!("{hostport} does not resolve"))?;
            targets.push(Target { url: format!("ws://{hostport}{path}"), addr });
        }
        let all_loopback = targets.iter().all(|t| matches!(t.addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
        let sources = if all_loopback && source_ips > 0 { (1..=source_ips).map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))).collect() } else { Vec::new() };
        Ok(Dialer { targets, sources, step_timeout })
    }

    pub fn servers(&self) -> usize {
        self.targets.len()
    }

    /// Open connection number `k`: server `k % servers`, source `k % sources`.
    pub async fn connect(&self, k: usize) -> Result<Ws, SetupError> {
        let target = &self.targets[k % self.targets.len()];
        let socket = TcpSocket::new_v4().map_err(SetupError::Connect)?;
        if !self.sources.is_empty() {
            let source = self.sources[(k / self.targets.len()) % self.sources.len()];
            socket.bind(SocketAddr::new(source, 0)).map_err(SetupError::Connect)?;
        }
        socket.set_nodelay(true).map_err(SetupError::Connect)?;
        let stream = tokio::time::timeout(self.step_timeout, socket.connect(target.addr))
            .await
            .map_err(|_| SetupError::Timeout("connect"))?
            .map_err(SetupError::Connect)?;
        let mut request = target.url.as_str().into_client_request().map_err(|e| SetupError::WebSocket(e.to_string()))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(kindred_protocol::SUBPROTOCOL));
        // Small buffers: tens of thousands of these live in one process.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
        let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        match tokio::time::timeout(self.step_timeout, handshake).await {
            Err(_) => Err(SetupError::Timeout("upgrade")),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) => Err(SetupError::Http(response.status().as_u16())),
            Ok(Err(tungstenite::Error::Io(e))) => Err(SetupError::Connect(e)),
            Ok(Err(e)) => Err(SetupError::WebSocket(e.to_string())),
        }
    }

    /// Connect, `hello`, and `join` the room, accepting its rules when asked.
    pub async fn session(&self, k: usize, room: &RoomId) -> Result<Ws, SetupError> {
        let mut ws = self.connect(k).await?;
        send(&mut ws, &ClientMessage::Hello { id: Some(RequestId::Int(1)), token: None, handle: None, locale: None })
            .await
            .map_err(|e| SetupError::WebSocket(e.to_string()))?;
        self.expect(&mut ws, "welcome").await?;
        let mut join = ClientMessage::Join { id: Some(RequestId::Int(2)), room: room.clone(), accept_rules: None, since: None };
        for _ in 0..2 {
            send(&mut ws, &join).await.map_err(|e| SetupError::WebSocket(e.to_string()))?;
            match self.expect(&mut ws, "joined").await {
                Ok(()) => return Ok(ws),
                Err(Refusal::RulesNotAccepted(version)) => {
                    join = ClientMessage::Join { id: Some(RequestId::Int(3)), room: room.clone(), accept_rules: Some(version), since: None };
                }
                Err(Refusal::Other(e)) => return Err(e),
            }
        }
        Err(SetupError::Refused(ErrorCode::RulesNotAccepted))
    }

    /// The staff connection of a crisis run: `hello` with a facilitator's (or
    /// admin's) token on the first server, and `welcome`; it joins no room, so
    /// all it is sent is alerts for the rooms its token covers.
    pub async fn staff_session(&self, token: &str) -> Result<Ws, SetupError> {
        let mut ws = self.connect(0).await?;
        let hello = ClientMessage::Hello { id: Some(RequestId::Int(1)), token: Some(token.to_owned()), handle: None, locale: None };
        send(&mut ws, &hello).await.map_err(|e| SetupError::WebSocket(e.to_string()))?;
        self.expect(&mut ws, "welcome").await?;
        Ok(ws)
    }

    /// `http://host:port/metrics` of the first server.
    pub fn metrics_url(&self) -> String {
        metrics_url(&self.targets[0].url)
    }

    /// Wait for a reply of type `want`, skipping events; an `error` ends the wait.
    async fn expect(&self, ws: &mut Ws, want: &'static str) -> Result<(), Refusal> {
        let deadline = tokio::time::Instant::now() + self.step_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| SetupError::Timeout(want))?;
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(SetupError::Closed(frame.map_or(1005, |f| f.code.into())).into());
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(SetupError::WebSocket(e.to_string()).into()),
                None => return Err(SetupError::Closed(1006).into()),
            };
            // A `joined` reply can be large (every member of a big room): don't parse it.
            match tag(&text) {
                Some(kind) if kind == want => return Ok(()),
                Some("error") | None => {}
                Some(_) => continue,
            }
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(msg) if msg.kind() == want => return Ok(()),
                Ok(ServerMessage::Error(e)) => {
                    return Err(match (e.code, e.rules_version) {
                        (ErrorCode::RulesNotAccepted, Some(v)) => Refusal::RulesNotAccepted(v),
                        (code, _) => SetupError::Refused(code).into(),
                    });
                }
                Ok(_) => continue,
                Err(e) => return Err(SetupError::WebSocket(format!("unparsable frame: {e}")).into()),
            }
        }
    }
}

enum Refusal {
    RulesNotAccepted(u32),
    Other(SetupError),
}

impl From<Refusal> for SetupError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RulesNotAccepted(_) => SetupError::Refused(ErrorCode::RulesNotAccepted),
            Refusal::Other(e) => e,
        }
    }
}

impl From<SetupError> for Refusal {
    fn from(e: SetupError) -> Self {
        Refusal::Other(e)
    }
}

pub async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), tungstenite::Error> {
    // Our own protocol types always serialize.
    let text = serde_json::to_string(msg).expect("protocol types serialize");
    ws.send(Message::text(text)).await
}

/// The server's Prometheus endpoint beside its WebSocket URL:
/// `ws://host:port/anything` → `http://host:port/metrics`.
pub fn metrics_url(ws_url: &str) -> String {
    let rest = ws_url.strip_prefix("ws://").or_else(|| ws_url.strip_prefix("http://")).unwrap_or(ws_url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    format!("http://{hostport}/metrics")
}

/// Close politely (1000), not waiting long for the server's answer.
pub async fn close(mut ws: Ws) {
    let frame = CloseFrame { code: CloseCode::Normal.code().into(), reason: "".into() };
    let polite = async {
        ws.close(Some(frame)).await?;
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<_, tungstenite::Error>(())
    };
    // The server may be gone or busy; the socket is dropped either way.
    let _ = tokio::time::timeout(Duration::from_secs(2), polite).await;
}

/// The `type` of a frame the server encoded with its tag first (as serde does
/// for our internally tagged enums); `None` means "parse it to find out".
pub fn tag(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("{\"type\":\"")?;
    Some(&rest[..rest.find('"')?])
}

/// The integer `id` of a reply, read without parsing the frame.
pub fn int_id(text: &str) -> Option<i64> {
    let rest = &text[text.find("\"id\":")? + 5..];
    let end = rest.find(|c: char| !c.is_ascii_digit() && c != '-').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The marker that starts a load-test message's text, followed by the send
/// time in unix nanoseconds as 16 letters `a`–`p` (one per hex digit). Letters,
/// not digits: a long run of digits reads as a phone number to content filters.
pub const STAMP: &str = "kl-";

pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A message text carrying `nanos`, padded with words to about `len` bytes.
pub fn stamped_text(nanos: u64, len: usize) -> String {
    const WORDS: &str = "thank you all for being here tonight it helps to not feel alone with it ";
    let mut text = String::with_capacity(len.max(24) + 8);
    text.push_str(STAMP);
    for shift in (0..16).rev() {
        text.push((b'a' + ((nanos >> (shift * 4)) & 0xf) as u8) as char);
    }
    text.push(' ');
    while text.len() < len {
        let take = (len - text.len()).min(WORDS.len());
        text.push_str(&WORDS[..take]);
    }
    text.trim_end().to_owned()
}

/// The send time stamped into a `message` frame's text, if it carries one.
pub fn stamp_of(frame: &str) -> Option<u64> {
    let at = frame.find("\"text\":\"kl-")? + "\"text\":\"kl-".len();
    let digits = frame.as_bytes().get(at..at + 16)?;
    digits.iter().try_fold(0u64, |acc, &b| (b'a'..=b'p').contains(&b).then(|| (acc << 4) | u64::from(b - b'a')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindred_protocol::{ChatMessage, Role, Sender};

    #[test]
    fn the_id_of_a_sent_reply_as_the_server_encodes_it() {
        let sent = ServerMessage::Sent { id: Some(RequestId::Int(4711)), room: "grief".into(), message_id: "m1".into(), seq: 9 };
        assert_eq!(int_id(&serde_json::to_string(&sent).unwrap()), Some(4711));
        let unnamed = ServerMessage::Sent { id: None, room: "grief".into(), message_id: "m1".into(), seq: 9 };
        assert_eq!(int_id(&serde_json::to_string(&unnamed).unwrap()), None);
    }

    #[test]
    fn a_stamp_survives_the_server_encoding() {
        let nanos = unix_nanos();
        let text = stamped_text(nanos, 80);
        assert!(text.len() <= 80 && text.len() > 60, "{text}");
        assert!(!text.bytes().any(|b| b.is_ascii_digit()));
        let frame = serde_json::to_string(&ServerMessage::Message(ChatMessage {
            room: "grief".into(),
            message_id: "x".into(),
            seq: 1,
            from: Sender { member_id: "m".into(), handle: "Quiet Heron 42".into(), role: Role::Member },
            text,
            ts: "2026-11-22T20:01:02.123Z".into(),
            reply_to: None,
            cw: None,
            staff: false,
            staff_seq: None,
            reactions: None,
        }))
        .unwrap();
        assert_eq!(tag(&frame), Some("message"));
        assert_eq!(stamp_of(&frame), Some(nanos));
        assert_eq!(stamp_of(r#"{"type":"message","text":"hello"}"#), None);
    }

    #[test]
    fn the_metrics_endpoint_sits_beside_the_websocket() {
        assert_eq!(metrics_url("ws://127.0.0.1:9100/ws"), "http://127.0.0.1:9100/metrics");
        assert_eq!(metrics_url("ws://localhost:8080"), "http://localhost:8080/metrics");
        assert_eq!(metrics_url("http://10.0.0.2:80/a/b"), "http://10.0.0.2:80/metrics");
    }
}
