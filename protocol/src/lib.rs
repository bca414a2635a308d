//! Kindred wire protocol v1: every message a client and the server exchange
//! over the WebSocket at `/ws`, as typed serde values. The types do no I/O,
//! so the server, the load generator and third-party Rust clients share one
//! definition; `docs/protocol.md` is its human reference and is tested
//! against these types. The `client` feature adds a connection that
//! reconnects and resumes by itself.
//!
//! Crate map:
//! - [`ids`]: newtypes for every identifier on the wire.
//! - [`client`]: [`ClientMessage`], what a client sends.
//! - [`server`]: [`ServerMessage`], what the server sends, and the shapes inside it.
//! - [`moderation`]: [`ModerationAction`], the `action` of a `moderate` request.
//! - [`errors`]: [`ErrorCode`] and [`CloseCode`], with whether a retry can help.
//! - `schema` (feature `schema`): the JSON Schema of every frame, the
//!   machine-readable twin of `docs/protocol.md`.
//! - `connection` (feature `client`): a client that reconnects and resumes
//!   by itself; see `docs/clients.md`.

pub mod client;
#[cfg(feature = "client")]
pub mod connection;
pub mod errors;
pub mod ids;
pub mod moderation;
#[cfg(feature = "schema")]
pub mod schema;
pub mod server;

pub use client::ClientMessage;
pub use errors::{CloseCode, ErrorCode};
pub use ids::{AccountId, AlertId, MemberId, MessageId, Position, ReportId, RequestId, RoomId};
pub use moderation::ModerationAction;
pub use server::*;

/// The WebSocket subprotocol name of this version (`Sec-WebSocket-Protocol`).
pub const SUBPROTOCOL: &str = "kindred.v1";

/// Roles a connection can hold. Members are anonymous; facilitators and
/// admins present a JWT from the operator's identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Facilitator,
    Admin,
}

impl Role {
    /// Facilitators and admins: the people who keep rooms safe.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Facilitator | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Facilitator => "facilitator",
            Role::Admin => "admin",
        }
    }
}
