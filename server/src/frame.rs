//! A frame as the hub hands it to connections: encoded once, its bytes
//! shared by every mailbox it is queued in.

use kindred_protocol::{ChatMessage, ServerMessage};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded frame, shared by every mailbox it is queued in.
pub(crate) type Frame = Utf8Bytes;

/// Encode a server frame once.
pub(crate) fn encode(msg: &ServerMessage) -> Frame {
    // Serializing our own types into a String cannot fail.
    Utf8Bytes::from(serde_json::to_string(msg).expect("protocol types serialize"))
}

/// Encode a chat message as a `message` frame without cloning it.
pub(crate) fn encode_message(msg: &ChatMessage) -> Frame {
    let body = serde_json::to_string(msg).expect("protocol types serialize");
    // `body` is a JSON object: splice the tag in after its opening brace.
    let mut frame = String::with_capacity(body.len() + 18);
    frame.push_str("{\"type\":\"message\",");
    frame.push_str(&body[1..]);
    Utf8Bytes::from(frame)
}
