//! Error codes carried by `error` frames and WebSocket close codes, each
//! saying whether retrying (or reconnecting) can help.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` frame. An error never closes the connection
/// unless the protocol itself is broken or the member is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a valid request (bad JSON, unknown `type`, bad field).
    BadRequest,
    /// The client asked for a protocol version this server does not speak.
    UnsupportedVersion,
    /// The token is missing, forged, expired or for another audience.
    Unauthorized,
    /// The role or room scope does not allow this.
    Forbidden,
    /// No such room, member, message or report.
    NotFound,
    /// The request needs the member to have joined the room first.
    NotMember,
    /// The room's current ground rules must be accepted (`accept_rules`).
    RulesNotAccepted,
    /// The room is at capacity; `alternatives` lists rooms with space.
    RoomFull,
    /// A scheduled room outside its session; `next_open_at` says when.
    RoomClosed,
    /// The room takes no new joins right now.
    RoomLocked,
    Banned,
    Muted,
    /// Too many messages; wait `retry_after_ms`.
    RateLimited,
    /// Slow mode is on; wait `retry_after_ms`.
    SlowMode,
    /// The text or frame is longer than the limits in `welcome`.
    TooLarge,
    /// Structured mode: only facilitators and the member holding the floor may send.
    NotYourTurn,
    /// The room needs a facilitator present before members may send.
    WaitingForFacilitator,
    /// The text matched the operator's blocklist or blocked personal details.
    ContentBlocked,
    /// The wished-for handle is not allowed (length, characters, contact details).
    InvalidHandle,
    /// The server is shedding load; retry after `retry_after_ms`.
    Overloaded,
    /// A dependency (such as Redis) is unreachable; nothing was accepted, retry.
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NotMember,
        ErrorCode::RulesNotAccepted,
        ErrorCode::RoomFull,
        ErrorCode::RoomClosed,
        ErrorCode::RoomLocked,
        ErrorCode::Banned,
        ErrorCode::Muted,
        ErrorCode::RateLimited,
        ErrorCode::SlowMode,
        ErrorCode::TooLarge,
        ErrorCode::NotYourTurn,
        ErrorCode::WaitingForFacilitator,
        ErrorCode::ContentBlocked,
        ErrorCode::InvalidHandle,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// Whether sending the same request again later can succeed without the
    /// client changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::SlowMode
                | ErrorCode::Overloaded
                | ErrorCode::Unavailable
                | ErrorCode::Internal
                | ErrorCode::RoomFull
                | ErrorCode::RoomClosed
                | ErrorCode::RoomLocked
                | ErrorCode::WaitingForFacilitator
                | ErrorCode::NotYourTurn
                | ErrorCode::Muted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotMember => "not_member",
            ErrorCode::RulesNotAccepted => "rules_not_accepted",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RoomClosed => "room_closed",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotYourTurn => "not_your_turn",
            ErrorCode::WaitingForFacilitator => "waiting_for_facilitator",
            ErrorCode::ContentBlocked => "content_blocked",
            ErrorCode::InvalidHandle => "invalid_handle",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// WebSocket close codes the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The session ended normally (`forget_me`, the client left).
    Normal = 1000,
    /// The server stopped hearing from the client (no pong for two heartbeats):
    /// reconnect with backoff and resume.
    GoingAway = 1001,
    /// The protocol was broken: not JSON, a binary frame, no `hello` first.
    Policy = 1008,
    /// A frame larger than the server accepts.
    TooBig = 1009,
    /// The server is restarting: reconnect with backoff and resume.
    Restarting = 1012,
    /// The token was refused or stopped working.
    Unauthorized = 4401,
    /// Banned from the whole service.
    Banned = 4403,
    /// The client did not keep up with its rooms: resume to catch up.
    TooSlow = 4408,
    /// The client kept flooding after `rate_limited`.
    RateLimited = 4429,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        Some(match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1008 => CloseCode::Policy,
            1009 => CloseCode::TooBig,
            1012 => CloseCode::Restarting,
            4401 => CloseCode::Unauthorized,
            4403 => CloseCode::Banned,
            4408 => CloseCode::TooSlow,
            4429 => CloseCode::RateLimited,
            _ => return None,
        })
    }

    /// Whether a client should reconnect (with backoff) and resume.
    pub fn should_reconnect(self) -> bool {
        matches!(self, CloseCode::GoingAway | CloseCode::Restarting | CloseCode::TooSlow | CloseCode::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn all_lists_every_code_once() {
        // A new variant must be added to ALL: this match has no catch-all arm.
        let index = |c: ErrorCode| match c {
            ErrorCode::BadRequest => 0,
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::Unauthorized => 2,
            ErrorCode::Forbidden => 3,
            ErrorCode::NotFound => 4,
            ErrorCode::NotMember => 5,
            ErrorCode::RulesNotAccepted => 6,
            ErrorCode::RoomFull => 7,
            ErrorCode::RoomClosed => 8,
            ErrorCode::RoomLocked => 9,
            ErrorCode::Banned => 10,
            ErrorCode::Muted => 11,
            ErrorCode::RateLimited => 12,
            ErrorCode::SlowMode => 13,
            ErrorCode::TooLarge => 14,
            ErrorCode::NotYourTurn => 15,
            ErrorCode::WaitingForFacilitator => 16,
            ErrorCode::ContentBlocked => 17,
            ErrorCode::InvalidHandle => 18,
            ErrorCode::Overloaded => 19,
            ErrorCode::Unavailable => 20,
            ErrorCode::Internal => 21,
        };
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(index(*code), i, "{code:?}");
        }
    }
}
