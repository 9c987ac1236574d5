//! The pixel SDK files, embedded at build time from `pixel-sdk/dist/` (committed, so
//! the proxy builds without a wasm toolchain), served under `/sdk/`.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// One embedded file.
#[derive(Debug)]
pub struct SdkFile {
    pub name: &'static str,
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// Strong ETag of the content.
    pub etag: String,
}

const FILES: &[(&str, &[u8], &str)] = &[
    (
        "clickstamp.min.js",
        include_bytes!("../../../pixel-sdk/dist/clickstamp.min.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "clickstamp.js",
        include_bytes!("../../../pixel-sdk/dist/clickstamp.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "clickstamp_pixel.js",
        include_bytes!("../../../pixel-sdk/dist/clickstamp_pixel.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "clickstamp_pixel_bg.wasm",
        include_bytes!("../../../pixel-sdk/dist/clickstamp_pixel_bg.wasm"),
        "application/wasm",
    ),
];

fn files() -> &'static [SdkFile] {
    static ALL: OnceLock<Vec<SdkFile>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, body, content_type)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                body.hash(&mut h);
                SdkFile {
                    name,
                    body,
                    content_type,
                    etag: format!("\"{:016x}-{:x}\"", h.finish(), body.len()),
                }
            })
            .collect()
    })
}

/// The embedded file called `name`, if any. Only exact names match: nothing from the
/// request reaches the file system.
pub fn file(name: &str) -> Option<&'static SdkFile> {
    files().iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_loader_and_core_are_embedded_with_types() {
        let wasm = super::file("clickstamp_pixel_bg.wasm").unwrap();
        assert_eq!(&wasm.body[..4], b"\0asm");
        assert_eq!(wasm.content_type, "application/wasm");
        assert!(super::file("clickstamp.min.js").unwrap().body.len() > 100);
        assert!(super::file("../Cargo.toml").is_none());
    }
}
