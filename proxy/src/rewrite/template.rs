//! Page templates: replaying a page's stamps without parsing it again.
//!
//! A landing page is served to thousands of visitors, byte for byte the same except
//! for the click ID clickstamp stamps into it. The first time a page goes through
//! lol-html, the pass also records *where* it changed the page: the source range of
//! every tag it re-serialised, where that tag landed in the output, and where the click
//! ID sits inside it. That record is a [`PageTemplate`].
//!
//! The next response for the same path is compared with the template's source as it
//! streams in (a `memcmp`, far cheaper than tokenising HTML). While it matches, the
//! output is the template's output with this visitor's click ID written into the
//! slots. At the first byte that differs, the page goes back to lol-html (see
//! [`Replay`]): lol-html is still the parser of record, the template only remembers
//! what it did.
//!
//! See `TEMPLATES.md` beside this file for why the hand-over is safe.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

/// One place where lol-html's output differs from its input: a whole tag (a changed
/// start tag, or the `</head>` the SDK tag was inserted before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedEdit {
    /// The tag's byte range in the page as the origin sent it (decoded).
    pub source: (usize, usize),
    /// How many output bytes lol-html had emitted when it reached the tag.
    pub output_start: usize,
}

/// Why a recorded pass did not become a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The recorded edits do not explain the output (overlap, out of order, or the
    /// bytes between edits differ): lol-html did something the template cannot model.
    #[error("the recorded edits do not account for the output")]
    Inconsistent,
    /// The click ID already occurs in a changed tag of the origin's page, so its slots
    /// cannot be told apart from the page's own text.
    #[error("the click ID occurs in the origin's page")]
    ClickIdInSource,
}

#[derive(Debug, Clone, Copy)]
struct Edit {
    source: (usize, usize),
    output: (usize, usize),
    /// Output length minus source length of every edit up to and including this one.
    delta_after: isize,
}

/// A page as the origin sent it, and what lol-html made of it.
#[derive(Debug, Clone)]
pub struct PageTemplate {
    source: Vec<u8>,
    output: Vec<u8>,
    edits: Vec<Edit>,
    /// Source ranges of every start tag (and every edit), sorted by start: emitting
    /// stops at the start of a tag that has not fully matched yet.
    guards: Vec<(usize, usize)>,
    /// Output offsets where the click ID goes.
    slots: Vec<usize>,
    click_id_len: usize,
    changed: usize,
}

impl PageTemplate {
    /// Build a template from one complete lol-html pass over `source` that produced
    /// `output` stamped with `click_id`. `edits` come from the handlers that changed
    /// something; `tags` are the source ranges of every start tag the pass saw.
    ///
    /// Verified, not trusted: every byte outside the edits must be equal in source and
    /// output, or there is no template.
    pub fn build(
        source: Vec<u8>,
        output: Vec<u8>,
        mut recorded: Vec<RecordedEdit>,
        mut tags: Vec<(usize, usize)>,
        click_id: &str,
        changed: usize,
    ) -> Result<PageTemplate, TemplateError> {
        recorded.sort_by_key(|e| e.source.0);
        recorded.dedup_by_key(|e| e.source.0);
        let mut edits = Vec::with_capacity(recorded.len());
        let mut delta: isize = 0;
        for (i, e) in recorded.iter().enumerate() {
            let (a, b) = e.source;
            let next_source_start = recorded.get(i + 1).map_or(source.len(), |n| n.source.0);
            let next_output_start = recorded
                .get(i + 1)
                .map_or(output.len() as isize, |n| n.output_start as isize);
            // The unchanged run after this edit is copied verbatim, so it fixes where
            // this edit's output ends.
            let output_end = next_output_start - (next_source_start as isize - b as isize);
            let plain_start = a as isize + delta;
            if a > b
                || b > next_source_start
                || e.output_start > output.len()
                || e.output_start as isize != plain_start
                || output_end < e.output_start as isize
            {
                return Err(TemplateError::Inconsistent);
            }
            delta += (output_end - e.output_start as isize) - (b - a) as isize;
            edits.push(Edit {
                source: (a, b),
                output: (e.output_start, output_end as usize),
                delta_after: delta,
            });
        }
        if output.len() as isize - source.len() as isize != delta {
            return Err(TemplateError::Inconsistent);
        }
        // Every unchanged run must be byte-identical.
        let mut source_at = 0usize;
        let mut output_at = 0usize;
        for e in &edits {
            let run = e.source.0 - source_at;
            if source[source_at..e.source.0] != output[output_at..output_at + run] {
                return Err(TemplateError::Inconsistent);
            }
            source_at = e.source.1;
            output_at = e.output.1;
        }
        if source[source_at..] != output[output_at..] {
            return Err(TemplateError::Inconsistent);
        }
        let mut slots = Vec::new();
        let needle = click_id.as_bytes();
        if !needle.is_empty() {
            for e in &edits {
                if memchr::memmem::find(&source[e.source.0..e.source.1], needle).is_some() {
                    return Err(TemplateError::ClickIdInSource);
                }
                let region = &output[e.output.0..e.output.1];
                slots.extend(memchr::memmem::find_iter(region, needle).map(|p| e.output.0 + p));
            }
        }
        tags.extend(edits.iter().map(|e| e.source));
        tags.sort_unstable();
        tags.dedup();
        Ok(PageTemplate {
            source,
            output,
            edits,
            guards: tags,
            slots,
            click_id_len: needle.len(),
            changed,
        })
    }

    /// The page as the origin sent it.
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// Length of the output for the whole page.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Attributes changed in the page.
    pub fn changed(&self) -> usize {
        self.changed
    }

    /// Heap bytes held, for the cache's budget.
    pub fn size(&self) -> usize {
        self.source.len()
            + self.output.len()
            + self.edits.len() * std::mem::size_of::<Edit>()
            + self.guards.len() * 16
            + self.slots.len() * 8
    }

    /// The furthest source offset whose output can be sent once `matched` bytes of a
    /// new response equal the template's source: whatever follows, lol-html would
    /// produce the same bytes up to there. That is before the last `<` (a tag may be
    /// starting) and never inside a tag that has not matched completely.
    pub fn safe_source_end(&self, matched: usize) -> usize {
        let matched = matched.min(self.source.len());
        if matched == self.source.len() {
            return matched;
        }
        let mut end = memchr::memrchr(b'<', &self.source[..matched]).unwrap_or(matched);
        // A guard (tag) that starts before `end` and ends after it: stop at its start.
        let i = self.guards.partition_point(|g| g.0 < end);
        if i > 0 {
            let g = self.guards[i - 1];
            if g.1 > end {
                end = g.0;
            }
        }
        end
    }

    /// The output offset that corresponds to source offset `source_end`, which must be
    /// a value [`Self::safe_source_end`] returned (so not inside an edit).
    pub fn output_offset(&self, source_end: usize) -> usize {
        if source_end >= self.source.len() {
            return self.output.len();
        }
        // Edits that ended at or before `source_end` shifted it.
        let i = self.edits.partition_point(|e| e.source.1 <= source_end);
        let delta = if i == 0 {
            0
        } else {
            self.edits[i - 1].delta_after
        };
        (source_end as isize + delta) as usize
    }

    /// Output bytes `range`, with `click_id` in every slot.
    pub fn render(&self, range: Range<usize>, click_id: &[u8], out: &mut Vec<u8>) {
        let base = out.len();
        out.extend_from_slice(&self.output[range.clone()]);
        if click_id.len() != self.click_id_len {
            return; // never: click IDs have one length; the slots stay as recorded
        }
        let first = self
            .slots
            .partition_point(|&s| s + self.click_id_len <= range.start);
        for &slot in &self.slots[first..] {
            if slot >= range.end {
                break;
            }
            // A slot may straddle the range's edges: write the overlapping part.
            let from = slot.max(range.start);
            let to = (slot + self.click_id_len).min(range.end);
            out[base + from - range.start..base + to - range.start]
                .copy_from_slice(&click_id[from - slot..to - slot]);
        }
    }
}

/// The templates of one campaign's pages, by request path, within a byte budget
/// (oldest out first).
///
/// A path whose page keeps changing (a per-request token in the HTML) would be
/// recorded on every response and never replayed; after [`VOLATILE_STREAK`] divergences
/// in a row it is served by plain lol-html, recording again only now and then.
#[derive(Debug)]
pub struct TemplateCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

/// Divergences in a row after which a path counts as volatile.
pub const VOLATILE_STREAK: u32 = 4;

/// A volatile path records again once in this many responses.
pub const VOLATILE_RETRY_EVERY: u32 = 256;

/// Volatile paths remembered at most (the map is cleared when full).
const MAX_VOLATILE_KEYS: usize = 4096;

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<String, Arc<PageTemplate>>,
    order: VecDeque<String>,
    bytes: usize,
    /// Divergences in a row and responses since, per path.
    streaks: HashMap<String, (u32, u32)>,
}

/// What a response to a path should do.
#[derive(Debug)]
pub enum Lookup {
    /// Replay this template.
    Replay(Arc<PageTemplate>),
    /// Go through lol-html and record a template.
    Record,
    /// Go through lol-html only (a volatile path).
    Plain,
}

impl TemplateCache {
    /// A cache holding at most `max_bytes` of templates.
    pub fn new(max_bytes: usize) -> Self {
        TemplateCache {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The template for `key`, if one was recorded.
    pub fn get(&self, key: &str) -> Option<Arc<PageTemplate>> {
        self.inner.lock().map.get(key).cloned()
    }

    /// What a new response for `key` should do.
    pub fn lookup(&self, key: &str) -> Lookup {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.map.get(key) {
            return Lookup::Replay(t.clone());
        }
        match inner.streaks.get_mut(key) {
            Some((streak, since)) if *streak >= VOLATILE_STREAK => {
                *since += 1;
                if *since % VOLATILE_RETRY_EVERY == 0 {
                    Lookup::Record
                } else {
                    Lookup::Plain
                }
            }
            _ => Lookup::Record,
        }
    }

    /// A response for `key` differed from its template: forget the template, and say
    /// whether the response should record a new one (not once the path is volatile).
    pub fn diverged(&self, key: &str) -> bool {
        let mut inner = self.inner.lock();
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= old.size();
            inner.order.retain(|k| k != key);
        }
        if inner.streaks.len() >= MAX_VOLATILE_KEYS && !inner.streaks.contains_key(key) {
            inner.streaks.clear();
        }
        let entry = inner.streaks.entry(key.to_string()).or_insert((0, 0));
        entry.0 += 1;
        entry.0 < VOLATILE_STREAK
    }

    /// A response for `key` matched its template to the end.
    pub fn replayed(&self, key: &str) {
        let mut inner = self.inner.lock();
        if !inner.streaks.is_empty() {
            inner.streaks.remove(key);
        }
    }

    /// Keep `template` for `key`, replacing what was there and evicting the oldest
    /// entries until it fits. A template bigger than the whole budget is not kept.
    pub fn put(&self, key: String, template: PageTemplate) {
        let size = template.size();
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.map.remove(&key) {
            inner.bytes -= old.size();
            inner.order.retain(|k| k != &key);
        }
        while inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.map.remove(&oldest) {
                inner.bytes -= old.size();
            }
        }
        inner.bytes += size;
        inner.order.push_back(key.clone());
        inner.map.insert(key, Arc::new(template));
    }

    /// Templates held.
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether no template is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response being answered from a template: how far it matched and how much of
/// the template's output went out.
#[derive(Debug)]
pub struct Replay {
    template: Arc<PageTemplate>,
    matched: usize,
    emitted: usize,
}

/// What a chunk did to a replay.
#[derive(Debug)]
pub enum ReplayStep {
    /// Still matching; send these bytes.
    Matched(Vec<u8>),
    /// The response differs from the template from source offset `matched` on (or
    /// ended early, or ran longer). Nothing of this chunk was sent: hand
    /// `template.source()[..matched]` and the chunk to lol-html, and drop the first
    /// `emitted` bytes of its output (they went out already).
    Diverged {
        /// Source bytes matched before this chunk.
        matched: usize,
        /// Output bytes already sent.
        emitted: usize,
    },
}

impl Replay {
    /// Start replaying `template`.
    pub fn new(template: Arc<PageTemplate>) -> Self {
        Replay {
            template,
            matched: 0,
            emitted: 0,
        }
    }

    /// The template being replayed.
    pub fn template(&self) -> &Arc<PageTemplate> {
        &self.template
    }

    /// Feed the next chunk of the response (`end` on the last).
    pub fn feed(&mut self, chunk: &[u8], end: bool, click_id: &[u8]) -> ReplayStep {
        let source = self.template.source();
        let until = self.matched + chunk.len();
        let same = until <= source.len() && source[self.matched..until] == *chunk;
        if !same || (end && until != source.len()) {
            return ReplayStep::Diverged {
                matched: self.matched,
                emitted: self.emitted,
            };
        }
        self.matched = until;
        let safe = if end {
            self.template.output_len()
        } else {
            self.template
                .output_offset(self.template.safe_source_end(self.matched))
        };
        let mut out = Vec::with_capacity(safe.saturating_sub(self.emitted));
        if safe > self.emitted {
            self.template.render(self.emitted..safe, click_id, &mut out);
            self.emitted = safe;
        }
        ReplayStep::Matched(out)
    }
}

/// Everything a lol-html pass records so that it can become a template.
#[derive(Debug, Default)]
pub struct Recording {
    /// The page as it came in (decoded).
    pub source: Vec<u8>,
    /// Everything lol-html emitted.
    pub output: Vec<u8>,
}

/// Where a finished recording goes: a cache and the key it is kept under.
#[derive(Debug, Clone)]
pub struct TemplateSlot {
    /// The campaign's cache.
    pub cache: Arc<TemplateCache>,
    /// Request path and content type.
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str, output: &str, edits: &[((usize, usize), usize)]) -> PageTemplate {
        PageTemplate::build(
            source.as_bytes().to_vec(),
            output.as_bytes().to_vec(),
            edits
                .iter()
                .map(|&(source, output_start)| RecordedEdit {
                    source,
                    output_start,
                })
                .collect(),
            Vec::new(),
            "CID",
            edits.len(),
        )
        .unwrap()
    }

    #[test]
    fn edits_that_do_not_explain_the_output_are_refused() {
        let src = b"<a href=x>y</a>".to_vec();
        let out = b"<a href=\"x?s=CID\">z</a>".to_vec();
        let edits = vec![RecordedEdit {
            source: (0, 10),
            output_start: 0,
        }];
        // The text after the tag differs ("y" vs "z"): no template.
        assert_eq!(
            PageTemplate::build(src, out, edits, Vec::new(), "CID", 1).unwrap_err(),
            TemplateError::Inconsistent
        );
    }

    #[test]
    fn replay_renders_the_new_click_id_in_every_chunking() {
        let src = "<p>hi</p><a href=x>y</a><b>z</b>";
        let out = "<p>hi</p><a href=\"x?s=CID\">y</a><b>z</b>";
        let t = Arc::new(template(src, out, &[((9, 19), 9)]));
        for step in 1..src.len() {
            let mut r = Replay::new(t.clone());
            let mut sent = Vec::new();
            let chunks: Vec<&[u8]> = src.as_bytes().chunks(step).collect();
            for (i, c) in chunks.iter().enumerate() {
                match r.feed(c, i + 1 == chunks.len(), b"XYZ") {
                    ReplayStep::Matched(o) => sent.extend(o),
                    ReplayStep::Diverged { .. } => panic!("step {step}: diverged"),
                }
            }
            assert_eq!(
                String::from_utf8(sent).unwrap(),
                out.replace("CID", "XYZ"),
                "step {step}"
            );
        }
    }

    #[test]
    fn nothing_inside_an_unfinished_tag_is_sent() {
        let src = "<p>hi</p><a href=x>y</a>";
        let out = "<p>hi</p><a href=\"x?s=CID\">y</a>";
        let t = Arc::new(template(src, out, &[((9, 19), 9)]));
        let mut r = Replay::new(t);
        // Up to the middle of the <a> tag: only "<p>hi</p>" may go out.
        match r.feed(b"<p>hi</p><a hr", false, b"XYZ") {
            ReplayStep::Matched(o) => assert_eq!(o, b"<p>hi</p>"),
            ReplayStep::Diverged { .. } => panic!("diverged"),
        }
        match r.feed(b"EF", false, b"XYZ") {
            ReplayStep::Diverged { matched, emitted } => {
                assert_eq!((matched, emitted), (14, 9));
            }
            ReplayStep::Matched(_) => panic!("should diverge"),
        }
    }

    #[test]
    fn a_tag_holding_a_less_than_sign_is_held_back_whole() {
        // The last '<' before the cut is inside an attribute of a tag that started earlier.
        let src = "<i>a</i><a title=\"1<2\" href=x>b</a>";
        let out = "<i>a</i><a title=\"1<2\" href=\"x?s=CID\">b</a>";
        let mut t = template(src, out, &[((8, 30), 8)]);
        t.guards = vec![(0, 3), (8, 30)];
        assert_eq!(t.safe_source_end(25), 8, "the tag has not ended");
        // Finished, but its '<' inside the title is the last one: still held (a
        // conservative choice; the next '<' releases it).
        assert_eq!(t.safe_source_end(31), 8);
        assert_eq!(t.safe_source_end(32), 31);
        let grown = "<a title=\"1<2\" href=\"x?s=CID\">".len() - 22;
        assert_eq!(t.output_offset(31), 31 + grown);
    }

    #[test]
    fn a_response_that_ends_early_or_runs_long_diverges() {
        let src = "<p>hi</p>";
        let t = Arc::new(template(src, src, &[]));
        let mut r = Replay::new(t.clone());
        assert!(matches!(
            r.feed(b"<p>hi", true, b"X"),
            ReplayStep::Diverged { .. }
        ));
        let mut r = Replay::new(t);
        assert!(matches!(
            r.feed(b"<p>hi</p>!", false, b"X"),
            ReplayStep::Diverged { .. }
        ));
    }

    #[test]
    fn the_cache_keeps_within_its_budget_oldest_out_first() {
        let mk = |n: usize| template(&"x".repeat(n), &"x".repeat(n), &[]);
        let cache = TemplateCache::new(1000);
        cache.put("a".into(), mk(200));
        cache.put("b".into(), mk(200));
        assert_eq!(cache.len(), 2);
        cache.put("c".into(), mk(200)); // a + b + c = 1200 > 1000: "a" goes
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        cache.put("huge".into(), mk(2000));
        assert!(
            cache.get("huge").is_none(),
            "bigger than the budget: not kept"
        );
        cache.put("b".into(), mk(100)); // replacing frees the old one
        assert!(cache.get("b").is_some());
    }

    #[test]
    fn a_path_that_keeps_changing_stops_recording_and_retries_now_and_then() {
        let cache = TemplateCache::new(1 << 20);
        assert!(matches!(cache.lookup("/p"), Lookup::Record));
        for _ in 1..VOLATILE_STREAK {
            assert!(cache.diverged("/p"), "still worth recording");
        }
        assert!(!cache.diverged("/p"), "volatile now");
        let records = (0..VOLATILE_RETRY_EVERY * 2)
            .filter(|_| matches!(cache.lookup("/p"), Lookup::Record))
            .count();
        assert_eq!(
            records, 2,
            "one recording per {VOLATILE_RETRY_EVERY} responses"
        );
        cache.replayed("/p");
        assert!(
            matches!(cache.lookup("/p"), Lookup::Record),
            "a match clears the streak"
        );
        assert!(matches!(cache.lookup("/other"), Lookup::Record));
    }
}
