//! Why the hub refused a request, said once for people.
//!
//! The hub decides *what* happened (the room is full, slow mode is on) and
//! returns a [`Refusal`]; this module is the one place that turns it into
//! the contract's error: its code, the fields a client acts on, and the
//! text a member reads. Texts live here, not in the hub, so they can be
//! localised in one place.

use kindred_protocol::{ErrorBody, ErrorCode, RoomId, RoomSummary};

/// What a member is told when the facilitator gave no reason: on the
/// `removed` card, in the mute's `warning`, and when a refused join or send
/// repeats the sanction.
pub(crate) const KICKED: &str = "A facilitator asked you to leave this room for now.";
pub(crate) const BANNED: &str = "A facilitator removed you from this room.";
pub(crate) const MUTED: &str = "A facilitator has muted you for now.";
/// The room's `system` notice when a facilitator ends a session without a note.
pub(crate) const SESSION_ENDED: &str = "The session has ended. Thank you for being here.";

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
            Refusal::NoSuchRoom(room) => ErrorBody::new(ErrorCode::NotFound, format!("There is no room called '{room}'.")),
            Refusal::Closed { next_open_at } => {
                let mut e = ErrorBody::new(ErrorCode::RoomClosed, "This room is closed now. It opens again at the time shown.");
                e.next_open_at = next_open_at;
                e
            }
            Refusal::RulesNotAccepted { version, rules } => {
                let mut e = ErrorBody::new(ErrorCode::RulesNotAccepted, "Please read the room's ground rules, then join again with accept_rules.");
                e.rules_version = Some(version);
                e.rules = Some(rules);
                e
            }
            Refusal::Locked => ErrorBody::new(ErrorCode::RoomLocked, "This room is not taking new members right now."),
            Refusal::Full { alternatives } => {
                let mut e = ErrorBody::new(ErrorCode::RoomFull, "This room is full. These rooms on the same topic have space.");
                e.alternatives = Some(alternatives);
                e
            }
            Refusal::NotMember => ErrorBody::new(ErrorCode::NotMember, "Join the room before sending to it."),
            Refusal::StaffOnly => ErrorBody::new(ErrorCode::Forbidden, "Only facilitators can use the staff channel."),
            Refusal::WaitingForFacilitator => {
                ErrorBody::new(ErrorCode::WaitingForFacilitator, "A facilitator will open the conversation soon. You can read along until then.")
            }
            Refusal::NotYourTurn => ErrorBody::new(ErrorCode::NotYourTurn, "Raise your hand and a facilitator will give you the floor."),
            Refusal::SlowMode { retry_after_ms } => {
                ErrorBody::new(ErrorCode::SlowMode, "Slow mode is on: take a breath, then send again.").retry_after(retry_after_ms)
            }
            Refusal::EmptyText => ErrorBody::new(ErrorCode::BadRequest, "A message needs some text."),
            Refusal::TooLong { chars, max } => ErrorBody::new(ErrorCode::TooLarge, format!("Messages can be up to {max} characters; this one has {chars}.")),
            Refusal::WarningTooLong { max } => ErrorBody::new(ErrorCode::BadRequest, format!("A content warning can be up to {max} characters.")),
            Refusal::NotAMessageId => ErrorBody::new(ErrorCode::BadRequest, "reply_to is not a message id."),
            Refusal::Blocked => ErrorBody::new(ErrorCode::ContentBlocked, "This message can't be posted here: it contains words this community doesn't allow."),
            Refusal::PersonalDetails { kind } => ErrorBody::new(
                ErrorCode::ContentBlocked,
                format!("This message wasn't posted: it looks like it contains {kind}. To keep you and others safe, please don't share contact details here."),
            ),
        }
    }
}
