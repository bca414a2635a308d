//! Keeps `docs/protocol.md` honest: every ```json client / ```json server
//! example must parse as a `ClientMessage` / `ServerMessage` and serialize
//! back to exactly the same JSON, every message type and moderation action
//! must have an example, and the error-code and close-code tables must say
//! what `is_retryable` and `should_reconnect` say.

mod support;

use kindred_protocol::{ClientMessage, CloseCode, ErrorCode, ModerationAction, ServerMessage};
use serde_json::Value;
use std::collections::BTreeSet;
use support::{DOC_PATH, Direction, Example, doc, examples};

/// Every `type` a client may send. Adding a `ClientMessage` variant breaks
/// the exhaustive match in `client_name` below: add it there, here, and to
/// the document.
const CLIENT_TYPES: &[&str] = ClientMessage::TYPES;

/// Every `type` the server may send (see `server_name`).
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "pong",
    "rooms",
    "joined",
    "left",
    "presence",
    "sent",
    "message",
    "typing",
    "reported",
    "report_filed",
    "report_resolved",
    "hands",
    "whispered",
    "whisper",
    "moderated",
    "message_deleted",
    "member_update",
    "room_update",
    "removed",
    "alert",
    "participation",
    "notice",
    "forgotten",
    "unsent",
    "reacted",
    "reactions",
    "error",
];

/// Every `action` of `moderate` (see `action_name`).
const MODERATION_ACTIONS: &[&str] = &[
    "delete_message",
    "warn",
    "mute",
    "unmute",
    "kick",
    "ban",
    "unban",
    "slow_mode",
    "lock",
    "unlock",
    "set_topic",
    "set_mode",
    "give_floor",
    "end_floor",
    "pin",
    "unpin",
    "start_session",
    "end_session",
];

// The guards below have no wildcard arm on purpose: a new variant fails to
// compile here until it is added to the lists above (and so to the document).

fn client_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Hello { .. } => "hello",
        ClientMessage::Ping { .. } => "ping",
        ClientMessage::ListRooms { .. } => "list_rooms",
        ClientMessage::Join { .. } => "join",
        ClientMessage::Leave { .. } => "leave",
        ClientMessage::Send { .. } => "send",
        ClientMessage::Typing { .. } => "typing",
        ClientMessage::Report { .. } => "report",
        ClientMessage::RaiseHand { .. } => "raise_hand",
        ClientMessage::LowerHand { .. } => "lower_hand",
        ClientMessage::Whisper { .. } => "whisper",
        ClientMessage::Moderate { .. } => "moderate",
        ClientMessage::ResolveReport { .. } => "resolve_report",
        ClientMessage::ResolveAlert { .. } => "resolve_alert",
        ClientMessage::Unsend { .. } => "unsend",
        ClientMessage::React { .. } => "react",
        ClientMessage::Participation { .. } => "participation",
        ClientMessage::ForgetMe { .. } => "forget_me",
    }
}

fn server_name(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Welcome { .. } => "welcome",
        ServerMessage::Pong { .. } => "pong",
        ServerMessage::Rooms { .. } => "rooms",
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Left { .. } => "left",
        ServerMessage::Presence { .. } => "presence",
        ServerMessage::Sent { .. } => "sent",
        ServerMessage::Message(_) => "message",
        ServerMessage::Typing { .. } => "typing",
        ServerMessage::Reported { .. } => "reported",
        ServerMessage::ReportFiled { .. } => "report_filed",
        ServerMessage::ReportResolved { .. } => "report_resolved",
        ServerMessage::Hands { .. } => "hands",
        ServerMessage::Whispered { .. } => "whispered",
        ServerMessage::Whisper { .. } => "whisper",
        ServerMessage::Moderated { .. } => "moderated",
        ServerMessage::MessageDeleted { .. } => "message_deleted",
        ServerMessage::MemberUpdate { .. } => "member_update",
        ServerMessage::RoomUpdate { .. } => "room_update",
        ServerMessage::Removed { .. } => "removed",
        ServerMessage::Alert { .. } => "alert",
        ServerMessage::AlertResolved { .. } => "alert_resolved",
        ServerMessage::Participation { .. } => "participation",
        ServerMessage::Notice(_) => "notice",
        ServerMessage::Forgotten { .. } => "forgotten",
        ServerMessage::Unsent { .. } => "unsent",
        ServerMessage::Reacted { .. } => "reacted",
        ServerMessage::Reactions { .. } => "reactions",
        ServerMessage::Error(_) => "error",
    }
}

fn action_name(a: &ModerationAction) -> &'static str {
    match a {
        ModerationAction::DeleteMessage { .. } => "delete_message",
        ModerationAction::Warn { .. } => "warn",
        ModerationAction::Mute { .. } => "mute",
        ModerationAction::Unmute { .. } => "unmute",
        ModerationAction::Kick { .. } => "kick",
        ModerationAction::Ban { .. } => "ban",
        ModerationAction::Unban { .. } => "unban",
        ModerationAction::SlowMode { .. } => "slow_mode",
        ModerationAction::Lock => "lock",
        ModerationAction::Unlock => "unlock",
        ModerationAction::SetTopic { .. } => "set_topic",
        ModerationAction::SetMode { .. } => "set_mode",
        ModerationAction::GiveFloor { .. } => "give_floor",
        ModerationAction::EndFloor { .. } => "end_floor",
        ModerationAction::Pin { .. } => "pin",
        ModerationAction::Unpin => "unpin",
        ModerationAction::StartSession { .. } => "start_session",
        ModerationAction::EndSession { .. } => "end_session",
    }
}

/// What an example is, once checked: its `type`, and for `moderate` its `action`.
struct Checked {
    direction: Direction,
    kind: &'static str,
    action: Option<&'static str>,
}

fn check(ex: &Example) -> Result<Checked, String> {
    let at = format!("protocol.md line {} ({:?} example)", ex.line, ex.direction);
    let original: Value = serde_json::from_str(&ex.text).map_err(|e| format!("{at}: not one valid JSON value: {e}"))?;
    let tag = original
        .as_object()
        .ok_or_else(|| format!("{at}: not a JSON object"))?
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}: no string \"type\""))?
        .to_owned();
    let (reserialized, kind, action) = match ex.direction {
        Direction::Client => {
            let msg: ClientMessage = serde_json::from_str(&ex.text).map_err(|e| format!("{at}: does not parse as ClientMessage: {e}"))?;
            if client_name(&msg) != msg.kind() {
                return Err(format!("{at}: ClientMessage::kind() says {:?}, expected {:?}", msg.kind(), client_name(&msg)));
            }
            let action = match &msg {
                ClientMessage::Moderate { action, .. } => {
                    if action.name() != action_name(action) {
                        return Err(format!("{at}: ModerationAction::name() says {:?}, expected {:?}", action.name(), action_name(action)));
                    }
                    Some(action_name(action))
                }
                _ => None,
            };
            let value = serde_json::to_value(&msg).map_err(|e| format!("{at}: does not serialize: {e}"))?;
            (value, client_name(&msg), action)
        }
        Direction::Server => {
            let msg: ServerMessage = serde_json::from_str(&ex.text).map_err(|e| format!("{at}: does not parse as ServerMessage: {e}"))?;
            if server_name(&msg) != msg.kind() {
                return Err(format!("{at}: ServerMessage::kind() says {:?}, expected {:?}", msg.kind(), server_name(&msg)));
            }
            let value = serde_json::to_value(&msg).map_err(|e| format!("{at}: does not serialize: {e}"))?;
            (value, server_name(&msg), None)
        }
    };
    if tag != kind {
        return Err(format!("{at}: \"type\" is {tag:?} but it parsed as {kind:?}"));
    }
    if reserialized != original {
        return Err(format!(
            "{at}: serializing it again gives different JSON\n  in the document: {}\n  re-serialized:   {}",
            serde_json::to_string(&original).unwrap_or_default(),
            serde_json::to_string(&reserialized).unwrap_or_default(),
        ));
    }
    Ok(Checked { direction: ex.direction, kind, action })
}

#[test]
fn every_example_round_trips() {
    let doc = doc();
    let examples = examples(&doc);
    assert!(!examples.is_empty(), "no ```json client / ```json server examples in {DOC_PATH}");
    let failures: Vec<String> = examples.iter().filter_map(|ex| check(ex).err()).collect();
    assert!(failures.is_empty(), "{} of {} examples in docs/protocol.md are wrong:\n\n{}", failures.len(), examples.len(), failures.join("\n\n"));
}

#[test]
fn every_message_type_and_action_has_an_example() {
    let doc = doc();
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    let mut actions = BTreeSet::new();
    for ex in examples(&doc) {
        // A broken example is reported by `every_example_round_trips`.
        let Ok(c) = check(&ex) else { continue };
        match c.direction {
            Direction::Client => client.insert(c.kind),
            Direction::Server => server.insert(c.kind),
        };
        if let Some(a) = c.action {
            actions.insert(a);
        }
    }
    let missing = |all: &[&'static str], seen: &BTreeSet<&'static str>| -> Vec<&'static str> { all.iter().copied().filter(|n| !seen.contains(n)).collect() };
    let missing_client = missing(CLIENT_TYPES, &client);
    let missing_server = missing(SERVER_TYPES, &server);
    let missing_actions = missing(MODERATION_ACTIONS, &actions);
    assert!(
        missing_client.is_empty() && missing_server.is_empty() && missing_actions.is_empty(),
        "docs/protocol.md lacks a valid example of:\n  client types: {missing_client:?}\n  server types: {missing_server:?}\n  moderation actions: {missing_actions:?}"
    );
}

/// The rows of the first table after the heading `heading`, as
/// (line number, cells), with the header's cells first. Stops at the next heading.
fn table_after(doc: &str, heading: &str) -> (Vec<String>, Vec<(usize, Vec<String>)>) {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == heading).unwrap_or_else(|| panic!("docs/protocol.md has no heading {heading:?}"));
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let line = line.trim();
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            if header.is_some() {
                break;
            }
            continue;
        }
        let cells: Vec<String> = line.trim_start_matches('|').trim_end_matches('|').split('|').map(|c| c.trim().to_owned()).collect();
        if header.is_none() {
            header = Some(cells);
        } else if !cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            rows.push((i + 1, cells));
        }
    }
    (header.unwrap_or_else(|| panic!("no table after {heading:?}")), rows)
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("table header {header:?} has no column {name:?}"))
}

/// `yes` or `no` as the first word of a cell.
fn yes_no(cell: &str, line: usize) -> bool {
    let word: String = cell.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    match word.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!("protocol.md line {line}: {cell:?} should start with yes or no"),
    }
}

#[test]
fn error_table_matches_is_retryable() {
    let doc = doc();
    let (header, rows) = table_after(&doc, "### Error codes");
    let retry = column(&header, "retry helps?");
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (line, cells) in rows {
        let name = cells[0].trim_matches('`');
        let code: ErrorCode = match serde_json::from_value(Value::String(name.to_owned())) {
            Ok(c) => c,
            Err(_) => {
                failures.push(format!("protocol.md line {line}: {name:?} is not an ErrorCode"));
                continue;
            }
        };
        if seen.contains(&code) {
            failures.push(format!("protocol.md line {line}: {name:?} is listed twice"));
        }
        seen.push(code);
        let documented = yes_no(&cells[retry], line);
        if documented != code.is_retryable() {
            failures.push(format!("protocol.md line {line}: {name:?} says retry helps = {documented}, is_retryable() = {}", code.is_retryable()));
        }
    }
    for code in &ErrorCode::ALL {
        if !seen.contains(code) {
            failures.push(format!("the error-code table lacks {:?}", code.as_str()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn close_code_table_matches_should_reconnect() {
    let doc = doc();
    let (header, rows) = table_after(&doc, "## Close codes");
    let reconnect = column(&header, "reconnect?");
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (line, cells) in rows {
        let text = cells[0].trim_matches('`');
        let Some(code) = text.parse::<u16>().ok().and_then(CloseCode::from_code) else {
            failures.push(format!("protocol.md line {line}: {text:?} is not a CloseCode"));
            continue;
        };
        seen.push(code);
        let documented = yes_no(&cells[reconnect], line);
        if documented != code.should_reconnect() {
            failures.push(format!("protocol.md line {line}: {} says reconnect = {documented}, should_reconnect() = {}", code.code(), code.should_reconnect()));
        }
    }
    for code in (0..=u16::MAX).filter_map(CloseCode::from_code) {
        if !seen.contains(&code) {
            failures.push(format!("the close-code table lacks {}", code.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
