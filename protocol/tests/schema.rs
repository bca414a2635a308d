//! Keeps `docs/protocol.schema.json` honest: it must be exactly what the
//! types generate, every example in `docs/protocol.md` and every frame the
//! types serialize must validate against it, and it must reject frames the
//! server refuses (so it is not trivially `true`).

mod support;

use jsonschema::{Draft, Validator};
use kindred_protocol::schema::{REGENERATE, document};
use kindred_protocol::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{Direction, doc, examples};

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.schema.json");

fn committed() -> Value {
    let text = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_else(|e| panic!("reading {SCHEMA_PATH}: {e}\nregenerate it with: {REGENERATE}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SCHEMA_PATH} is not JSON: {e}\nregenerate it with: {REGENERATE}"))
}

/// A validator for one definition of the committed schema, such as
/// `ClientMessage`, the way a client developer would use it. Formats are
/// asserted, so a `Timestamp` must really be an RFC 3339 time.
fn validator(root: &Value, def: &str) -> Validator {
    validator_at(root, &format!("#/$defs/{def}"))
}

/// A validator for the part of the committed schema at `pointer`.
fn validator_at(root: &Value, pointer: &str) -> Validator {
    let mut schema = root.clone();
    let object = schema.as_object_mut().expect("the schema is an object");
    object.remove("anyOf");
    object.insert("$ref".into(), json!(pointer));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{pointer} does not compile: {e}"))
}

/// Every reason `validator` gives for refusing `frame`, one line each.
fn errors(validator: &Validator, frame: &Value) -> Vec<String> {
    validator.iter_errors(frame).map(|e| format!("at {:?}: {e}", e.instance_path().as_str())).collect()
}

/// Why `frame` is not a valid `def`. A `oneOf` only says that no variant
/// matched, so the frame is also checked against the variant its `type`
/// names, which says which field is wrong.
fn explain(root: &Value, def: &str, validator: &Validator, frame: &Value) -> Vec<String> {
    let errors_for_def = errors(validator, frame);
    if errors_for_def.is_empty() {
        return errors_for_def;
    }
    let variant = root["$defs"][def]["oneOf"].as_array().and_then(|variants| variants.iter().position(|v| v["properties"]["type"]["const"] == frame["type"]));
    match variant {
        Some(i) => {
            let precise = errors(&validator_at(root, &format!("#/$defs/{def}/oneOf/{i}")), frame);
            if precise.is_empty() { errors_for_def } else { precise }
        }
        None => errors_for_def,
    }
}

/// The first place two JSON values differ, as a JSON pointer.
fn first_difference(path: String, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => first_difference(format!("{path}/{k}"), x, y),
                _ => Some(format!("{path}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (x, y))| first_difference(format!("{path}/{i}"), x, y))
        }
        _ => (a != b).then_some(if path.is_empty() { "/".to_owned() } else { path }),
    }
}

#[test]
fn committed_schema_is_what_the_types_generate() {
    let generated = document();
    let committed = committed();
    if let Some(at) = first_difference(String::new(), &committed, &generated) {
        panic!(
            "docs/protocol.schema.json is out of date with the kindred-protocol types (first difference at {at}).\n\
             Regenerate it from the repository root with:\n\n    {REGENERATE}\n"
        );
    }
}

#[test]
fn committed_schema_is_a_valid_draft_2020_12_schema() {
    let schema = committed();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("docs/protocol.schema.json is not a valid JSON Schema: {e}");
    }
    // Every reference resolves: building a validator follows them all.
    validator(&schema, "ClientMessage");
    validator(&schema, "ServerMessage");
}

#[test]
fn every_doc_example_validates() {
    let schema = committed();
    let client = validator(&schema, "ClientMessage");
    let server = validator(&schema, "ServerMessage");
    let doc = doc();
    let examples = examples(&doc);
    assert!(!examples.is_empty(), "no examples found in docs/protocol.md");
    let mut failures = Vec::new();
    for ex in &examples {
        let Ok(frame) = serde_json::from_str::<Value>(&ex.text) else {
            // Reported, with the parse error, by doc_examples.rs.
            continue;
        };
        let (validator, def) = match ex.direction {
            Direction::Client => (&client, "ClientMessage"),
            Direction::Server => (&server, "ServerMessage"),
        };
        let errors = explain(&schema, def, validator, &frame);
        if !errors.is_empty() {
            failures.push(format!("protocol.md line {}: not a valid {def}:\n  {}", ex.line, errors.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples in docs/protocol.md do not validate against docs/protocol.schema.json:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

/// The `type`s a definition's `oneOf` allows, read from the schema itself.
fn tags(schema: &Value, def: &str) -> BTreeSet<String> {
    schema["$defs"][def]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("#/$defs/{def} has no oneOf"))
        .iter()
        .map(|variant| variant["properties"]["type"]["const"].as_str().unwrap_or_else(|| panic!("a variant of {def} has no const type: {variant}")).to_owned())
        .collect()
}

/// The schema is generated from the types, so its list of `type`s is
/// complete by construction: each must be shown in the document.
#[test]
fn every_type_in_the_schema_has_a_doc_example() {
    let schema = committed();
    let doc = doc();
    let mut shown = [BTreeSet::new(), BTreeSet::new()];
    for ex in examples(&doc) {
        if let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(&ex.text) {
            if let Some(Value::String(tag)) = frame.get("type") {
                shown[(ex.direction == Direction::Server) as usize].insert(tag.clone());
            }
        }
    }
    let client = tags(&schema, "ClientMessage");
    let server = tags(&schema, "ServerMessage");
    assert!(client.len() >= 15 && server.len() >= 25, "the schema lost message types: {client:?} {server:?}");
    let listed: BTreeSet<String> = ClientMessage::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(client, listed, "ClientMessage::TYPES lists every client type, and only those");
    let missing_client: Vec<_> = client.difference(&shown[0]).collect();
    let missing_server: Vec<_> = server.difference(&shown[1]).collect();
    assert!(
        missing_client.is_empty() && missing_server.is_empty(),
        "docs/protocol.md has no example of:\n  client types: {missing_client:?}\n  server types: {missing_server:?}"
    );
}

fn member(id: &str, role: Role) -> Member {
    Member {
        member_id: id.into(),
        handle: "Quiet Heron 42".into(),
        role,
        muted: false,
        muted_until: None,
        hand_raised: false,
        has_floor: false,
        first_time: false,
    }
}

fn chat(seq: u64) -> ChatMessage {
    ChatMessage {
        room: "grief".into(),
        message_id: format!("m_{seq}").as_str().into(),
        seq,
        from: Sender { member_id: "mb_1".into(), handle: "Quiet Heron 42".into(), role: Role::Member },
        text: "It has been a hard week.".into(),
        ts: "2026-11-22T20:01:02.123Z".into(),
        reply_to: None,
        cw: None,
        staff: false,
        staff_seq: None,
        reactions: None,
    }
}

fn summary(kind: RoomKind) -> RoomSummary {
    RoomSummary {
        id: "grief".into(),
        name: "Grief and loss".into(),
        topic: "grief".into(),
        description: "For anyone who has lost someone.".into(),
        tags: vec!["grief".into()],
        language: "en".into(),
        kind,
        schedule: (kind == RoomKind::Scheduled).then(|| ScheduleInfo {
            timezone: "Europe/London".into(),
            days: vec!["thu".into()],
            weeks_of_month: vec![2, -1],
            start: "19:00".into(),
            end: "20:30".into(),
            description: "2nd and last Thursday of the month, 19:00–20:30 Europe/London".into(),
            next_open_at: Some("2026-12-10T19:00:00.000Z".into()),
            closes_at: None,
        }),
        open: true,
        locked: false,
        capacity: 40,
        member_count: 12,
        mode: RoomMode::Structured,
        rules_version: 3,
        requires_facilitator: true,
    }
}

/// Frames built from the Rust types, covering the shapes the document shows
/// least: every moderation action, optional fields set and unset, nested
/// rooms, schedules, reports and notices.
fn client_frames() -> Vec<ClientMessage> {
    let room = RoomId::from("grief");
    let actions = vec![
        ModerationAction::DeleteMessage { message_id: "m_1".into(), reason: Some("personal details".into()) },
        ModerationAction::Warn { member_id: "mb_2".into(), reason: "Please be kind.".into() },
        ModerationAction::Mute { member_id: "mb_2".into(), duration_s: Some(600), reason: None },
        ModerationAction::Unmute { member_id: "mb_2".into(), reason: None },
        ModerationAction::Kick { member_id: "mb_2".into(), reason: Some("spam".into()) },
        ModerationAction::Ban { member_id: "mb_2".into(), duration_s: None, reason: None, service: true },
        ModerationAction::Unban { member_id: "mb_2".into(), reason: None },
        ModerationAction::SlowMode { seconds: 0 },
        ModerationAction::Lock,
        ModerationAction::Unlock,
        ModerationAction::SetTopic { text: "Anniversaries".into() },
        ModerationAction::SetMode { mode: RoomMode::Open },
        ModerationAction::GiveFloor { member_id: "mb_2".into() },
        ModerationAction::EndFloor { member_id: None },
        ModerationAction::Pin { message_id: "m_1".into() },
        ModerationAction::Unpin,
        ModerationAction::StartSession { minutes: 90, agenda: Some("Check-in, then open sharing".into()) },
        ModerationAction::EndSession { note: None },
    ];
    let mut frames = vec![
        ClientMessage::Hello { id: None, token: None, handle: None, locale: None },
        ClientMessage::Hello { id: Some(RequestId::Int(i64::MIN)), token: Some("kst1.x".into()), handle: Some("Robin".into()), locale: Some("es-MX".into()) },
        ClientMessage::Join {
            id: Some("x".repeat(RequestId::MAX_LEN).as_str().into()),
            room: room.clone(),
            accept_rules: Some(3),
            since: Some(Position { epoch: "ep_1".into(), seq: 0 }),
        },
        ClientMessage::Send {
            id: Some(7.into()),
            room: room.clone(),
            text: "Hello".into(),
            reply_to: Some("m_1".into()),
            cw: Some("self-harm".into()),
            staff: true,
        },
        ClientMessage::Report { id: None, room: room.clone(), message_id: "m_1".into(), reason: String::new() },
        ClientMessage::Whisper { id: None, room: room.clone(), to: "mb_3".into(), text: "Are you okay?".into() },
        ClientMessage::ResolveReport { id: None, room: room.clone(), report_id: "r_1".into(), resolution: client::ReportResolution::Acted },
        ClientMessage::ResolveAlert { id: None, room: room.clone(), alert_id: "al_1".into(), note: Some("called back".into()) },
        ClientMessage::Unsend { id: None, room: room.clone(), message_id: "m_1".into() },
        ClientMessage::React { id: Some(3.into()), room: room.clone(), message_id: "m_1".into(), reaction: "hug".into(), on: false },
        ClientMessage::Participation { id: Some(4.into()), room: room.clone() },
        ClientMessage::ForgetMe { id: Some(i64::MAX.into()) },
    ];
    frames.extend(actions.into_iter().map(|action| ClientMessage::Moderate { id: Some(1.into()), room: room.clone(), action }));
    frames
}

fn server_frames() -> Vec<ServerMessage> {
    let room = RoomId::from("grief");
    let info = RoomInfo { summary: summary(RoomKind::Scheduled), rules: "Be kind.".into(), topic_now: None, slow_mode_s: 0, pinned: None, session: None };
    let mut pinned = chat(3);
    pinned.reactions = Some([("support".to_owned(), 2)].into());
    let running = RoomInfo {
        pinned: Some(Box::new(pinned.clone())),
        session: Some(SessionInfo { started_at: "2026-11-22T19:00:00.000Z".into(), ends_at: "2026-11-22T20:30:00.000Z".into(), agenda: None }),
        ..info.clone()
    };
    let mut newcomer = member("mb_4", Role::Member);
    newcomer.first_time = true;
    let mut muted = member("mb_2", Role::Member);
    muted.muted = true;
    muted.muted_until = Some("2026-11-22T20:11:02.123Z".into());
    let mut staff = chat(4);
    staff.staff = true;
    staff.staff_seq = Some(1);
    staff.reply_to = Some("m_3".into());
    staff.cw = Some("self-harm".into());
    let mut full = ErrorBody::new(ErrorCode::RoomFull, "The room is full.").with_id(Some("c1".into())).retry_after(500);
    full.alternatives = Some(vec![summary(RoomKind::AlwaysOpen)]);
    full.until = Some("2026-11-23T00:00:00.000Z".into());
    vec![
        ServerMessage::Welcome {
            id: Some(1.into()),
            account: "acc_1".into(),
            handle: "Quiet Heron 42".into(),
            role: Role::Facilitator,
            session_token: "kst1.x".into(),
            heartbeat_s: 30,
            limits: Limits {
                max_text_chars: 2000,
                messages_per_10s: 5,
                max_frame_bytes: 16384,
                max_handle_chars: 32,
                max_rooms_per_connection: 8,
                max_cw_chars: 40,
                reactions: vec!["support".into(), "hug".into()],
            },
            server: ServerInfo { version: "0.1.0".into(), node: "n1".into() },
        },
        ServerMessage::Rooms { id: None, rooms: vec![summary(RoomKind::AlwaysOpen), summary(RoomKind::Scheduled)] },
        ServerMessage::Joined {
            id: Some(2.into()),
            room: info.clone(),
            me: member("mb_1", Role::Member),
            members: vec![muted.clone()],
            history: vec![chat(1), staff.clone()],
            epoch: "ep_1".into(),
            seq: 1,
            recovered: false,
        },
        ServerMessage::Presence { room: room.clone(), joined: None, left: Some("mb_2".into()), member_count: 11 },
        ServerMessage::Message(staff.clone()),
        ServerMessage::ReportFiled {
            room: room.clone(),
            report: Report { id: "r_1".into(), message: chat(2), reason: String::new(), by: "mb_3".into(), at: "2026-11-22T20:02:00.000Z".into() },
        },
        ServerMessage::MemberUpdate { room: room.clone(), member: muted },
        ServerMessage::RoomUpdate { room: room.clone(), info },
        ServerMessage::RoomUpdate { room: room.clone(), info: running },
        ServerMessage::Message(pinned),
        ServerMessage::MemberUpdate { room: room.clone(), member: newcomer },
        ServerMessage::Unsent { id: Some(4.into()), room: room.clone(), message_id: "m_1".into() },
        ServerMessage::Reacted { id: None, room: room.clone(), message_id: "m_1".into() },
        ServerMessage::Reactions { room: room.clone(), message_id: "m_1".into(), counts: Default::default() },
        ServerMessage::Removed {
            room: room.clone(),
            reason: RemovedReason::Banned,
            note: Some("Take care.".into()),
            until: Some("2026-11-29T20:00:00.000Z".into()),
        },
        ServerMessage::Alert {
            room: room.clone(),
            kind: AlertKind::Crisis,
            message: chat(5),
            alert_id: "al_1".into(),
            at: "2026-11-22T20:03:00.000Z".into(),
            facilitators_alerted: 0,
        },
        ServerMessage::AlertResolved { id: None, room: room.clone(), alert_id: "al_1".into(), by: "Sam".into() },
        ServerMessage::Participation {
            id: Some(4.into()),
            room: room.clone(),
            since: "2026-11-22T19:01:02.123Z".into(),
            members: vec![
                Participant { member_id: "mb_2".into(), handle: "Still Lake 7".into(), messages: 0, chars: 0, last_at: None },
                Participant {
                    member_id: "mb_1".into(),
                    handle: "Quiet Heron 42".into(),
                    messages: 3,
                    chars: 120,
                    last_at: Some("2026-11-22T20:01:02.123Z".into()),
                },
            ],
        },
        ServerMessage::Notice(Notice {
            room: Some(room.clone()),
            kind: NoticeKind::CrisisResources,
            text: "You are not alone.".into(),
            resources: Some(vec![Resource { name: "Samaritans".into(), contact: "116 123".into(), url: None }]),
            facilitators_alerted: Some(2),
        }),
        ServerMessage::Error(full),
        ServerMessage::error(None, ErrorCode::Internal, "Something went wrong."),
    ]
}

#[test]
fn frames_from_the_types_validate() {
    let schema = committed();
    let client = validator(&schema, "ClientMessage");
    let server = validator(&schema, "ServerMessage");
    let root = jsonschema::options().should_validate_formats(true).build(&schema).expect("the root compiles");
    let mut failures = Vec::new();
    let frames = client_frames()
        .iter()
        .map(|m| (serde_json::to_value(m).unwrap(), &client, "ClientMessage"))
        .chain(server_frames().iter().map(|m| (serde_json::to_value(m).unwrap(), &server, "ServerMessage")))
        .collect::<Vec<_>>();
    for (frame, validator, def) in &frames {
        for e in explain(&schema, def, validator, frame).into_iter().chain(errors(&root, frame)) {
            failures.push(format!("{frame}\n  {e}"));
        }
    }
    assert!(failures.is_empty(), "frames serialized from the types do not validate:\n\n{}", failures.join("\n\n"));
}

/// Client frames the server refuses. Each must also fail to parse as a
/// `ClientMessage`, unless marked: then the server refuses it after parsing.
const BAD_CLIENT_FRAMES: &[(&str, &str, bool)] = &[
    ("no type", r#"{"id":1}"#, true),
    ("an unknown type", r#"{"type":"dance"}"#, true),
    ("a type that is not a string", r#"{"type":7}"#, true),
    ("send without room", r#"{"type":"send","text":"hi"}"#, true),
    ("send without text", r#"{"type":"send","room":"grief"}"#, true),
    ("a room that is a number", r#"{"type":"leave","room":5}"#, true),
    ("a fractional id", r#"{"type":"ping","id":1.5}"#, true),
    ("a boolean id", r#"{"type":"ping","id":true}"#, true),
    ("an id past i64", r#"{"type":"ping","id":9223372036854775808}"#, true),
    ("an id of 65 characters", r#"{"type":"ping","id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#, false),
    ("negative accept_rules", r#"{"type":"join","room":"grief","accept_rules":-1}"#, true),
    ("since without seq", r#"{"type":"join","room":"grief","since":{"epoch":"ep_1"}}"#, true),
    ("moderate without action", r#"{"type":"moderate","room":"grief"}"#, true),
    ("an unknown action", r#"{"type":"moderate","room":"grief","action":"shout"}"#, true),
    ("mute without member_id", r#"{"type":"moderate","room":"grief","action":"mute"}"#, true),
    ("set_mode with an unknown mode", r#"{"type":"moderate","room":"grief","action":"set_mode","mode":"silent"}"#, true),
    ("react without on", r#"{"type":"react","room":"grief","message_id":"m_1","reaction":"hug"}"#, true),
    ("start_session without minutes", r#"{"type":"moderate","room":"grief","action":"start_session"}"#, true),
    ("an unknown resolution", r#"{"type":"resolve_report","room":"grief","report_id":"r_1","resolution":"maybe"}"#, true),
];

/// Server frames the server never writes.
const BAD_SERVER_FRAMES: &[(&str, &str)] = &[
    ("an unknown type", r#"{"type":"dance"}"#),
    (
        "a message without reply_to, which is always written",
        r#"{"type":"message","room":"grief","message_id":"m_1","seq":1,"from":{"member_id":"mb_1","handle":"Robin","role":"member"},"text":"hi","ts":"2026-11-22T20:01:02.123Z"}"#,
    ),
    (
        "a message whose ts is not a time",
        r#"{"type":"message","room":"grief","message_id":"m_1","seq":1,"from":{"member_id":"mb_1","handle":"Robin","role":"member"},"text":"hi","ts":"yesterday","reply_to":null}"#,
    ),
    (
        "an unknown role",
        r#"{"type":"message","room":"grief","message_id":"m_1","seq":1,"from":{"member_id":"mb_1","handle":"Robin","role":"owner"},"text":"hi","ts":"2026-11-22T20:01:02.123Z","reply_to":null}"#,
    ),
    ("an error without code", r#"{"type":"error","message":"no"}"#),
    ("a negative seq", r#"{"type":"sent","room":"grief","message_id":"m_1","seq":-1}"#),
    ("presence without member_count", r#"{"type":"presence","room":"grief"}"#),
];

#[test]
fn the_schema_rejects_frames_the_server_refuses() {
    let schema = committed();
    let client = validator(&schema, "ClientMessage");
    let server = validator(&schema, "ServerMessage");
    let mut failures = Vec::new();
    for (why, text, unparseable) in BAD_CLIENT_FRAMES {
        let frame: Value = serde_json::from_str(text).expect("a test frame is JSON");
        if client.is_valid(&frame) {
            failures.push(format!("the schema accepts a client frame with {why}: {text}"));
        }
        match serde_json::from_value::<ClientMessage>(frame.clone()) {
            Ok(_) if *unparseable => failures.push(format!("ClientMessage parses a frame with {why}, so the test is wrong: {text}")),
            Ok(msg) => assert!(!msg.id().is_none_or(RequestId::is_valid), "{why}: the server would accept it"),
            Err(_) if !*unparseable => failures.push(format!("{why}: ClientMessage refuses it, mark it so: {text}")),
            Err(_) => {}
        }
    }
    for (why, text) in BAD_SERVER_FRAMES {
        let frame: Value = serde_json::from_str(text).expect("a test frame is JSON");
        if server.is_valid(&frame) {
            failures.push(format!("the schema accepts a server frame with {why}: {text}"));
        }
    }
    // Neither direction accepts what neither side sends.
    let root = jsonschema::options().build(&schema).expect("the root compiles");
    for text in [r#"{"type":"dance"}"#, r#"{}"#, r#"[]"#, r#""ping""#] {
        if root.is_valid(&serde_json::from_str(text).unwrap()) {
            failures.push(format!("the root schema accepts {text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_document_gives_the_command_that_regenerates_the_schema() {
    assert!(doc().contains(REGENERATE), "docs/protocol.md should say how to regenerate the schema: {REGENERATE}");
}
