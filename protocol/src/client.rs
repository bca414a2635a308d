//! What a client sends: [`ClientMessage`], one JSON object per text frame,
//! internally tagged by `"type"`.

use crate::ids::{AlertId, MemberId, MessageId, Position, ReportId, RequestId, RoomId};
use crate::moderation::ModerationAction;
use serde::{Deserialize, Serialize};

/// Every request a client can make. Each may carry an `id`, echoed by the reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Must be the first frame. No `token`: a new anonymous member. A
    /// `session_token` from an earlier `welcome`: the same member again. A
    /// facilitator or admin JWT: that role.
    Hello {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handle: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locale: Option<String>,
    },
    /// Application-level keep-alive for clients that cannot send WebSocket pings.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    ListRooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        /// The `rules_version` the member has read and accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accept_rules: Option<u32>,
        /// Resume: every message after this point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
    },
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        /// A content-warning tag such as `self-harm`; clients fold the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cw: Option<String>,
        /// Facilitators only: a back-channel message seen only by the room's staff.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        staff: bool,
    },
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    Report {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        #[serde(default)]
        reason: String,
    },
    RaiseHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    /// A private message; allowed only when one side is a facilitator of the room.
    Whisper {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        to: MemberId,
        text: String,
    },
    /// A moderation action in a room; facilitators of that room and admins only.
    Moderate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        #[serde(flatten)]
        action: ModerationAction,
    },
    /// Facilitators: close an open report, dismissed or acted upon.
    ResolveReport {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        report_id: ReportId,
        resolution: ReportResolution,
    },
    /// Staff in scope: close an open crisis alert (`alert_resolved`).
    ResolveAlert {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        alert_id: AlertId,
        /// Kept in the audit log, never sent to the member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The author takes back one of its own messages (`unsent`); the room
    /// gets `message_deleted`, as for a facilitator's delete.
    Unsend {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
    },
    /// An anonymous quiet reaction to a message (`reacted`); `on: false` takes
    /// it back. The room gets `reactions` with the counts.
    React {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        /// One of `support`, `hug`, `same` (the operator may allow fewer).
        reaction: String,
        /// `true` adds the reaction, `false` takes it back.
        on: bool,
    },
    /// Staff in scope: who has spoken in the room lately, as counts only
    /// (the `participation` reply).
    Participation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomId,
    },
    /// Remove every message this account wrote and end the account.
    ForgetMe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
}

/// How a facilitator closed a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportResolution {
    Dismissed,
    Acted,
}

/// `$body` with `$id` bound to the `id` field of whichever request `$frame`
/// is (by reference or mutably, as `$frame` is borrowed).
macro_rules! with_id {
    ($frame:expr, $id:ident => $body:expr) => {
        match $frame {
            ClientMessage::Hello { id: $id, .. }
            | ClientMessage::Ping { id: $id }
            | ClientMessage::ListRooms { id: $id }
            | ClientMessage::Join { id: $id, .. }
            | ClientMessage::Leave { id: $id, .. }
            | ClientMessage::Send { id: $id, .. }
            | ClientMessage::Typing { id: $id, .. }
            | ClientMessage::Report { id: $id, .. }
            | ClientMessage::RaiseHand { id: $id, .. }
            | ClientMessage::LowerHand { id: $id, .. }
            | ClientMessage::Whisper { id: $id, .. }
            | ClientMessage::Moderate { id: $id, .. }
            | ClientMessage::ResolveReport { id: $id, .. }
            | ClientMessage::ResolveAlert { id: $id, .. }
            | ClientMessage::Unsend { id: $id, .. }
            | ClientMessage::React { id: $id, .. }
            | ClientMessage::Participation { id: $id, .. }
            | ClientMessage::ForgetMe { id: $id } => $body,
        }
    };
}

impl ClientMessage {
    /// Every `type` a client may send, in the order of the variants (what
    /// [`ClientMessage::kind`] returns; the schema test checks they agree).
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "ping",
        "list_rooms",
        "join",
        "leave",
        "send",
        "typing",
        "report",
        "raise_hand",
        "lower_hand",
        "whisper",
        "moderate",
        "resolve_report",
        "resolve_alert",
        "unsend",
        "react",
        "participation",
        "forget_me",
    ];

    /// The request id, echoed by every reply.
    pub fn id(&self) -> Option<&RequestId> {
        with_id!(self, id => id.as_ref())
    }

    /// Give the request an id (a client library numbering its requests).
    pub fn set_id(&mut self, new: Option<RequestId>) {
        with_id!(self, id => *id = new)
    }

    /// The `type` tag, for errors and metrics (never logs of content).
    pub fn kind(&self) -> &'static str {
        match self {
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
}

/// The least a frame must look like for the server to answer it: used only
/// when a frame does not parse as a [`ClientMessage`], to echo its `id` in
/// the `error`.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<RequestId>,
}
