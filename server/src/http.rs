//! HTTP routes: the WebSocket at `/ws`, `/healthz`, `/readyz`, and the web
//! client at `/`. Refusals that can happen before a WebSocket exists (an
//! unknown protocol version, too many connections from one address, a
//! server shutting down) are answered here with plain HTTP.

use crate::App;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kindred_protocol::{ErrorCode, SUBPROTOCOL, ServerMessage};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// See `max_write_buffer_size` below.
const MAX_WRITE_BUFFER: usize = 8 << 20;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
        ("kindred_rooms", "Rooms in the directory.", rooms.len() as u64),
        ("kindred_room_members", "Members present, summed over rooms.", members as u64),
        ("kindred_ready", "1 when the node accepts messages.", u64::from(app.broker.is_ready() && !app.shutdown.is_cancelled())),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = crate::hub::encode(&ServerMessage::error(None, code, message));
    (status, [(header::CONTENT_TYPE, "application/json")], body.as_str().to_owned()).into_response()
}

/// Counts a client address's open connections; the count drops with the guard.
/// The address is held in memory for this only, and never logged.
pub struct IpGuard {
    app: Arc<App>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        self.app.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

fn admit_ip(app: &Arc<App>, ip: IpAddr) -> Option<IpGuard> {
    let mut count = app.per_ip.entry(ip).or_insert(0);
    if *count >= app.config.limits.max_connections_per_ip {
        return None;
    }
    *count += 1;
    drop(count);
    Some(IpGuard { app: app.clone(), ip })
}

async fn websocket(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !offered.is_empty() && !offered.contains(&SUBPROTOCOL) {
        let msg = format!("This server speaks {SUBPROTOCOL}; none of the offered protocol versions.");
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::UnsupportedVersion, &msg);
    }
    if app.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded, "The server is restarting; try again shortly.");
    }
    let Some(guard) = admit_ip(&app, peer.ip()) else {
        return refuse(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, "Too many connections from this address.");
    };
    let limits = &app.config.limits;
    let frame_max = limits.max_frame_bytes as usize;
    let tracker = app.tracker.clone();
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        // Only a cap for when writes fail: the mailbox bound and the write timeout are
        // what limit a slow client. It must fit the largest frame we send: a `joined`
        // with a full history and a big room's member list runs to hundreds of KiB.
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(frame_max)
        .max_frame_size(frame_max)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                let _guard = guard;
                crate::session::run(app, socket).await;
            })
        })
}
