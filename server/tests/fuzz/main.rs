//! Fuzzing the frame decoder and the session's request handling, on stable
//! Rust: proptest generates hostile frames — arbitrary JSON and mutations of
//! real requests — and sends them over a real WebSocket to a real server.
//! Every case must end in replies or a close with a protocol code, never a
//! panic, a hang, or a bystander disturbed.
//!
//! `cargo test -p kindred-server --test fuzz` runs a bounded pass (3,000
//! cases, seconds); `KINDRED_FUZZ_CASES=300000` runs about ten minutes
//! (docs/benchmarks.md).

use futures_util::{SinkExt, StreamExt};
use kindred_protocol::{ClientMessage, ServerMessage};
use kindred_server::App;
use kindred_server::config::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// `type`s no client may send, fuzzed beside every real one.
const NOT_TYPES: &[&str] = &["dance", ""];
/// Every real `type` and the ones above.
fn types() -> Vec<&'static str> {
    ClientMessage::TYPES.iter().chain(NOT_TYPES).copied().collect()
}

const KEYS: &[&str] = &[
    "type",
    "id",
    "room",
    "text",
    "action",
    "member_id",
    "since",
    "epoch",
    "seq",
    "accept_rules",
    "token",
    "handle",
    "locale",
    "message_id",
    "reason",
    "to",
    "staff",
    "cw",
    "reply_to",
    "duration_s",
    "service",
    "note",
    "alert_id",
    "resolution",
    "mode",
    "seconds",
];
const ROOMS: &[&str] = &["grief", "anxiety", "no-such-room", "", "GRIEF", "grief\u{0}"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        proptest::sample::select(types()).prop_map(|s| Value::String(s.into())),
        proptest::sample::select(ROOMS).prop_map(|s| Value::String(s.into())),
        (0usize..3000).prop_map(|n| Value::String("x".repeat(n))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A request-shaped object: a known type, plausible fields, some of them wrong.
fn request() -> impl Strategy<Value = Value> {
    (proptest::sample::select(types()), proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..6)).prop_map(|(kind, fields)| {
        let mut object: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        object.insert("type".into(), Value::String(kind.into()));
        Value::Object(object)
    })
}

/// One frame as text: JSON (request-like or anything), or raw bytes of text.
fn frame() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => request().prop_map(|v| v.to_string()),
        2 => value().prop_map(|v| v.to_string()),
        1 => ".{0,200}",
        1 => request().prop_map(|v| v.to_string().chars().scan(0, |n, c| { *n += 1; Some(c) }).take(20).collect()),
    ]
}

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "kindred.v1".parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("connects").0
}

async fn send(ws: &mut Ws, msg: &ClientMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap())).await.unwrap();
}

/// How long the server may take to answer before it counts as a hang.
const SILENCE: Duration = Duration::from_secs(5);

/// Read until a frame satisfies `want` or the socket closes (`Err` with its
/// code; `Err(Some(0))` when the server went silent for `SILENCE`).
async fn until(ws: &mut Ws, want: impl Fn(&ServerMessage) -> bool) -> Result<(), Option<u16>> {
    let deadline = tokio::time::Instant::now() + SILENCE;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(Some(0)),
            Ok(Some(Ok(Message::Text(text)))) => {
                let msg: ServerMessage =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the server sent what the protocol types cannot read: {e}: {text}"));
                if want(&msg) {
                    return Ok(());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return Err(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return Err(None),
        }
    }
}

#[test]
fn hostile_frames_never_panic_hang_or_disturb_anyone() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("kindred-fuzz-{:x}", rand::random::<u64>()));
    let (addr, app) = runtime.block_on(async {
        let mut config = Config::new(&dir);
        config.limits.messages_per_10s = 1000;
        config.limits.actions_per_10s = 1000;
        config.limits.max_connections_per_ip = 10_000;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app: Arc<App> = App::new(config).unwrap();
        tokio::spawn(kindred_server::run(listener, app.clone()));
        (addr, app)
    });
    // A bystander in the room the frames aim at, who must never notice.
    let mut bystander = runtime.block_on(async {
        let mut ws = connect(addr).await;
        send(&mut ws, &ClientMessage::Hello { id: Some(1.into()), token: None, handle: Some("Calm Otter".into()), locale: None }).await;
        until(&mut ws, |m| matches!(m, ServerMessage::Welcome { .. })).await.unwrap();
        send(&mut ws, &ClientMessage::Join { id: Some(2.into()), room: "grief".into(), accept_rules: Some(1), since: None }).await;
        until(&mut ws, |m| matches!(m, ServerMessage::Joined { .. })).await.unwrap();
        ws
    });
    // A fresh admin per case: a case may erase its own account (forget_me).
    let staff_case = AtomicUsize::new(0);
    let staff = || {
        let n = staff_case.fetch_add(1, Ordering::Relaxed);
        app.auth.staff_token(kindred_protocol::Role::Admin, &format!("Fuzz Admin {n}"), None, Duration::from_secs(3600))
    };
    let cases: u32 = std::env::var("KINDRED_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    // Few shrink steps: each failing step can cost SILENCE.
    let mut runner = TestRunner::new(RunConfig { cases, failure_persistence: None, max_shrink_iters: 64, ..RunConfig::default() });
    let frames = (any::<bool>(), proptest::collection::vec(frame(), 1..12));
    let result = runner.run(&frames, |(as_staff, frames)| {
        runtime.block_on(async {
            let mut ws = connect(addr).await;
            let token = as_staff.then(staff);
            send(&mut ws, &ClientMessage::Hello { id: Some(0.into()), token, handle: None, locale: Some("en".into()) }).await;
            // An earlier case may have erased the admin account (forget_me): then hello gets an error.
            until(&mut ws, |m| matches!(m, ServerMessage::Welcome { .. } | ServerMessage::Error(_)))
                .await
                .map_err(|c| TestCaseError::fail(format!("no answer to hello: {c:?}")))?;
            for frame in &frames {
                if ws.send(Message::text(frame.clone())).await.is_err() {
                    break; // closed by the server: fine, if with a protocol code (checked below)
                }
            }
            // A ping with a fresh id: its pong proves every frame before it was handled.
            let probe = ClientMessage::Ping { id: Some("probe".into()) };
            let _ = ws.send(Message::text(serde_json::to_string(&probe).unwrap())).await;
            match until(&mut ws, |m| matches!(m, ServerMessage::Pong { id: Some(kindred_protocol::RequestId::Str(s)) } if s == "probe")).await {
                Ok(()) => {}
                // Closed: only for a reason the protocol names.
                Err(Some(code)) if [1000, 1008, 1009, 4401, 4403, 4429].contains(&code) => {}
                Err(Some(0)) => return Err(TestCaseError::fail(format!("the server went silent after {frames:?}"))),
                Err(other) => return Err(TestCaseError::fail(format!("closed without a protocol code: {other:?} after {frames:?}"))),
            }
            let _ = ws.close(None).await;
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");
    runtime.block_on(async {
        // The bystander is still in the room and can talk.
        send(
            &mut bystander,
            &ClientMessage::Send { id: Some(9.into()), room: "grief".into(), text: "still here".into(), reply_to: None, cw: None, staff: false },
        )
        .await;
        until(&mut bystander, |m| matches!(m, ServerMessage::Sent { .. })).await.expect("the bystander was not disturbed");
    });
    app.shutdown.cancel();
    let _ = std::fs::remove_dir_all(dir);
}
