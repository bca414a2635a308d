//! The `action` of a `moderate` request and its fields. Flattened into the
//! request, so `{"type":"moderate","room":"grief","action":"mute","member_id":"…"}`.

use crate::ids::{MemberId, MessageId};
use crate::server::RoomMode;
use serde::{Deserialize, Serialize};

/// Every moderation action of the contract. Durations are in seconds; an
/// absent `duration_s` means until lifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ModerationAction {
    DeleteMessage {
        message_id: MessageId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Warn {
        member_id: MemberId,
        reason: String,
    },
    Mute {
        member_id: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Unmute {
        member_id: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Kick {
        member_id: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Ban {
        member_id: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Admins only: ban the account from the whole service, not just this room.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        service: bool,
    },
    Unban {
        member_id: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    SlowMode {
        /// Seconds between two messages of one member; 0 turns slow mode off.
        seconds: u32,
    },
    Lock,
    Unlock,
    SetTopic {
        text: String,
    },
    SetMode {
        mode: RoomMode,
    },
    GiveFloor {
        member_id: MemberId,
    },
    EndFloor {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member_id: Option<MemberId>,
    },
    /// Show one message of the history at the top of the room (`info.pinned`).
    Pin {
        message_id: MessageId,
    },
    Unpin,
    /// Start a timed session (`info.session`).
    StartSession {
        /// 5–240.
        minutes: u32,
        /// Up to 500 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agenda: Option<String>,
    },
    /// End the session; the room gets a `system` notice with the note.
    EndSession {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl ModerationAction {
    /// The `action` tag, for the audit log and metrics.
    pub fn name(&self) -> &'static str {
        match self {
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
}
