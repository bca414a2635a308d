//! The web client: served from the copy embedded at build time, or from a
//! directory on disk (`--web-dir`, for working on the client), always with
//! a strict Content-Security-Policy.
//!
//! The client library it is built on lives once, in `client-web/sdk/` (it is
//! published to npm from there), and is served at [`SDK_FILE`]: embedded like
//! the rest, or read from disk from `sdk/` beside the web dir.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts, styles and connections from this origin only; nothing inline, no frames.
pub(crate) const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the page imports the client library from.
const SDK_FILE: &str = "sdk/kindred-client.js";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" | "webmanifest" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

pub(crate) async fn serve(web_dir: Option<PathBuf>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if path.split('/').any(|part| part == ".." || part.starts_with('.')) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = match &web_dir {
        Some(dir) => match tokio::fs::read(if path == SDK_FILE { dir.join("..").join(path) } else { dir.join(path) }).await {
            Ok(bytes) => Body::from(bytes),
            Err(_) => return StatusCode::NOT_FOUND.into_response(),
        },
        None => match ASSETS.iter().find(|(p, _)| *p == path) {
            Some((_, bytes)) => Body::from(*bytes),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
