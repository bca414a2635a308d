//! Embeds the web client (`client-web/static`) into the binary: writes a
//! table of every file's path and bytes for `web.rs`. The client library the
//! web client is built on (`client-web/sdk/kindred-client.js`, published to
//! npm from there) is embedded too, at `sdk/kindred-client.js`.

use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-web/static");
    println!("cargo:rerun-if-changed={}", root.display());
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-web/sdk/kindred-client.js");
    println!("cargo:rerun-if-changed={}", sdk.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut entries: Vec<(String, &PathBuf)> =
        files.iter().map(|f| (f.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/"), f)).collect();
    entries.push(("sdk/kindred-client.js".to_owned(), &sdk));
    let mut out = String::from("/// Every embedded file of the web client: (path, bytes).\npub(crate) static ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, file) in &entries {
        out.push_str(&format!("    ({:?}, include_bytes!({:?})),\n", rel, file.canonicalize().expect("file exists").display().to_string()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            files.push(path);
        }
    }
}
