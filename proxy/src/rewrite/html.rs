//! The lol-html pass: stamp link attributes and inject the SDK tag, streaming.
//!
//! Guarantees: bytes of the page that are not a changed attribute or the injected tag
//! come out exactly as they went in (lol-html re-serialises only the start tags it
//! modified); memory per page is bounded by the configured limit; on any error the
//! rewriter flushes everything it had buffered untransformed (lol-html's graceful
//! bail-out), so the caller can pass the rest of the page through.

use super::charset::Charset;
use super::links::{split_meta_refresh, LinkStamper};
use super::template::RecordedEdit;
use lol_html::html_content::ContentType;
use lol_html::send::Element;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{element, MemorySettings};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A rewriting error: lol-html gave up on this page.
#[derive(Debug, thiserror::Error)]
#[error("html rewriting stopped: {0}")]
pub struct HtmlError(String);

/// What the handlers share with the stream.
#[derive(Debug, Default)]
struct Shared {
    /// Set once the page grew past the size limit: handlers stop changing anything.
    frozen: AtomicBool,
    /// Attributes changed so far.
    changed: AtomicUsize,
    /// Whether the SDK tag was inserted.
    injected: AtomicBool,
    /// Output bytes emitted so far. lol-html emits everything before a tag before it
    /// calls the tag's handlers, so inside a handler this is where the tag will land.
    emitted: AtomicUsize,
    /// Recording for a page template (see [`super::template`]); `None` when off.
    record: Option<Mutex<TemplateNotes>>,
}

/// What a recording pass notes besides the bytes.
#[derive(Debug, Default)]
pub struct TemplateNotes {
    /// Every tag whose output differs from its source.
    pub edits: Vec<RecordedEdit>,
    /// Source ranges of every start tag.
    pub tags: Vec<(usize, usize)>,
}

impl Shared {
    fn note_edit(&self, source: std::ops::Range<usize>) {
        if let Some(notes) = &self.record {
            notes.lock().edits.push(RecordedEdit {
                source: (source.start, source.end),
                output_start: self.emitted.load(Ordering::Relaxed),
            });
        }
    }
}

/// Options for one page.
#[derive(Debug, Clone)]
pub struct PageOptions {
    /// The visitor's click ID, as stamped into links.
    pub click_id: String,
    /// `src` of the SDK `<script>` to insert before `</head>`, if any.
    pub sdk_src: Option<String>,
    /// lol-html's memory limit for this page.
    pub max_memory: usize,
}

type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// A streaming HTML stamper for one response body.
pub struct HtmlStamper {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HtmlStamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtmlStamper")
            .field("live", &self.rewriter.is_some())
            .field("changed", &self.changed())
            .finish()
    }
}

fn stamp_attr(
    el: &mut Element,
    attr: &str,
    stamper: &LinkStamper,
    click_id: &str,
    shared: &Shared,
) -> lol_html::HandlerResult {
    if shared.frozen.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some(url) = el.get_attribute(attr) {
        if let Some(new) = stamper.stamp(&url, click_id) {
            el.set_attribute(attr, &new)?;
            shared.changed.fetch_add(1, Ordering::Relaxed);
            shared.note_edit(el.source_location().bytes());
        }
    }
    Ok(())
}

impl HtmlStamper {
    /// A stamper for a page in `charset`. With `record`, the pass also notes where
    /// the page changes, so that it can become a page template.
    pub fn new(
        stamper: Arc<LinkStamper>,
        charset: Charset,
        options: PageOptions,
        record: bool,
    ) -> Self {
        let out = Arc::new(Mutex::new(Vec::with_capacity(16 * 1024)));
        let shared = Arc::new(Shared {
            record: record.then(Default::default),
            ..Shared::default()
        });
        let link = |selector: &'static str, attr: &'static str| {
            let (stamper, shared, cid) =
                (stamper.clone(), shared.clone(), options.click_id.clone());
            element!(selector, move |el: &mut Element| {
                stamp_attr(el, attr, &stamper, &cid, &shared)
            })
        };
        let meta = {
            let (stamper, shared, cid) =
                (stamper.clone(), shared.clone(), options.click_id.clone());
            element!("meta[http-equiv][content]", move |el: &mut Element| {
                let refresh = el
                    .get_attribute("http-equiv")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"));
                if !refresh || shared.frozen.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let Some(content) = el.get_attribute("content") else {
                    return Ok(());
                };
                if let Some((pre, url, post)) = split_meta_refresh(&content) {
                    if let Some(new) = stamper.stamp(url, &cid) {
                        el.set_attribute("content", &format!("{pre}{new}{post}"))?;
                        shared.changed.fetch_add(1, Ordering::Relaxed);
                        shared.note_edit(el.source_location().bytes());
                    }
                }
                Ok(())
            })
        };
        let mut settings = Settings::new_send()
            .append_element_content_handler(link("a[href]", "href"))
            .append_element_content_handler(link("area[href]", "href"))
            .append_element_content_handler(link("form[action]", "action"))
            .append_element_content_handler(meta)
            .with_strict(false)
            .with_graceful_bail_out_on_content_handler_error(true)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(options.max_memory)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            );
        settings = match charset {
            Charset::Declared(enc) => settings.with_encoding(enc),
            Charset::Sniff => settings.with_adjust_charset_on_meta_tag(true),
        };
        if let Some(src) = options.sdk_src {
            let shared = shared.clone();
            let tag = format!(
                "<script src=\"{}\" async></script>",
                src.replace('&', "&amp;").replace('"', "&quot;")
            );
            settings = settings.append_element_content_handler(element!(
                "head",
                move |el: &mut Element| {
                    if shared.injected.swap(true, Ordering::Relaxed) {
                        return Ok(()); // a second <head> gets nothing
                    }
                    let tag = tag.clone();
                    if el.can_have_content() {
                        let shared = shared.clone();
                        el.on_end_tag(Box::new(move |end| {
                            shared.note_edit(end.source_location().bytes());
                            end.before(&tag, ContentType::Html);
                            Ok(())
                        }))?;
                    } else {
                        shared.note_edit(el.source_location().bytes());
                        el.after(&tag, ContentType::Html);
                    }
                    Ok(())
                }
            ));
        }
        if record {
            // Every start tag's range: a template must not send half of a tag that
            // a different page could end differently.
            let shared = shared.clone();
            settings =
                settings.append_element_content_handler(element!("*", move |el: &mut Element| {
                    if let Some(notes) = &shared.record {
                        let r = el.source_location().bytes();
                        notes.lock().tags.push((r.start, r.end));
                    }
                    Ok(())
                }));
        }
        let sink_out = out.clone();
        let sink_shared = shared.clone();
        let sink: Sink = Box::new(move |chunk: &[u8]| {
            sink_shared
                .emitted
                .fetch_add(chunk.len(), Ordering::Relaxed);
            sink_out.lock().extend_from_slice(chunk)
        });
        HtmlStamper {
            rewriter: Some(HtmlRewriter::new(settings, sink)),
            out,
            shared,
        }
    }

    /// Rewrite the next chunk; returns the bytes ready to send (possibly fewer or
    /// more than went in: lol-html holds back an unfinished tag).
    ///
    /// On `Err`, the returned error carries nothing to send; call [`Self::take_output`]
    /// for the untransformed bytes lol-html flushed, then pass the rest of the page
    /// through unchanged. The stamper is spent after an error.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, HtmlError> {
        let Some(rw) = self.rewriter.as_mut() else {
            return Err(HtmlError("the rewriter already failed".into()));
        };
        {
            // Room for this chunk plus the stamps, so the sink does not regrow the
            // buffer while lol-html emits it piece by piece.
            let mut out = self.out.lock();
            out.reserve(chunk.len() + chunk.len() / 4 + 256);
        }
        if let Err(e) = rw.write(chunk) {
            self.rewriter = None;
            return Err(HtmlError(e.to_string()));
        }
        Ok(self.take_output())
    }

    /// Finish the page; returns the last bytes.
    pub fn end(&mut self) -> Result<Vec<u8>, HtmlError> {
        let Some(rw) = self.rewriter.take() else {
            return Err(HtmlError("the rewriter already failed".into()));
        };
        rw.end().map_err(|e| HtmlError(e.to_string()))?;
        Ok(self.take_output())
    }

    /// Everything the rewriter has emitted and nobody has taken yet.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock())
    }

    /// Stop changing anything from here on (bytes still stream through unchanged).
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::Relaxed);
    }

    /// Attributes changed so far.
    pub fn changed(&self) -> usize {
        self.shared.changed.load(Ordering::Relaxed)
    }

    /// Whether the SDK tag was inserted.
    pub fn injected(&self) -> bool {
        self.shared.injected.load(Ordering::Relaxed)
    }

    /// The template notes of a recording pass (taken once).
    pub fn take_notes(&self) -> Option<TemplateNotes> {
        self.shared
            .record
            .as_ref()
            .map(|n| std::mem::take(&mut *n.lock()))
    }
}
