//! The JSON Schema of every frame (feature `schema`): the machine-readable
//! twin of `docs/protocol.md`, committed as `docs/protocol.schema.json` so
//! that client developers in any language can validate and generate code
//! from it. `protocol/tests/schema.rs` checks the committed file against
//! [`document`] and every example in the document against the file.

use crate::{ClientMessage, ServerMessage};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// The command that rewrites `docs/protocol.schema.json`, run from the
/// repository root.
pub const REGENERATE: &str = "cargo run -p kindred-protocol --example schema > docs/protocol.schema.json";

/// The schema document: draft 2020-12, every type under `$defs`, and a root
/// that accepts any frame of either direction (`anyOf`, not `oneOf`: a
/// `typing` or `whisper` frame can fit both).
///
/// Client frames are described as the server reads them (the deserialize
/// contract: what may be left out has a default), server frames as the
/// server writes them (the serialize contract: what is always written is
/// `required`, such as `reply_to` even when it is `null`). No type appears
/// in both with a different shape; if one ever did, this panics rather
/// than publish one shape for both.
pub fn document() -> Value {
    let mut defs = Map::new();
    let client = collect::<ClientMessage>(SchemaSettings::draft2020_12().for_deserialize(), &mut defs);
    let server = collect::<ServerMessage>(SchemaSettings::draft2020_12().for_serialize(), &mut defs);
    let mut doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kindred wire protocol v1",
        "description": format!(
            "Every WebSocket text frame of subprotocol `{}` is one JSON object. Validate what a client sends against `#/$defs/ClientMessage` and what the server sends against `#/$defs/ServerMessage`; this root accepts either. Client frames are described as the server reads them, server frames as the server writes them. Objects may gain fields within v1: ignore the ones you do not know. Generated from the kindred-protocol crate; see docs/protocol.md.",
            crate::SUBPROTOCOL
        ),
        "anyOf": [client, server],
        "$defs": defs,
    });
    unwrap_descriptions(&mut doc);
    doc
}

/// Doc comments are wrapped at 80 columns; a description is read in a
/// tooltip or a generated client, so its lines are joined back into
/// paragraphs. Only string values are touched: `description` is also a
/// property name (of `RoomSummary`), whose value is a schema.
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(text) if key == "description" => {
                        *text = text.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// `T`'s schema as a `$ref`, with every definition it needs added to `defs`.
fn collect<T: JsonSchema>(settings: SchemaSettings, defs: &mut Map<String, Value>) -> Value {
    let mut generator = settings.into_generator();
    let reference = generator.subschema_for::<T>().to_value();
    for (name, schema) in generator.take_definitions(true) {
        match defs.get(&name) {
            Some(existing) if *existing != schema => panic!(
                "{name} has one schema as the server reads it and another as it writes it; \
                 give the two shapes two types, or make them agree"
            ),
            _ => {
                defs.insert(name, schema);
            }
        }
    }
    reference
}

/// A time on the wire. The fields that hold one are `String`s in Rust; this
/// is what they hold.
pub(crate) struct Timestamp;

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Timestamp").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "An RFC 3339 time in UTC with milliseconds, such as `2026-11-22T20:01:02.123Z`.",
            "type": "string",
            "format": "date-time"
        })
    }
}
