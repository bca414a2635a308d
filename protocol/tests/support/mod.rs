//! The JSON examples of `docs/protocol.md`, shared by `doc_examples.rs`
//! (they match the Rust types) and `schema.rs` (they match the published
//! schema), so both read the document the same way.

pub const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

pub fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("reading {DOC_PATH}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Client,
    Server,
}

#[derive(Debug)]
pub struct Example {
    /// 1-based line of the opening fence in `docs/protocol.md`.
    pub line: usize,
    pub direction: Direction,
    pub text: String,
}

/// Every ```json client / ```json server block, in document order. A fence
/// that starts with ```json but carries any other info string is a typo
/// that would silently skip an example, so it panics.
pub fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut open: Option<Example> = None;
    for (i, line) in doc.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_end();
        if let Some(ex) = open.as_mut() {
            if trimmed.trim_start().starts_with("```") {
                out.push(open.take().expect("a block is open"));
            } else {
                ex.text.push_str(line);
                ex.text.push('\n');
            }
            continue;
        }
        let direction = match trimmed {
            "```json client" => Direction::Client,
            "```json server" => Direction::Server,
            other if other.starts_with("```json") && other != "```json" => {
                panic!("protocol.md line {line_no}: unknown info string {other:?}; use ```json client or ```json server")
            }
            _ => continue,
        };
        open = Some(Example { line: line_no, direction, text: String::new() });
    }
    if let Some(ex) = open {
        panic!("protocol.md line {}: code block is never closed", ex.line);
    }
    out
}
