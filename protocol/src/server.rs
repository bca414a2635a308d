//! What the server sends: [`ServerMessage`] and the shapes inside it
//! (rooms, members, messages, reports, notices, errors).
//!
//! Why ~680 lines: it is every type the server sends, in docs/protocol.md's
//! order, so a client author reads the two side by side; each type is a
//! few lines of fields and their documentation.

use crate::Role;
use crate::errors::ErrorCode;
use crate::ids::{AccountId, AlertId, MemberId, MessageId, ReportId, RequestId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reaction counts by kind (`support`, `hug`, `same`); kinds with none are left out.
pub type ReactionCounts = BTreeMap<String, u32>;

/// Every frame the server sends, internally tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Private to its holder; never shown to anyone else.
        account: AccountId,
        handle: String,
        role: Role,
        /// Present it in a later `hello` to come back as the same member.
        session_token: String,
        /// The server pings this often; a client may `ping` at the same pace.
        heartbeat_s: u32,
        limits: Limits,
        server: ServerInfo,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Rooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        rooms: Vec<RoomSummary>,
    },
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomInfo,
        /// The joining member as the room sees it (its room-scoped id and handle).
        me: Member,
        members: Vec<Member>,
        history: Vec<ChatMessage>,
        epoch: String,
        /// The room's latest `seq` when the member joined.
        seq: u64,
        /// False when `since` could not be honoured and `history` is the latest window.
        recovered: bool,
    },
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    Presence {
        room: RoomId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        joined: Option<Member>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<MemberId>,
        member_count: u32,
    },
    Sent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        seq: u64,
    },
    Message(ChatMessage),
    Typing {
        room: RoomId,
        member_id: MemberId,
    },
    Reported {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        report_id: ReportId,
    },
    ReportFiled {
        room: RoomId,
        report: Report,
    },
    ReportResolved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        report_id: ReportId,
    },
    Hands {
        room: RoomId,
        queue: Vec<MemberId>,
    },
    Whispered {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Whisper {
        room: RoomId,
        from: Sender,
        to: MemberId,
        text: String,
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
        ts: String,
    },
    Moderated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    MessageDeleted {
        room: RoomId,
        message_id: MessageId,
    },
    MemberUpdate {
        room: RoomId,
        member: Member,
    },
    RoomUpdate {
        room: RoomId,
        info: RoomInfo,
    },
    Removed {
        room: RoomId,
        reason: RemovedReason,
        /// The facilitator's words, always given to the removed member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
        until: Option<String>,
    },
    /// To every connected staff connection whose scope covers the room,
    /// joined or not; open alerts are sent again after each `welcome`.
    Alert {
        room: RoomId,
        kind: AlertKind,
        message: ChatMessage,
        /// Stable across nodes and restarts; what `resolve_alert` names.
        alert_id: AlertId,
        /// When the alert was raised (RFC 3339).
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
        at: String,
        /// Staff connections it reached when it was raised.
        facilitators_alerted: u32,
    },
    /// The reply to `resolve_alert` (with `id`), and the event every other
    /// staff connection in scope gets (without).
    AlertResolved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        alert_id: AlertId,
        /// The resolver's display name.
        by: String,
    },
    /// The reply to `participation` (with `id`): every member present with
    /// how much they said since `since`, quietest first. Counts only, never text.
    Participation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        /// The start of the period counted (RFC 3339): the last 60 minutes.
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
        since: String,
        members: Vec<Participant>,
    },
    Notice(Notice),
    Forgotten {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// The reply to `unsend`: the message is gone from history.
    Unsent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
    },
    /// The reply to `react`.
    Reacted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
    },
    /// A message's reaction counts changed (anonymous: counts only).
    Reactions {
        room: RoomId,
        message_id: MessageId,
        counts: ReactionCounts,
    },
    Error(ErrorBody),
}

/// Limits announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// Lengths count Unicode scalar values (code points), not bytes or UTF-16 units.
    pub max_text_chars: u32,
    pub messages_per_10s: u32,
    /// The largest text frame the server reads, in bytes.
    #[serde(default)]
    pub max_frame_bytes: u32,
    #[serde(default)]
    pub max_handle_chars: u32,
    /// Rooms one connection may be in at once; one more join gets `forbidden`.
    #[serde(default)]
    pub max_rooms_per_connection: u32,
    /// The longest content warning (`cw`), in code points.
    #[serde(default)]
    pub max_cw_chars: u32,
    /// The reactions this server accepts, a subset of `support`, `hug`,
    /// `same`, in the order to show them; empty when they are turned off.
    #[serde(default)]
    pub reactions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServerInfo {
    pub version: String,
    pub node: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    AlwaysOpen,
    Scheduled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoomMode {
    /// Everyone may talk.
    #[default]
    Open,
    /// Only facilitators and the member holding the floor may send.
    Structured,
}

/// When a scheduled room's sessions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleInfo {
    /// IANA time zone the times are in, such as `Europe/London`.
    pub timezone: String,
    /// Days of the week, `mon` … `sun`.
    pub days: Vec<String>,
    /// Which weeks of the month (1–5; -1 is the last); empty means every week.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weeks_of_month: Vec<i8>,
    /// Local start time, `HH:MM`.
    pub start: String,
    /// Local end time, `HH:MM`.
    pub end: String,
    /// A sentence for people, such as "2nd and 4th Thursday of the month, 19:00–20:30 Europe/London".
    pub description: String,
    /// The start of the next session (RFC 3339, UTC); absent while one is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub next_open_at: Option<String>,
    /// When the running session ends (RFC 3339, UTC); present only while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub closes_at: Option<String>,
}

/// A room as listed in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoomSummary {
    pub id: RoomId,
    pub name: String,
    pub topic: String,
    pub description: String,
    pub tags: Vec<String>,
    pub language: String,
    pub kind: RoomKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    /// Whether a newcomer can join now: `false` while the room is locked,
    /// closed by its schedule, or full.
    pub open: bool,
    /// A facilitator locked the room: nobody new may join.
    #[serde(default)]
    pub locked: bool,
    pub capacity: u32,
    pub member_count: u32,
    pub mode: RoomMode,
    pub rules_version: u32,
    /// Members may join but not send until a facilitator is present.
    #[serde(default)]
    pub requires_facilitator: bool,
}

/// A room as seen by someone in it: the summary plus its live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoomInfo {
    #[serde(flatten)]
    pub summary: RoomSummary,
    /// The ground rules everyone accepted.
    pub rules: String,
    /// The facilitator's current topic or agenda.
    #[serde(default)]
    pub topic_now: Option<String>,
    pub slow_mode_s: u32,
    /// The pinned message, as in history (without reactions), or `null`.
    /// (Boxed: every `ServerMessage` is as big as its biggest variant.)
    #[serde(default)]
    pub pinned: Option<Box<ChatMessage>>,
    /// The facilitator's timed session, or `null`.
    #[serde(default)]
    pub session: Option<SessionInfo>,
}

/// A session a facilitator started (`start_session`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionInfo {
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
    pub started_at: String,
    /// When the facilitator planned to end it; the session stays until `end_session`.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
    pub ends_at: String,
    #[serde(default)]
    pub agenda: Option<String>,
}

/// Someone in a room, by its room-scoped id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Member {
    pub member_id: MemberId,
    pub handle: String,
    pub role: Role,
    #[serde(default)]
    pub muted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub muted_until: Option<String>,
    #[serde(default)]
    pub hand_raised: bool,
    #[serde(default)]
    pub has_floor: bool,
    /// Sent to the room's staff only: the room had not seen this member
    /// before this visit (within its history retention).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_time: bool,
}

/// Who wrote a message, as the room sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sender {
    pub member_id: MemberId,
    pub handle: String,
    pub role: Role,
}

/// A chat message: the body of a `message` frame and an entry of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChatMessage {
    pub room: RoomId,
    pub message_id: MessageId,
    pub seq: u64,
    pub from: Sender,
    pub text: String,
    /// When the server accepted it (RFC 3339, UTC, milliseconds).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
    pub ts: String,
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cw: Option<String>,
    /// A staff back-channel message, seen only by the room's facilitators.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staff: bool,
    /// Staff messages only: their own sequence in the room (increasing). A
    /// staff message keeps the `seq` of the room message before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_seq: Option<u64>,
    /// Reaction counts, when the message has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<ReactionCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Report {
    pub id: ReportId,
    pub message: ChatMessage,
    pub reason: String,
    /// The reporter's member id in the room.
    pub by: MemberId,
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Timestamp"))]
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    Kicked,
    Banned,
    /// The room closed (its session ended, or an admin closed it).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Crisis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Sent privately to a member whose message matched the crisis terms.
    CrisisResources,
    /// The text looked like an e-mail address, phone number or street address.
    PiiWarning,
    /// From a facilitator, to the sanctioned member alone.
    Warning,
    System,
    /// The server is going away: reconnect soon and resume.
    Shutdown,
}

/// A helpline or other resource offered with a `crisis_resources` notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Resource {
    pub name: String,
    pub contact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    pub kind: NoticeKind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<Resource>>,
    /// `crisis_resources` only: how many staff connections were told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitators_alerted: Option<u32>,
}

/// One member present in a `participation` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Participant {
    pub member_id: MemberId,
    pub handle: String,
    /// Messages to the room in the period (0: has not spoken yet).
    pub messages: u32,
    /// Their length, in code points.
    pub chars: u64,
    /// When the member last spoke in the period (RFC 3339); null if not.
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub last_at: Option<String>,
}

/// The body of an `error` frame. Fields past `retry_after_ms` appear only
/// with the codes that need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `rules_not_accepted`: the version to accept and its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// With `room_full`: open rooms on the same topic with space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternatives: Option<Vec<RoomSummary>>,
    /// With `room_closed`: when the room next opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub next_open_at: Option<String>,
    /// With `banned` and `muted`: when the sanction ends, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Timestamp>"))]
    pub until: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            id: None,
            code,
            message: message.into(),
            retry_after_ms: None,
            rules_version: None,
            rules: None,
            alternatives: None,
            next_open_at: None,
            until: None,
        }
    }

    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }

    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl ServerMessage {
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error(ErrorBody::new(code, message).with_id(id))
    }

    /// The request id a reply echoes; `None` for events (which never carry one).
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            ServerMessage::Welcome { id, .. }
            | ServerMessage::Pong { id }
            | ServerMessage::Rooms { id, .. }
            | ServerMessage::Joined { id, .. }
            | ServerMessage::Left { id, .. }
            | ServerMessage::Sent { id, .. }
            | ServerMessage::Reported { id, .. }
            | ServerMessage::ReportResolved { id, .. }
            | ServerMessage::Whispered { id }
            | ServerMessage::Moderated { id }
            | ServerMessage::AlertResolved { id, .. }
            | ServerMessage::Unsent { id, .. }
            | ServerMessage::Reacted { id, .. }
            | ServerMessage::Participation { id, .. }
            | ServerMessage::Forgotten { id } => id.as_ref(),
            ServerMessage::Error(e) => e.id.as_ref(),
            ServerMessage::Presence { .. }
            | ServerMessage::Message(_)
            | ServerMessage::Typing { .. }
            | ServerMessage::ReportFiled { .. }
            | ServerMessage::Hands { .. }
            | ServerMessage::Whisper { .. }
            | ServerMessage::MessageDeleted { .. }
            | ServerMessage::MemberUpdate { .. }
            | ServerMessage::RoomUpdate { .. }
            | ServerMessage::Removed { .. }
            | ServerMessage::Alert { .. }
            | ServerMessage::Reactions { .. }
            | ServerMessage::Notice(_) => None,
        }
    }

    /// The `type` tag, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, ModerationAction};

    #[test]
    fn moderate_flattens_its_action() {
        let json = r#"{"type":"moderate","id":9,"room":"grief","action":"mute","member_id":"m1","duration_s":600,"reason":"please pause"}"#;
        let msg: ClientMessage = serde_json::from_str(json).unwrap();
        match &msg {
            ClientMessage::Moderate { action: ModerationAction::Mute { duration_s, .. }, .. } => assert_eq!(*duration_s, Some(600)),
            other => panic!("parsed as {other:?}"),
        }
        let back: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(back["action"], "mute");
        assert_eq!(back["type"], "moderate");
        let lock: ClientMessage = serde_json::from_str(r#"{"type":"moderate","room":"grief","action":"lock"}"#).unwrap();
        assert!(matches!(lock, ClientMessage::Moderate { action: ModerationAction::Lock, .. }));
    }

    #[test]
    fn message_is_flat_with_its_type() {
        let msg = ServerMessage::Message(ChatMessage {
            room: "grief".into(),
            message_id: "x".into(),
            seq: 3,
            from: Sender { member_id: "m".into(), handle: "Quiet Heron 42".into(), role: Role::Member },
            text: "hello".into(),
            ts: "2026-11-22T20:01:02.123Z".into(),
            reply_to: None,
            cw: None,
            staff: false,
            staff_seq: None,
            reactions: None,
        });
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["seq"], 3);
        assert!(v["reply_to"].is_null());
        let back: ServerMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn request_ids_are_strings_or_integers() {
        let a: ClientMessage = serde_json::from_str(r#"{"type":"ping","id":"c7"}"#).unwrap();
        let b: ClientMessage = serde_json::from_str(r#"{"type":"ping","id":7}"#).unwrap();
        assert_eq!(a.id(), Some(&RequestId::Str("c7".into())));
        assert_eq!(b.id(), Some(&RequestId::Int(7)));
        assert!(!RequestId::Str("x".repeat(65)).is_valid());
    }

    #[test]
    fn unknown_types_are_rejected() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn close_codes_say_whether_to_reconnect() {
        assert!(crate::CloseCode::TooSlow.should_reconnect());
        assert!(crate::CloseCode::Restarting.should_reconnect());
        assert!(!crate::CloseCode::Banned.should_reconnect());
        assert_eq!(crate::CloseCode::from_code(4408), Some(crate::CloseCode::TooSlow));
    }
}
