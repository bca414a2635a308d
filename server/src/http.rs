//! HTTP routes: the WebSocket at `/ws`, `/healthz`, `/readyz`, and the web
//! client at `/`. Refusals that can happen before a WebSocket exists (an
//! unknown protocol version, a server shutting down) are answered here with
//! plain HTTP; too many connections, from one address or in all, are
//! refused at accept (see [`crate::listen`]) with the same kind of answer,
//! except a trusted proxy's, whose WebSockets are counted here by the client
//! its `X-Forwarded-For` names.

use crate::App;
use crate::wire::Wire;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use kindred_protocol::{ErrorCode, RoomId, SUBPROTOCOL, ServerMessage};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// tungstenite's cap on its own write buffer, which holds at most the frame a
/// blocked socket did not take (frames are at most a fragment, see `wire`):
/// only a guard. The mailbox bound and the write timeout limit a slow client.
const MAX_WRITE_BUFFER: usize = 8 << 20;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/rooms/{id}/calendar.ics", get(calendar))
        .merge(crate::api::router())
        .fallback(get(static_file))
        .with_state(app)
}

async fn static_file(State(app): State<Arc<App>>, uri: Uri) -> Response {
    crate::web::serve(app.config.web_dir.clone(), uri).await
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !app.broker.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let rooms = app.hub.rooms();
    let members: usize = rooms.iter().map(|r| r.member_count()).sum();
    let body = app.metrics.render(&[
        ("kindred_connections", "Open WebSocket connections.", app.tracker.len() as u64),
        ("kindred_tcp_connections", "Open TCP connections, HTTP and WebSocket (refused at kindred_max_connections).", app.connections.open() as u64),
        ("kindred_max_connections", "The cap on open TCP connections.", app.connections.max() as u64),
        ("kindred_rooms", "Rooms in the directory.", rooms.len() as u64),
        ("kindred_room_members", "Members present, summed over rooms.", members as u64),
        ("kindred_ready", "1 when the node accepts messages.", u64::from(app.broker.is_ready() && !app.shutdown.is_cancelled())),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// A scheduled room's sessions as an iCalendar file (see [`crate::rooms::calendar`]);
/// 404 for an unknown room or one without a schedule.
async fn calendar(State(app): State<Arc<App>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "No scheduled room by that id.").into_response();
    let Some(room) = app.hub.room(&RoomId(id)) else { return not_found() };
    let def = room.def();
    // The room in the web client, on the address the calendar was fetched from.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    let host = host.unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let scheme = if app.config.is_trusted_proxy(peer.ip()) && proto == Some("https") { "https" } else { "http" };
    let url = format!("{scheme}://{host}/#/room/{}", def.id.0);
    match crate::rooms::calendar::ics(&def, &url, chrono::Utc::now()) {
        Some(body) => {
            let disposition = format!("inline; filename=\"{}.ics\"", def.id.0);
            ([(header::CONTENT_TYPE, "text/calendar; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response()
        }
        None => not_found(),
    }
}

pub(crate) fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = crate::frame::encode(&ServerMessage::error(None, code, message));
    (status, [(header::CONTENT_TYPE, "application/json")], body.as_str().to_owned()).into_response()
}

/// Counts a client address's open connections; the count drops with the guard.
/// The address is held in memory for this only, and never logged.
pub(crate) struct IpGuard {
    app: Arc<App>,
    key: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        self.app.per_ip.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// One more connection from `ip`, unless its address already has
/// `max_connections_per_ip`.
pub(crate) fn admit_ip(app: &Arc<App>, ip: IpAddr) -> Option<IpGuard> {
    let key = address_key(ip);
    let mut count = app.per_ip.entry(key).or_insert(0);
    if *count >= app.config.limits.max_connections_per_ip {
        return None;
    }
    *count += 1;
    drop(count);
    Some(IpGuard { app: app.clone(), key })
}

/// What the per-address cap counts by: an IPv4 address as it is (also when
/// it comes IPv4-mapped, `::ffff:a.b.c.d`, from a dual-stack listener), an
/// IPv6 address by its /64, since one host or home is usually given a whole
/// /64 and could otherwise take a fresh address for every connection.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

async fn websocket(State(app): State<Arc<App>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request) -> Response {
    let Some(accept) = upgrade_accept(request.method(), request.headers()) else {
        let msg = "Connect here with a WebSocket (GET, Connection: upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13).";
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg);
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::UPGRADE_REQUIRED, ErrorCode::BadRequest, "This connection cannot be upgraded to a WebSocket.");
    };
    let headers = request.headers();
    let offered: Vec<&str> = tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).collect();
    let offered_protocol = offered.contains(&SUBPROTOCOL);
    if !offered.is_empty() && !offered_protocol {
        let msg = format!("This server speaks {SUBPROTOCOL}; none of the offered protocol versions.");
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::UnsupportedVersion, &msg);
    }
    if app.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded, "The server is restarting; try again shortly.");
    }
    // Any other peer was counted at accept.
    let mut forwarded = None;
    if app.config.is_trusted_proxy(peer.ip()) {
        let client = forwarded_client(headers, &app.config).unwrap_or(peer.ip());
        let Some(guard) = admit_ip(&app, client) else {
            return refuse(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, "Too many connections from this address.");
        };
        forwarded = Some(guard);
    }
    let limits = &app.config.limits;
    let frame_max = limits.max_frame_bytes as usize;
    // tungstenite hands every frame straight to the wire (write buffer 0),
    // which batches them and frees its buffer after each write (see `wire`).
    let config = WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(frame_max))
        .max_frame_size(Some(frame_max));
    let (flush_at, tracker) = (limits.write_buffer_bytes, app.tracker.clone());
    tokio::spawn(tracker.track_future(async move {
        let _forwarded = forwarded;
        // The client went away between the response and the upgrade.
        let Ok(upgraded) = on_upgrade.await else { return };
        // A blocked socket holds back the session after two batches' worth.
        let wire = Wire::new(TokioIo::new(upgraded), flush_at, 2 * flush_at);
        let socket = WebSocketStream::from_raw_socket(wire, Role::Server, Some(config)).await;
        crate::session::run(app, socket).await;
    }));
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if offered_protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    response
}

/// The comma-separated values of a header, across all its lines.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// The `Sec-WebSocket-Accept` for a valid WebSocket upgrade request (RFC 6455 §4.2.1).
fn upgrade_accept(method: &Method, headers: &HeaderMap) -> Option<HeaderValue> {
    let has = |name: header::HeaderName, token: &str| tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token));
    let valid = method == Method::GET
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| valid)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// The client a trusted proxy forwarded for: the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
/// the peer it saw; anything further left may have been written by the
/// client). None when there is no such address, or the entry in its place is
/// not one.
pub(crate) fn forwarded_client(headers: &HeaderMap, config: &crate::config::Config) -> Option<IpAddr> {
    let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().ok()).collect::<Option<_>>()?;
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let entry = entry.trim();
        // Some proxies add the client's port.
        let ip = entry.parse::<IpAddr>().or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip())).ok()?;
        if !config.is_trusted_proxy(ip) {
            return Some(ip.to_canonical());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> String {
        address_key(ip.parse().unwrap()).to_string()
    }

    #[test]
    fn addresses_are_counted_by_ipv4_address_or_ipv6_slash_64() {
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7", "IPv4-mapped counts as its IPv4 address");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "one /64, one count");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"), "the next /64 is another address");
        assert_eq!(key("::1"), "::");
    }

    fn client(trusted: &[&str], forwarded_for: &[&str]) -> Option<String> {
        let mut config = crate::config::Config::new("unused");
        config.trusted_proxies = trusted.iter().map(|p| p.parse().unwrap()).collect();
        let mut headers = HeaderMap::new();
        for value in forwarded_for {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        forwarded_client(&headers, &config).map(|ip| ip.to_string())
    }

    #[test]
    fn the_forwarded_client_is_the_right_most_untrusted_address() {
        let proxy = ["10.0.0.2"];
        assert_eq!(client(&proxy, &["203.0.113.7"]).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&proxy, &["198.51.100.1, 203.0.113.7"]).as_deref(), Some("203.0.113.7"), "forged entries on the left");
        assert_eq!(client(&["10.0.0.2", "10.0.0.3"], &["203.0.113.7, 10.0.0.3"]).as_deref(), Some("203.0.113.7"), "a chain of proxies");
        assert_eq!(client(&proxy, &["198.51.100.1", "203.0.113.7"]).as_deref(), Some("203.0.113.7"), "the last header is the nearest");
        assert_eq!(client(&proxy, &["203.0.113.7:4711"]).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&proxy, &["[2001:db8::7]:4711"]).as_deref(), Some("2001:db8::7"));
        assert_eq!(client(&proxy, &["::ffff:203.0.113.7"]).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&["::ffff:10.0.0.2"], &["203.0.113.7, 10.0.0.2"]).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&proxy, &[]), None, "no header: the proxy itself");
        assert_eq!(client(&proxy, &["10.0.0.2"]), None, "only trusted proxies");
        assert_eq!(client(&proxy, &["203.0.113.7, unknown"]), None, "not an address where the client should be");
        assert_eq!(client(&proxy, &["unknown, 203.0.113.7"]).as_deref(), Some("203.0.113.7"));
    }
}
