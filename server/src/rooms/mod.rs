//! The room directory: room definitions as configured (name, description,
//! rules and their version, capacity, schedule, retention). Live state — who
//! is in a room, its history — belongs to the hub, not here.

pub mod calendar;
pub mod schedule;

use chrono::{DateTime, SecondsFormat, Utc};
use kindred_protocol::{RoomId, RoomKind, RoomMode, RoomSummary, ScheduleInfo};
use schedule::{Schedule, ScheduleSpec, Status};
use serde::Deserialize;

const BUILTIN: &str = include_str!("default_rooms.toml");

/// The `[[rooms]]` part of a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsFile {
    /// Ground rules for rooms that do not set their own.
    #[serde(default)]
    pub default_rules: Option<String>,
    #[serde(default)]
    pub rooms: Vec<RoomSpec>,
}

/// One room as written in the config file (or sent to the admin API).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSpec {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    #[serde(default)]
    pub rules: Option<String>,
    #[serde(default = "default_rules_version")]
    pub rules_version: u32,
    /// Minutes of history kept for this room (0 keeps none); default from `[limits]`.
    #[serde(default)]
    pub history_minutes: Option<u32>,
    #[serde(default)]
    pub requires_facilitator: bool,
    /// `warn` or `block` messages with personal details; default from `[safety]`.
    #[serde(default)]
    pub pii: Option<crate::safety::PiiAction>,
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Off unless set (0 < x ≤ 1): a member whose share of the room's
    /// messages in the last 15 minutes exceeds it, with at least 4 members
    /// speaking, gets a gentle private notice (at most every 15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dominance_share: Option<f64>,
}

fn default_language() -> String {
    "en".into()
}
fn default_capacity() -> u32 {
    15
}
fn default_rules_version() -> u32 {
    1
}

/// A validated room definition.
#[derive(Debug, Clone)]
pub struct RoomDef {
    pub id: RoomId,
    pub name: String,
    pub topic: String,
    pub description: String,
    pub tags: Vec<String>,
    pub language: String,
    pub capacity: u32,
    pub rules: String,
    pub rules_version: u32,
    pub history_minutes: Option<u32>,
    pub requires_facilitator: bool,
    pub pii: Option<crate::safety::PiiAction>,
    pub schedule: Option<Schedule>,
    pub dominance_share: Option<f64>,
}

impl RoomSpec {
    /// Validate one room on its own (the admin API), with `default_rules` for rules left out.
    pub fn into_def(self, default_rules: &str) -> anyhow::Result<RoomDef> {
        let file = RoomsFile { default_rules: Some(default_rules.to_owned()), rooms: vec![self] };
        Ok(file.into_defs()?.remove(0))
    }
}

impl RoomDef {
    /// The spec this definition came from, for saving API-made rooms.
    pub fn spec(&self) -> RoomSpec {
        RoomSpec {
            id: self.id.0.clone(),
            name: self.name.clone(),
            topic: self.topic.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            language: self.language.clone(),
            capacity: self.capacity,
            rules: Some(self.rules.clone()),
            rules_version: self.rules_version,
            history_minutes: self.history_minutes,
            requires_facilitator: self.requires_facilitator,
            pii: self.pii,
            schedule: self.schedule.as_ref().map(|s| s.spec.clone()),
            dominance_share: self.dominance_share,
        }
    }
}

impl RoomsFile {
    /// The ground rules of the built-in directory, for rooms made without their own.
    pub fn builtin_rules() -> String {
        Self::builtin().default_rules.unwrap_or_default().trim().to_owned()
    }

    pub fn builtin() -> RoomsFile {
        toml::from_str(BUILTIN).expect("the built-in room directory parses")
    }

    pub fn into_defs(self) -> anyhow::Result<Vec<RoomDef>> {
        let mut seen = std::collections::HashSet::new();
        let default_rules = self.default_rules.unwrap_or_default();
        self.rooms
            .into_iter()
            .map(|spec| {
                anyhow::ensure!(valid_room_id(&spec.id), "room id {:?}: use 1–48 of a-z, 0-9 and -", spec.id);
                anyhow::ensure!(seen.insert(spec.id.clone()), "room id {:?} appears twice", spec.id);
                anyhow::ensure!((1..=MAX_CAPACITY).contains(&spec.capacity), "room {:?}: capacity must be 1 to {MAX_CAPACITY}", spec.id);
                spec.check_texts().map_err(|e| anyhow::anyhow!("room {:?}: {e}", spec.id))?;
                anyhow::ensure!(spec.dominance_share.is_none_or(|x| x > 0.0 && x <= 1.0), "room {:?}: dominance_share must be above 0 and at most 1", spec.id);
                let schedule = spec.schedule.map(Schedule::new).transpose().map_err(|e| anyhow::anyhow!("room {:?}: {e}", spec.id))?;
                Ok(RoomDef {
                    id: RoomId(spec.id),
                    name: spec.name,
                    topic: spec.topic,
                    description: spec.description,
                    tags: spec.tags,
                    language: spec.language,
                    capacity: spec.capacity,
                    rules: spec.rules.unwrap_or_else(|| default_rules.trim().to_owned()),
                    rules_version: spec.rules_version,
                    history_minutes: spec.history_minutes,
                    requires_facilitator: spec.requires_facilitator,
                    pii: spec.pii,
                    schedule,
                    dominance_share: spec.dominance_share,
                })
            })
            .collect()
    }
}

/// Bounds on what a room definition may hold: every `list_rooms` carries
/// the whole directory, so nothing in it may be unbounded.
const MAX_CAPACITY: u32 = 10_000;
const MAX_NAME_CHARS: usize = 80;
const MAX_TOPIC_CHARS: usize = 40;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_TAGS: usize = 10;
const MAX_TAG_CHARS: usize = 32;
const MAX_RULES_CHARS: usize = 5_000;
/// 30 days: history is kept short for members' privacy.
const MAX_HISTORY_MINUTES: u32 = 43_200;

impl RoomSpec {
    /// The text fields within their bounds (counted in code points).
    fn check_texts(&self) -> Result<(), String> {
        let chars = |s: &str| s.chars().count();
        if self.name.trim().is_empty() || chars(&self.name) > MAX_NAME_CHARS {
            return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if chars(&self.topic) > MAX_TOPIC_CHARS {
            return Err(format!("topic can be up to {MAX_TOPIC_CHARS} characters"));
        }
        if chars(&self.description) > MAX_DESCRIPTION_CHARS {
            return Err(format!("description can be up to {MAX_DESCRIPTION_CHARS} characters"));
        }
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|t| t.trim().is_empty() || chars(t) > MAX_TAG_CHARS) {
            return Err(format!("up to {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} characters each"));
        }
        let language_ok = (2..=35).contains(&self.language.len()) && self.language.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !language_ok {
            return Err("language must be a BCP 47 tag such as en or pt-BR".into());
        }
        if self.rules.as_ref().is_some_and(|r| chars(r) > MAX_RULES_CHARS) {
            return Err(format!("rules can be up to {MAX_RULES_CHARS} characters"));
        }
        if self.history_minutes.is_some_and(|m| m > MAX_HISTORY_MINUTES) {
            return Err(format!("history_minutes can be up to {MAX_HISTORY_MINUTES} (30 days)"));
        }
        Ok(())
    }
}

fn valid_room_id(id: &str) -> bool {
    (1..=48).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl RoomDef {
    /// Whether members can be in the room now (always, or during a session).
    pub fn status(&self, now: DateTime<Utc>) -> Option<Status> {
        self.schedule.as_ref().map(|s| s.status(now))
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        !matches!(self.status(now), Some(Status::Closed { .. }))
    }

    pub fn summary(&self, now: DateTime<Utc>, member_count: u32, mode: RoomMode) -> RoomSummary {
        let status = self.status(now);
        RoomSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            topic: self.topic.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            language: self.language.clone(),
            kind: if self.schedule.is_some() { RoomKind::Scheduled } else { RoomKind::AlwaysOpen },
            schedule: self.schedule.as_ref().map(|s| ScheduleInfo {
                timezone: s.spec.timezone.clone(),
                days: s.spec.days.clone(),
                weeks_of_month: s.spec.weeks_of_month.clone(),
                start: s.spec.start.clone(),
                end: s.spec.end.clone(),
                description: s.describe(),
                next_open_at: match status {
                    Some(Status::Closed { next_open_at }) => next_open_at.map(rfc3339),
                    _ => None,
                },
                closes_at: match status {
                    Some(Status::Open { closes_at }) => Some(rfc3339(closes_at)),
                    _ => None,
                },
            }),
            open: !matches!(status, Some(Status::Closed { .. })),
            locked: false,
            capacity: self.capacity,
            member_count,
            mode,
            rules_version: self.rules_version,
            requires_facilitator: self.requires_facilitator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_directory_has_a_dozen_rooms_with_rules() {
        let rooms = RoomsFile::builtin().into_defs().unwrap();
        assert!(rooms.len() >= 12, "{} rooms", rooms.len());
        assert!(rooms.iter().all(|r| !r.rules.is_empty() && !r.description.is_empty()));
        assert!(rooms.iter().any(|r| r.schedule.is_some()));
    }

    #[test]
    fn the_builtin_directory_has_rooms_in_several_languages_with_their_own_rules() {
        let rooms = RoomsFile::builtin().into_defs().unwrap();
        let english_rules = RoomsFile::builtin_rules();
        for language in ["es", "fr", "de", "pt", "ar"] {
            let theirs: Vec<_> = rooms.iter().filter(|r| r.language == language).collect();
            assert!(!theirs.is_empty(), "no room in {language}");
            // Rules, name and tags in the room's own language, not the English defaults.
            assert!(theirs.iter().all(|r| r.rules != english_rules && !r.tags.is_empty()), "{language}");
        }
        assert!(rooms.iter().any(|r| r.name == "Duelo y pérdida" && r.tags.iter().any(|t| t == "duelo")));
    }

    #[test]
    fn bad_room_ids_and_duplicates_are_refused() {
        let file: RoomsFile = toml::from_str("[[rooms]]\nid = \"Bad Id\"\nname = \"x\"").unwrap();
        assert!(file.into_defs().is_err());
        let file: RoomsFile = toml::from_str("[[rooms]]\nid = \"a\"\nname = \"x\"\n[[rooms]]\nid = \"a\"\nname = \"y\"").unwrap();
        assert!(file.into_defs().is_err());
    }
}
