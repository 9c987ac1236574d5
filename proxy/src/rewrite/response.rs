//! Whether a response is rewritten, the header edits that go with it, and the body
//! pipeline (decode → stamp → pass through on failure).

use super::charset::{self, Charset};
use super::decode::{Coding, DecodeError, Decoder};
use super::html::{HtmlStamper, PageOptions};
use super::links::LinkStamper;
use super::template::{Lookup, PageTemplate, Recording, Replay, ReplayStep, TemplateSlot};
use http::{HeaderMap, Method};
use pingora::http::ResponseHeader;
use std::sync::Arc;

/// Why a response passes through untouched. Each has a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// HEAD: no body to rewrite.
    Head,
    /// The request asked for a byte range: offsets into the origin's body must hold.
    Range,
    /// Anything but 200 (204, 206, 304, redirects, errors).
    Status,
    /// Not `text/html` / `application/xhtml+xml`.
    NotHtml,
    /// A content coding we do not decode.
    Encoding,
    /// A charset lol-html cannot parse.
    Charset,
    /// A declared Content-Length over the campaign's `max_body_bytes`.
    TooLarge,
}

impl Skip {
    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Skip::Head => "skipped_head",
            Skip::Range => "skipped_range",
            Skip::Status => "skipped_status",
            Skip::NotHtml => "skipped_not_html",
            Skip::Encoding => "skipped_encoding",
            Skip::Charset => "skipped_charset",
            Skip::TooLarge => "skipped_too_large",
        }
    }
}

/// How a response will be rewritten.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The page's encoding, or sniff from `<meta charset>`.
    pub charset: Charset,
    /// The origin's content coding, undone before rewriting.
    pub decode: Option<Coding>,
}

fn header<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

/// Decide whether to rewrite a response to `method` with request headers `req`.
///
/// Guarantees: only a 200 HTML response to a GET without `Range`, in an encoding and
/// content coding we handle, whose declared length is at most `max_body`, is planned.
pub fn plan(
    method: &Method,
    req: &HeaderMap,
    status: u16,
    resp: &HeaderMap,
    max_body: usize,
) -> Result<Plan, Skip> {
    if method == Method::HEAD {
        return Err(Skip::Head);
    }
    if req.contains_key(http::header::RANGE) {
        return Err(Skip::Range);
    }
    if status != 200 {
        return Err(Skip::Status);
    }
    let content_type = header(resp, "content-type").unwrap_or("");
    if !charset::is_html(content_type) {
        return Err(Skip::NotHtml);
    }
    let decode =
        Coding::from_header(header(resp, "content-encoding")).map_err(|()| Skip::Encoding)?;
    let charset = charset::from_content_type(content_type).map_err(|_| Skip::Charset)?;
    if let Some(len) = header(resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if len > max_body as u64 {
            return Err(Skip::TooLarge);
        }
    }
    Ok(Plan { charset, decode })
}

/// Edit the response header for a rewritten body: no Content-Length (the length
/// changes), chunked transfer, no Content-Encoding once decoded, a weak ETag (the
/// bytes differ from the origin's), no ranges, and private caching (the body carries
/// this visitor's click ID).
pub fn apply_headers(resp: &mut ResponseHeader, plan: &Plan) -> pingora::Result<()> {
    resp.remove_header("Content-Length");
    resp.insert_header("Transfer-Encoding", "chunked")?;
    if plan.decode.is_some() {
        resp.remove_header("Content-Encoding");
    }
    if let Some(etag) = resp
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        if !etag.starts_with("W/") {
            resp.insert_header("ETag", format!("W/{etag}"))?;
        }
    }
    resp.remove_header("Accept-Ranges");
    resp.remove_header("Content-MD5");
    resp.insert_header("Cache-Control", "private, no-cache")?;
    Ok(())
}

/// What went wrong in a body, for the caller's metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The rewriter gave up; the page continues unmodified from that point.
    #[error("{0}")]
    Rewrite(#[from] super::html::HtmlError),
    /// The origin's compressed body could not be decoded: the response cannot be
    /// completed (its headers already promised an identity body).
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// One response body on its way through: decode, stamp (from a page template when
/// one matches, else with lol-html, recording a template), and on a rewrite failure
/// pass everything else through unchanged.
#[derive(Debug)]
pub struct BodyRewriter {
    decoder: Option<Decoder>,
    stage: Stage,
    seen: usize,
    max_body: usize,
    failure: Option<String>,
    changed: usize,
    /// What a live pass needs when a replay hands over to it.
    stamper: Arc<LinkStamper>,
    charset: Charset,
    options: PageOptions,
    /// Where a recorded template goes; `None` when templates are off.
    slot: Option<TemplateSlot>,
    recording: Option<Recording>,
    /// Output a replay already sent: the live pass that took over must produce these
    /// bytes first, and they are dropped rather than sent twice.
    already_sent: Vec<u8>,
    already_sent_at: usize,
    template: Option<TemplateOutcome>,
}

#[derive(Debug)]
enum Stage {
    Live(Box<HtmlStamper>),
    Replay(Replay),
    /// After a failure: the rest of the page goes through as is.
    Passthrough,
}

/// How a page template served a response (a metric label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOutcome {
    /// The response matched a template to its last byte.
    Replayed,
    /// It differed from the template; lol-html took over at the first difference.
    Diverged,
    /// lol-html rewrote it and the pass became the path's template.
    Recorded,
    /// lol-html rewrote it but it could not become a template (too large, frozen,
    /// failed, or the recorded edits did not verify).
    NotRecorded,
}

impl TemplateOutcome {
    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            TemplateOutcome::Replayed => "replayed",
            TemplateOutcome::Diverged => "diverged",
            TemplateOutcome::Recorded => "recorded",
            TemplateOutcome::NotRecorded => "not_recorded",
        }
    }
}

impl BodyRewriter {
    /// A body rewriter for a planned response. With a template `slot`, a template kept
    /// there is replayed, or this pass records one.
    pub fn new(
        plan: &Plan,
        stamper: Arc<LinkStamper>,
        options: PageOptions,
        max_body: usize,
        max_decoded: usize,
        slot: Option<TemplateSlot>,
    ) -> Self {
        let lookup = slot.as_ref().map(|s| s.cache.lookup(&s.key));
        let mut rw = BodyRewriter {
            decoder: plan.decode.map(|c| Decoder::new(c, max_decoded)),
            stage: Stage::Passthrough,
            seen: 0,
            max_body,
            failure: None,
            changed: 0,
            stamper,
            charset: plan.charset,
            options,
            slot,
            recording: None,
            already_sent: Vec::new(),
            already_sent_at: 0,
            template: None,
        };
        match lookup {
            Some(Lookup::Replay(template)) => rw.stage = Stage::Replay(Replay::new(template)),
            Some(Lookup::Record) => rw.start_live(true),
            Some(Lookup::Plain) | None => rw.start_live(false),
        }
        rw
    }

    fn start_live(&mut self, record: bool) {
        let record = record && self.slot.is_some();
        self.stage = Stage::Live(Box::new(HtmlStamper::new(
            self.stamper.clone(),
            self.charset,
            self.options.clone(),
            record,
        )));
        self.recording = record.then(Recording::default);
    }

    /// Process the next chunk of the origin's body; `end` on the last one. Returns the
    /// bytes to send downstream.
    ///
    /// A rewrite failure is recorded (see [`Self::take_failure`]) and never returned:
    /// the page continues untransformed. Only an undecodable body is an `Err`.
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Result<Vec<u8>, DecodeError> {
        // Identity bodies (the common case: the origin was asked for identity) are read
        // in place; only a decoded body gets its own buffer.
        let decoded = match &mut self.decoder {
            Some(d) => {
                let mut plain = d.write(chunk)?;
                if end {
                    plain.extend(d.finish()?);
                }
                Some(plain)
            }
            None => None,
        };
        let plain: &[u8] = decoded.as_deref().unwrap_or(chunk);
        self.seen += plain.len();
        let step = match &mut self.stage {
            Stage::Passthrough => return Ok(decoded.unwrap_or_else(|| chunk.to_vec())),
            Stage::Live(_) => {
                let out = self.live(plain, end, self.seen);
                return Ok(self.drop_already_sent(out));
            }
            Stage::Replay(replay) => replay.feed(plain, end, self.options.click_id.as_bytes()),
        };
        let (matched, emitted) = match step {
            ReplayStep::Matched(out) => {
                if end {
                    if let Stage::Replay(replay) = &self.stage {
                        self.changed = replay.template().changed();
                    }
                    if let Some(slot) = &self.slot {
                        slot.cache.replayed(&slot.key);
                    }
                    self.template = Some(TemplateOutcome::Replayed);
                }
                return Ok(out);
            }
            ReplayStep::Diverged { matched, emitted } => (matched, emitted),
        };
        // The page differs from the template: lol-html starts over from the first
        // byte (the matched prefix is the template's source), and the output the
        // replay already sent is dropped from what it produces.
        let Stage::Replay(replay) = std::mem::replace(&mut self.stage, Stage::Passthrough) else {
            return Ok(Vec::new());
        };
        let template = replay.template().clone();
        let mut sent = Vec::with_capacity(emitted);
        template.render(0..emitted, self.options.click_id.as_bytes(), &mut sent);
        self.already_sent = sent;
        self.already_sent_at = 0;
        self.template = Some(TemplateOutcome::Diverged);
        let record = self
            .slot
            .as_ref()
            .is_some_and(|slot| slot.cache.diverged(&slot.key));
        self.start_live(record);
        let mut out = self.live(&template.source()[..matched], false, matched);
        out.extend(self.live(plain, end, self.seen));
        Ok(self.drop_already_sent(out))
    }

    /// One chunk through lol-html (recording when on).
    ///
    /// `seen` is how many body bytes arrived up to the end of `plain`: the size limit
    /// applies per chunk, the same way whether a page is fed live or re-fed after a
    /// replay.
    fn live(&mut self, plain: &[u8], end: bool, seen: usize) -> Vec<u8> {
        let Stage::Live(html) = &mut self.stage else {
            return plain.to_vec();
        };
        if seen > self.max_body {
            // Past the size limit: keep streaming through the parser (so a tag split
            // across the boundary stays whole) but change nothing more.
            html.freeze();
            self.recording = None;
        }
        if let Some(rec) = &mut self.recording {
            rec.source.extend_from_slice(plain);
        }
        let mut out = match html.write(plain) {
            Ok(out) => out,
            Err(e) => {
                self.failure = Some(e.to_string());
                let flushed = html.take_output();
                self.changed = html.changed();
                self.stage = Stage::Passthrough;
                self.recording = None;
                if self.slot.is_some() {
                    self.template.get_or_insert(TemplateOutcome::NotRecorded);
                }
                return flushed;
            }
        };
        if let Some(rec) = &mut self.recording {
            rec.output.extend_from_slice(&out);
            let budget = self.slot.as_ref().map_or(0, |s| s.cache.max_bytes());
            if rec.source.len() + rec.output.len() > budget {
                self.recording = None; // too big to keep: stop copying the page
            }
        }
        if end {
            match html.end() {
                Ok(rest) => {
                    if let Some(rec) = &mut self.recording {
                        rec.output.extend_from_slice(&rest);
                    }
                    out.extend(rest);
                }
                Err(e) => {
                    self.failure = Some(e.to_string());
                    out.extend(html.take_output());
                    self.recording = None;
                }
            }
            self.changed = html.changed();
            let notes = html.take_notes();
            self.stage = Stage::Passthrough;
            self.finish_recording(notes);
        }
        out
    }

    /// Turn a finished pass into the path's template. A recording that is still there
    /// survived the pass: it was dropped on a freeze, a rewrite failure or the budget.
    fn finish_recording(&mut self, notes: Option<super::html::TemplateNotes>) {
        let Some(slot) = &self.slot else {
            return;
        };
        let recorded = match (self.recording.take(), notes) {
            (Some(rec), Some(notes)) if self.failure.is_none() => PageTemplate::build(
                rec.source,
                rec.output,
                notes.edits,
                notes.tags,
                &self.options.click_id,
                self.changed,
            )
            .map_err(|e| tracing::debug!(error = %e, "page not kept as a template"))
            .ok(),
            _ => None,
        };
        let outcome = match recorded {
            Some(t) => {
                slot.cache.put(slot.key.clone(), t);
                TemplateOutcome::Recorded
            }
            None => TemplateOutcome::NotRecorded,
        };
        // A diverged page stays counted as diverged (its recording replaces the template).
        self.template.get_or_insert(outcome);
    }

    /// Drop the start of a live pass's output that a replay already sent, checking it
    /// is what the replay sent.
    fn drop_already_sent(&mut self, mut out: Vec<u8>) -> Vec<u8> {
        let left = self.already_sent.len() - self.already_sent_at;
        if left == 0 {
            return out;
        }
        let n = left.min(out.len());
        let expected = &self.already_sent[self.already_sent_at..self.already_sent_at + n];
        if out[..n] != *expected && self.failure.is_none() {
            self.failure =
                Some("the page template sent bytes lol-html did not produce for this page".into());
        }
        self.already_sent_at += n;
        if self.already_sent_at == self.already_sent.len() {
            self.already_sent = Vec::new();
            self.already_sent_at = 0;
        }
        out.drain(..n);
        out
    }

    /// The rewrite failure, once, if there was one.
    pub fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Attributes changed so far.
    pub fn changed(&self) -> usize {
        match &self.stage {
            Stage::Live(html) => html.changed(),
            _ => self.changed,
        }
    }

    /// How a page template served this response, once the body ended (`None` with
    /// templates off or before the end).
    pub fn template_outcome(&self) -> Option<TemplateOutcome> {
        self.template
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::links::{LinkMode, OfferPattern, OfferTarget};
    use clickstamp_plugins::builtin_network;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_plain_200_html_gets_planned() {
        let html = headers(&[("content-type", "text/html; charset=utf-8")]);
        let none = HeaderMap::new();
        assert!(plan(&Method::GET, &none, 200, &html, 100).is_ok());
        assert_eq!(
            plan(&Method::HEAD, &none, 200, &html, 100).unwrap_err(),
            Skip::Head
        );
        let range = headers(&[("range", "bytes=0-10")]);
        assert_eq!(
            plan(&Method::GET, &range, 200, &html, 100).unwrap_err(),
            Skip::Range
        );
        for s in [204, 206, 304, 404] {
            assert_eq!(
                plan(&Method::GET, &none, s, &html, 100).unwrap_err(),
                Skip::Status
            );
        }
        let css = headers(&[("content-type", "text/css")]);
        assert_eq!(
            plan(&Method::GET, &none, 200, &css, 100).unwrap_err(),
            Skip::NotHtml
        );
        let zstd = headers(&[("content-type", "text/html"), ("content-encoding", "zstd")]);
        assert_eq!(
            plan(&Method::GET, &none, 200, &zstd, 100).unwrap_err(),
            Skip::Encoding
        );
        let big = headers(&[("content-type", "text/html"), ("content-length", "101")]);
        assert_eq!(
            plan(&Method::GET, &none, 200, &big, 100).unwrap_err(),
            Skip::TooLarge
        );
        let utf16 = headers(&[("content-type", "text/html; charset=utf-16")]);
        assert_eq!(
            plan(&Method::GET, &none, 200, &utf16, 100).unwrap_err(),
            Skip::Charset
        );
    }

    fn body(max_body: usize, max_memory: usize) -> BodyRewriter {
        body_with(max_body, max_memory, None, "CID")
    }

    fn body_with(
        max_body: usize,
        max_memory: usize,
        slot: Option<TemplateSlot>,
        click_id: &str,
    ) -> BodyRewriter {
        let cake: Arc<dyn clickstamp_plugins::Network> =
            Arc::from(builtin_network("cake").unwrap());
        let stamper = Arc::new(LinkStamper::new(
            vec![OfferTarget {
                id: "o".into(),
                network: cake,
                patterns: vec![OfferPattern::parse("https://net.example/offer").unwrap()],
            }],
            LinkMode::Stamp,
        ));
        let plan = Plan {
            charset: Charset::Sniff,
            decode: None,
        };
        BodyRewriter::new(
            &plan,
            stamper,
            PageOptions {
                click_id: click_id.into(),
                sdk_src: Some("/sdk/clickstamp.js".into()),
                max_memory,
            },
            max_body,
            1 << 20,
            slot,
        )
    }

    fn run(b: &mut BodyRewriter, page: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = page.chunks(step.max(1)).collect();
        if chunks.is_empty() {
            out.extend(b.feed(b"", true).unwrap());
        }
        for (i, c) in chunks.iter().enumerate() {
            out.extend(b.feed(c, i + 1 == chunks.len()).unwrap());
        }
        out
    }

    #[test]
    fn links_sdk_and_everything_else_byte_identical_in_any_chunking() {
        let page = "<!doctype html><html><head><title>x</title></head><body>\
            <a  class=cta href=\"https://net.example/offer?a=1\">Go</a>\
            <a href='https://other.example/'>no</a>\
            <form method=post action=\"https://x.example/?s={clickid}\"></form>\
            <meta http-equiv=\"Refresh\" content=\"9; url=https://net.example/offer\">\
            <area href=https://net.example/offer/2>\
            </body></html>";
        let expected = page
            .replace(
                "<a  class=cta href=\"https://net.example/offer?a=1\">",
                "<a class=cta href=\"https://net.example/offer?a=1&s2=CID\">",
            )
            .replace("?s={clickid}", "?s=CID")
            .replace(
                "9; url=https://net.example/offer\"",
                "9; url=https://net.example/offer?s2=CID\"",
            )
            .replace(
                "<area href=https://net.example/offer/2>",
                "<area href=\"https://net.example/offer/2?s2=CID\">",
            )
            .replace(
                "</head>",
                "<script src=\"/sdk/clickstamp.js\" async></script></head>",
            );
        for step in [1, 2, 3, 7, 64, 4096] {
            let mut b = body(1 << 20, 1 << 20);
            let out = run(&mut b, page.as_bytes(), step);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "step {step}");
            assert_eq!(b.changed(), 4);
            assert!(b.take_failure().is_none());
        }
    }

    #[test]
    fn over_the_size_limit_nothing_changes() {
        let page = format!(
            "<p>{}</p><a href=\"https://net.example/offer\">x</a>",
            "y".repeat(1000)
        );
        let mut b = body(100, 1 << 20);
        let out = run(&mut b, page.as_bytes(), 200);
        assert_eq!(out, page.as_bytes());
    }

    #[test]
    fn a_failure_passes_the_rest_through() {
        // A start tag bigger than the memory limit makes lol-html give up.
        let huge_attr = "z".repeat(64 * 1024);
        let page = format!(
            "<a href=\"https://net.example/offer\">a</a><a data-x=\"{huge_attr}\" href=\"https://net.example/offer\">b</a>\
             <a href=\"https://net.example/offer\">c</a>"
        );
        let mut b = body(1 << 20, 4096);
        let out = run(&mut b, page.as_bytes(), 1000);
        let text = String::from_utf8(out).unwrap();
        assert!(b.take_failure().is_some(), "the failure is reported");
        assert!(text.starts_with("<a href=\"https://net.example/offer?s2=CID\">a</a>"));
        assert!(text.ends_with(&format!(
            "{huge_attr}\" href=\"https://net.example/offer\">b</a><a href=\"https://net.example/offer\">c</a>"
        )));
        assert_eq!(
            text.len(),
            page.len() + "?s2=CID".len(),
            "nothing lost, nothing duplicated"
        );
    }

    const FIRST: &str = "0123456789abcdef0123456789abcdef";
    const SECOND: &str = "fedcba9876543210fedcba9876543210";

    /// A small page with every kind of place a replay must hand over carefully.
    fn template_page() -> String {
        let mut page = String::from(
            "<!doctype html><html><head><meta charset=utf-8><title>t &lt; u</title>\
             <script>if (a<b && c>d) { x = '<a href=\"https://net.example/offer\">'; }</script>\
             <!-- <a href=\"https://net.example/offer\"> --></head><body>",
        );
        for i in 0..6 {
            page.push_str(&format!(
                "<p class=c{i}>Text {i} < more</p>\
                 <a title=\"1<2\" href=\"https://net.example/offer?x={i}\">Go {i}</a>\
                 <a href='https://other.example/{i}'>no</a>\
                 <form action=\"/go/o?click={{clickid}}\"></form>"
            ));
        }
        page.push_str(
            "<meta http-equiv=refresh content=\"5; url=https://net.example/offer\"></body></html>",
        );
        page
    }

    fn cache_slot() -> TemplateSlot {
        TemplateSlot {
            cache: Arc::new(super::super::template::TemplateCache::new(1 << 20)),
            key: "/lp\ntext/html".into(),
        }
    }

    #[test]
    fn a_template_replays_exactly_what_lol_html_makes_for_another_click() {
        let page = template_page();
        let slot = cache_slot();
        let mut first = body_with(1 << 20, 1 << 20, Some(slot.clone()), FIRST);
        let recorded = run(&mut first, page.as_bytes(), 4096);
        assert_eq!(first.template_outcome(), Some(TemplateOutcome::Recorded));
        assert_eq!(slot.cache.len(), 1);
        assert!(String::from_utf8_lossy(&recorded).contains(FIRST));
        for step in [1, 5, 64, 4096] {
            let mut fresh = body_with(1 << 20, 1 << 20, None, SECOND);
            let expected = run(&mut fresh, page.as_bytes(), step);
            let mut replayed = body_with(1 << 20, 1 << 20, Some(slot.clone()), SECOND);
            let got = run(&mut replayed, page.as_bytes(), step);
            assert_eq!(replayed.template_outcome(), Some(TemplateOutcome::Replayed));
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(expected).unwrap(),
                "step {step}"
            );
            assert_eq!(replayed.changed(), fresh.changed());
            assert!(replayed.take_failure().is_none());
        }
    }

    #[test]
    fn a_page_that_differs_anywhere_comes_out_exactly_as_lol_html_makes_it() {
        let page = template_page();
        let slot = cache_slot();
        let mut first = body_with(1 << 20, 1 << 20, Some(slot.clone()), FIRST);
        run(&mut first, page.as_bytes(), 4096);
        let template = slot.cache.get(&slot.key).unwrap();
        let edits: [&[u8]; 4] = [b"<", b"\"", b"x", b"<a href=https://net.example/offer>"];
        let mut diverged = 0;
        for at in (0..=page.len()).step_by(3) {
            for (k, insert) in edits.iter().enumerate() {
                // Replace one byte (or cut the page short at the end) with an edit.
                let mut changed = page.as_bytes()[..at].to_vec();
                changed.extend_from_slice(insert);
                changed.extend_from_slice(page.as_bytes().get(at + 1..).unwrap_or_default());
                if k == 0 && at % 2 == 0 {
                    changed = page.as_bytes()[..at].to_vec(); // truncated
                }
                let step = [7, 97, 4096][at % 3];
                let mut fresh = body_with(1 << 20, 1 << 20, None, SECOND);
                let expected = run(&mut fresh, &changed, step);
                // Each case starts from the original template, not the last recording.
                let own = TemplateSlot {
                    cache: Arc::new(super::super::template::TemplateCache::new(1 << 20)),
                    key: slot.key.clone(),
                };
                own.cache.put(own.key.clone(), (*template).clone());
                let mut replayed = body_with(1 << 20, 1 << 20, Some(own), SECOND);
                let got = run(&mut replayed, &changed, step);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected),
                    "edit {k} at byte {at}, chunks of {step}"
                );
                assert!(replayed.take_failure().is_none(), "edit {k} at byte {at}");
                if replayed.template_outcome() == Some(TemplateOutcome::Diverged) {
                    diverged += 1;
                }
            }
        }
        assert!(
            diverged > page.len(),
            "the edits really diverged ({diverged})"
        );
    }

    #[test]
    fn a_diverged_page_becomes_the_new_template() {
        let page = template_page();
        let slot = cache_slot();
        run(
            &mut body_with(1 << 20, 1 << 20, Some(slot.clone()), FIRST),
            page.as_bytes(),
            512,
        );
        let other = page.replace("Text 3", "Text three");
        let mut b = body_with(1 << 20, 1 << 20, Some(slot.clone()), SECOND);
        run(&mut b, other.as_bytes(), 512);
        assert_eq!(b.template_outcome(), Some(TemplateOutcome::Diverged));
        let mut again = body_with(1 << 20, 1 << 20, Some(slot.clone()), FIRST);
        run(&mut again, other.as_bytes(), 512);
        assert_eq!(again.template_outcome(), Some(TemplateOutcome::Replayed));
    }

    #[test]
    fn a_failure_while_recording_is_reported_and_never_becomes_a_template() {
        let huge_attr = "z".repeat(64 * 1024);
        let page = format!(
            "<a href=\"https://net.example/offer\">a</a><a data-x=\"{huge_attr}\" href=\"https://net.example/offer\">b</a><p>tail</p>"
        );
        let slot = cache_slot();
        for _ in 0..2 {
            let mut b = body_with(1 << 20, 4096, Some(slot.clone()), FIRST);
            let out = run(&mut b, page.as_bytes(), 1000);
            assert!(b.take_failure().is_some(), "the failure is reported");
            assert!(out.ends_with(b"<p>tail</p>"), "the page is whole");
            assert_eq!(b.template_outcome(), Some(TemplateOutcome::NotRecorded));
        }
        assert!(slot.cache.is_empty());
    }
}
