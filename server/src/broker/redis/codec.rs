//! Everything one node publishes for the others, read and written here.
//!
//! On a room's channel:
//! - `M` `{epoch}\n{seq}\n{at_ms}\n{account JSON}\n{message JSON}`: a message
//!   the append script stored (server/src/lua/append.lua writes it). Lines,
//!   not a JSON envelope, so that Redis only concatenates strings on its one
//!   thread; the message JSON is the one the sender's node encoded.
//! - `E` `{envelope JSON}`: a room [`Event`] and the node it came from
//!   (`reactions` events are written by server/src/lua/react.lua, from
//!   [`reactions_event_prefix`]).
//!
//! On the control channel (written by the compare-and-set script,
//! server/src/lua/cas.lua, with the prefix it is given):
//! - `D` `{document}`: a new version of the moderation document;
//! - `R` `{document}`: a new version of the room directory.

use crate::hub::Event;
use crate::store::Document;
use kindred_protocol::{AccountId, ChatMessage};
use serde::{Deserialize, Serialize};

/// The prefix a new version of `doc` is published behind.
pub(crate) fn prefix_of(doc: Document) -> &'static str {
    match doc {
        Document::Moderation => "D",
        Document::Rooms => "R",
    }
}

/// A payload from another node (or this one: a node hears its own).
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    Message(Published<'a>),
    Event {
        node: String,
        event: Event,
    },
    /// A new version of a shared document (its text).
    Document(Document, &'a str),
}

/// A message as the append script published it.
#[derive(Debug)]
pub(crate) struct Published<'a> {
    pub epoch: &'a str,
    /// The script's seq; the message JSON carries none of its own.
    pub msg: ChatMessage,
    pub account: AccountId,
    /// When it was stored, in ms since the epoch (for retention).
    pub at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("a payload of an unknown kind")]
    Unknown,
    #[error("a published message is malformed")]
    Message,
    #[error("a room event could not be read: {0}")]
    Event(#[from] serde_json::Error),
}

/// A room change as it travels between nodes.
#[derive(Serialize, Deserialize)]
struct Envelope {
    n: String,
    #[serde(flatten)]
    e: Event,
}

/// What `node` publishes on a room's channel for `event`.
pub(crate) fn encode_event(node: &str, event: Event) -> String {
    let body = serde_json::to_string(&Envelope { n: node.to_owned(), e: event }).expect("events serialize");
    format!("E{body}")
}

/// The start of the `reactions` event the reaction script publishes for
/// `node`: the script appends the counts object and the closing brace.
pub(crate) fn reactions_event_prefix(node: &str, message_id: &kindred_protocol::MessageId) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
    format!(r#"E{{"n":{},"e":"reactions","message_id":{},"counts":"#, quoted(node), quoted(&message_id.0))
}

/// Read a payload from a room's channel.
pub(crate) fn decode_room(payload: &str) -> Result<Payload<'_>, DecodeError> {
    if let Some(rest) = payload.strip_prefix('M') {
        let mut parts = rest.splitn(5, '\n');
        let (Some(epoch), Some(seq), Some(at_ms), Some(account), Some(body)) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(DecodeError::Message);
        };
        let (Ok(seq), Ok(at_ms), Ok(account), Ok(mut msg)) =
            (seq.parse::<u64>(), at_ms.parse::<u64>(), serde_json::from_str::<AccountId>(account), serde_json::from_str::<ChatMessage>(body))
        else {
            return Err(DecodeError::Message);
        };
        msg.seq = seq;
        Ok(Payload::Message(Published { epoch, msg, account, at_ms }))
    } else if let Some(rest) = payload.strip_prefix('E') {
        let env: Envelope = serde_json::from_str(rest)?;
        Ok(Payload::Event { node: env.n, event: env.e })
    } else {
        Err(DecodeError::Unknown)
    }
}

/// Read a payload from the control channel.
pub(crate) fn decode_control(payload: &str) -> Result<Payload<'_>, DecodeError> {
    [Document::Moderation, Document::Rooms]
        .into_iter()
        .find_map(|doc| Some(Payload::Document(doc, payload.strip_prefix(prefix_of(doc))?)))
        .ok_or(DecodeError::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindred_protocol::MemberId;

    #[test]
    fn an_event_reads_back_with_its_node() {
        let event = Event::Left { member_id: MemberId::from("m_1") };
        let Ok(Payload::Event { node, event: Event::Left { member_id } }) = decode_room(&encode_event("node-a", event)) else { panic!("not read back") };
        assert_eq!((node.as_str(), member_id.0.as_str()), ("node-a", "m_1"));
    }

    #[test]
    fn a_message_reads_as_the_append_script_writes_it() {
        let body = r#"{"message_id":"g_1","room":"grief","from":{"member_id":"m_1","handle":"Quiet Heron 42","role":"member"},"text":"hi\nthere","ts":"2026-11-30T08:00:00.000Z","seq":0}"#;
        let payload = format!("M{}\n{}\n{}\n{}\n{}", "e1", 7, 1_764_489_600_000u64, r#""a_1""#, body);
        let Ok(Payload::Message(p)) = decode_room(&payload) else { panic!("not read") };
        assert_eq!((p.epoch, p.msg.seq, p.at_ms, p.account.0.as_str()), ("e1", 7, 1_764_489_600_000, "a_1"));
        assert_eq!(p.msg.text, "hi\nthere", "newlines inside the message JSON are escaped, so the body is read whole");
        assert!(matches!(decode_room("M1\n2\n3"), Err(DecodeError::Message)));
        assert!(matches!(decode_room("X"), Err(DecodeError::Unknown)));
    }

    #[test]
    fn a_reactions_event_reads_as_the_react_script_writes_it() {
        let payload = format!("{}{}{}", reactions_event_prefix("node-\"a\"", &"g_1".into()), r#"{"hug":2,"support":1}"#, "}");
        let Ok(Payload::Event { node, event: Event::Reactions { message_id, counts } }) = decode_room(&payload) else { panic!("not read: {payload}") };
        assert_eq!((node.as_str(), message_id.0.as_str()), ("node-\"a\"", "g_1"));
        assert_eq!(counts, [("hug".to_owned(), 2), ("support".to_owned(), 1)].into());
        let empty = format!("{}{{}}}}", reactions_event_prefix("n", &"g_2".into()));
        assert!(matches!(decode_room(&empty), Ok(Payload::Event { event: Event::Reactions { counts, .. }, .. }) if counts.is_empty()));
    }

    #[test]
    fn control_documents_are_told_apart_by_prefix() {
        assert!(matches!(decode_control(r#"D{"v":1}"#), Ok(Payload::Document(Document::Moderation, r#"{"v":1}"#))));
        assert!(matches!(decode_control(r#"R{"v":2}"#), Ok(Payload::Document(Document::Rooms, r#"{"v":2}"#))));
        assert!(matches!(decode_control("Q"), Err(DecodeError::Unknown)));
    }
}
