//! Static landing pages from a local directory.
//!
//! Only files under the configured root are ever served: `..`, encoded slashes,
//! backslashes and NUL are refused before touching the file system, and the resolved
//! path is checked to still lie under the root (symlinks included).

use clickstamp_plugins::query::decode_query_component;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// What is known of a file before a byte of it is read: enough to answer `HEAD`,
/// `304` and to frame the body.
#[derive(Debug)]
pub struct LanderFile {
    pub len: u64,
    pub content_type: &'static str,
    pub etag: String,
    /// `Last-Modified` value (HTTP date), when the file system knows the time.
    pub last_modified: Option<String>,
}

/// How much of a file is read at a time when it is streamed: a video lander costs this
/// much memory per request, not its size.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Why a lander could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LanderError {
    #[error("no such file")]
    NotFound,
    #[error("path escapes the landers directory")]
    Traversal,
}

/// Resolve `rest` (the request path below the campaign prefix, still percent-encoded)
/// to a file under `root` (already canonical).
pub fn resolve(root: &Path, rest: &str) -> Result<PathBuf, LanderError> {
    let mut path = root.to_path_buf();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        // Percent-decode each segment on its own, so an encoded `/` cannot form a new one.
        let segment = decode_query_component(&raw.replace('+', "%2B"));
        if segment == ".."
            || segment == "."
            || segment.contains(['/', '\\', '\0'])
            || segment.starts_with('.')
        {
            return Err(LanderError::Traversal);
        }
        path.push(segment);
    }
    if path.is_dir() {
        path.push("index.html");
    }
    let canonical = path.canonicalize().map_err(|_| LanderError::NotFound)?;
    if !canonical.starts_with(root) {
        return Err(LanderError::Traversal);
    }
    if !canonical.is_file() {
        return Err(LanderError::NotFound);
    }
    Ok(canonical)
}

/// Look at a resolved lander file (no read of its contents).
pub async fn stat(path: &Path) -> Result<LanderFile, LanderError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|_| LanderError::NotFound)?;
    let modified = meta.modified().ok();
    let mtime = modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(LanderFile {
        content_type: content_type(path),
        last_modified: modified.map(httpdate::fmt_http_date),
        etag: format!("\"{:x}-{:x}\"", meta.len(), mtime),
        len: meta.len(),
    })
}

/// Content type by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "avif" => "image/avif",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Whether an `If-None-Match` header matches `etag`.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

/// Whether a file last modified at `last_modified` (an HTTP date) is unchanged since
/// `if_modified_since`. An unparsable date never matches (the file is sent).
pub fn not_modified_since(if_modified_since: &str, last_modified: &str) -> bool {
    match (
        httpdate::parse_http_date(if_modified_since.trim()),
        httpdate::parse_http_date(last_modified),
    ) {
        (Ok(since), Ok(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        // Real files outside the root and a symlink out of it: an unguarded resolver
        // would find every one of them.
        let base = std::env::temp_dir().join(format!("clickstamp-landers-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret.txt"), "outside").unwrap();
        std::fs::write(root.join(".env"), "dotfile").unwrap();
        std::fs::write(root.join("sub/ok.html"), "inside").unwrap();
        let _ = std::fs::remove_file(root.join("link.txt"));
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "/sub/ok.html").is_ok());
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/sub/..%2f..%2fsecret.txt",
            "/..%5csecret.txt",
            "/.env",
            "/%2eenv",
            "/sub/%00",
            "/link.txt",
        ] {
            assert_eq!(resolve(&root, bad), Err(LanderError::Traversal), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn modified_since() {
        let t = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert!(not_modified_since(t, t));
        assert!(not_modified_since("Thu, 22 Oct 2015 07:28:00 GMT", t));
        assert!(!not_modified_since("Tue, 20 Oct 2015 07:28:00 GMT", t));
        assert!(!not_modified_since("garbage", t));
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\", W/\"b\"", "\"b\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
    }
}
