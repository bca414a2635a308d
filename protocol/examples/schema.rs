//! Prints the JSON Schema of every frame. From the repository root:
//! `cargo run -p kindred-protocol --example schema > docs/protocol.schema.json`
//! (`kindred_protocol::schema::REGENERATE`). The tests fail until the
//! committed file matches the types again.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// The root's keys that a reader wants first; `$defs` last, as it is most
/// of the file. Everything below the root keeps serde_json's sorted order,
/// which is stable from one run to the next.
const HEAD: [&str; 4] = ["$schema", "title", "description", "anyOf"];

struct Root<'a>(&'a serde_json::Map<String, Value>);

impl Serialize for Root<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for key in HEAD.iter().copied().filter(|k| self.0.contains_key(*k)) {
            map.serialize_entry(key, &self.0[key])?;
        }
        for (key, value) in self.0.iter().filter(|(k, _)| !HEAD.contains(&k.as_str())) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn main() {
    let doc = kindred_protocol::schema::document();
    let root = doc.as_object().expect("the schema is an object");
    let text = serde_json::to_string_pretty(&Root(root)).expect("a schema always serializes");
    println!("{text}");
}
