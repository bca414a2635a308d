//! Why the hub refused a request, said once for people.
//!
//! The hub decides *what* happened (the room is full, slow mode is on) and
//! returns a [`Refusal`]; this module is the one place that turns it into
//! the contract's error: its code, the fields a client acts on, and the
//! text a member reads, from the catalogue in the connection's language
//! (`texts`).

use crate::texts::{f, t};
use kindred_protocol::{ErrorBody, ErrorCode, RoomId, RoomSummary};

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No room has this id.
    NoSuchRoom(RoomId),
    /// Closed by its schedule; it opens again then (RFC 3339), if ever.
    Closed { next_open_at: Option<String> },
    /// The member has not accepted this version of the ground rules.
    RulesNotAccepted { version: u32, rules: String },
    /// A facilitator locked the room to newcomers.
    Locked,
    /// At capacity; open rooms on the same topic with space.
    Full { alternatives: Vec<RoomSummary> },
    /// A send to a room the connection has not joined.
    NotMember,
    /// A member tried the staff back-channel.
    StaffOnly,
    /// The room needs a facilitator present before members write.
    WaitingForFacilitator,
    /// Structured mode, and someone else has the floor.
    NotYourTurn,
    /// Slow mode: the member may send again after this many milliseconds.
    SlowMode { retry_after_ms: u64 },
    /// A message with no text (only white space).
    EmptyText,
    /// A message over `max` characters (Unicode scalar values).
    TooLong { chars: usize, max: u32 },
    /// A content warning over `max` characters.
    WarningTooLong { max: u32 },
    /// A `reply_to` that cannot be a message id.
    NotAMessageId,
    /// Words the operator's blocklist holds.
    Blocked,
    /// Personal details where the room blocks them: `kind` says which, for people.
    PersonalDetails { kind: &'static str },
}

impl From<Refusal> for ErrorBody {
    fn from(refusal: Refusal) -> ErrorBody {
        match refusal {
            Refusal::NoSuchRoom(room) => ErrorBody::new(ErrorCode::NotFound, f("no-such-room", &[("room", &room)])),
            Refusal::Closed { next_open_at } => {
                let mut e = ErrorBody::new(ErrorCode::RoomClosed, t("room-closed"));
                e.next_open_at = next_open_at;
                e
            }
            Refusal::RulesNotAccepted { version, rules } => {
                let mut e = ErrorBody::new(ErrorCode::RulesNotAccepted, t("rules-not-accepted"));
                e.rules_version = Some(version);
                e.rules = Some(rules);
                e
            }
            Refusal::Locked => ErrorBody::new(ErrorCode::RoomLocked, t("room-locked")),
            Refusal::Full { alternatives } => {
                let mut e = ErrorBody::new(ErrorCode::RoomFull, t("room-full"));
                e.alternatives = Some(alternatives);
                e
            }
            Refusal::NotMember => ErrorBody::new(ErrorCode::NotMember, t("not-member")),
            Refusal::StaffOnly => ErrorBody::new(ErrorCode::Forbidden, t("staff-only")),
            Refusal::WaitingForFacilitator => ErrorBody::new(ErrorCode::WaitingForFacilitator, t("waiting-for-facilitator")),
            Refusal::NotYourTurn => ErrorBody::new(ErrorCode::NotYourTurn, t("not-your-turn")),
            Refusal::SlowMode { retry_after_ms } => ErrorBody::new(ErrorCode::SlowMode, t("slow-mode")).retry_after(retry_after_ms),
            Refusal::EmptyText => ErrorBody::new(ErrorCode::BadRequest, t("empty-text")),
            Refusal::TooLong { chars, max } => ErrorBody::new(ErrorCode::TooLarge, f("too-long", &[("max", &max), ("chars", &chars)])),
            Refusal::WarningTooLong { max } => ErrorBody::new(ErrorCode::BadRequest, f("warning-too-long", &[("max", &max)])),
            Refusal::NotAMessageId => ErrorBody::new(ErrorCode::BadRequest, t("not-a-message-id")),
            Refusal::Blocked => ErrorBody::new(ErrorCode::ContentBlocked, t("blocked")),
            Refusal::PersonalDetails { kind } => ErrorBody::new(ErrorCode::ContentBlocked, f("personal-details", &[("kind", &crate::texts::pii_kind(kind))])),
        }
    }
}
