//! Identifiers on the wire. Each is a transparent newtype so that a room id
//! cannot be passed where a member id is meant; on the wire each is a plain
//! JSON string (or, for [`RequestId`], a string or an integer).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A room's stable id, such as `grief` or `pet-loss`.
    RoomId
);
string_id!(
    /// A member as seen inside one room: stable for one account in one room,
    /// across reconnects and nodes, and unlinkable across rooms.
    MemberId
);
string_id!(
    /// A chat message, unique within its room.
    MessageId
);
string_id!(
    /// The private id of an account. Only its holder ever sees it.
    AccountId
);
string_id!(
    /// A report filed against a message.
    ReportId
);
string_id!(
    /// A crisis alert, stable across nodes and restarts.
    AlertId
);

/// The `id` a client puts on a request; every reply to it echoes it.
/// A string of at most [`RequestId::MAX_LEN`] characters, or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Str(String),
}

impl RequestId {
    /// The longest string id the server accepts.
    pub const MAX_LEN: usize = 64;

    /// Whether this id is within the contract's bounds.
    pub fn is_valid(&self) -> bool {
        match self {
            RequestId::Int(_) => true,
            RequestId::Str(s) => s.chars().count() <= Self::MAX_LEN,
        }
    }
}

/// Written by hand, not derived: the derive cannot know [`RequestId::MAX_LEN`]
/// or the `i64` bounds, and both are part of the contract.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for RequestId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RequestId".into()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        concat!(module_path!(), "::RequestId").into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The `id` a client puts on a request; every reply to it echoes it with the same JSON type. A string of at most 64 code points, or a whole number that fits in a signed 64-bit integer (the server also refuses `1.0`, which JSON Schema counts as an integer).",
            "anyOf": [
                { "type": "string", "maxLength": RequestId::MAX_LEN },
                { "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX }
            ]
        })
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        RequestId::Int(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::Str(s.to_owned())
    }
}

/// A point in a room's message sequence: the `epoch` the history belongs to
/// and the last `seq` the client saw. Sent in `join.since` to resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}
