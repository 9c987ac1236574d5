//! Whether a response is rewritten, the header edits that go with it, and the body
//! pipeline (decode → stamp → pass through on failure).

use super::charset::{self, Charset};
use super::decode::{Coding, DecodeError, Decoder};
use super::html::{HtmlStamper, PageOptions};
use super::links::LinkStamper;
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

/// One response body on its way through: decode, stamp, and on a rewrite failure
/// pass everything else through unchanged.
#[derive(Debug)]
pub struct BodyRewriter {
    decoder: Option<Decoder>,
    html: Option<HtmlStamper>,
    seen: usize,
    max_body: usize,
    failure: Option<String>,
}

impl BodyRewriter {
    /// A body rewriter for a planned response.
    pub fn new(
        plan: &Plan,
        stamper: Arc<LinkStamper>,
        options: PageOptions,
        max_body: usize,
        max_decoded: usize,
    ) -> Self {
        BodyRewriter {
            decoder: plan.decode.map(|c| Decoder::new(c, max_decoded)),
            html: Some(HtmlStamper::new(stamper, plan.charset, options)),
            seen: 0,
            max_body,
            failure: None,
        }
    }

    /// Process the next chunk of the origin's body; `end` on the last one. Returns the
    /// bytes to send downstream.
    ///
    /// A rewrite failure is recorded (see [`Self::take_failure`]) and never returned:
    /// the page continues untransformed. Only an undecodable body is an `Err`.
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Result<Vec<u8>, DecodeError> {
        let mut plain = match &mut self.decoder {
            Some(d) => d.write(chunk)?,
            None => chunk.to_vec(),
        };
        if end {
            if let Some(d) = &mut self.decoder {
                plain.extend(d.finish()?);
            }
        }
        self.seen += plain.len();
        let Some(html) = &mut self.html else {
            return Ok(plain);
        };
        if self.seen > self.max_body {
            // Past the size limit: keep streaming through the parser (so a tag split
            // across the boundary stays whole) but change nothing more.
            html.freeze();
        }
        let mut out = match html.write(&plain) {
            Ok(out) => out,
            Err(e) => {
                self.failure = Some(e.to_string());
                let flushed = html.take_output();
                self.html = None;
                return Ok(flushed);
            }
        };
        if end {
            match html.end() {
                Ok(rest) => out.extend(rest),
                Err(e) => {
                    self.failure = Some(e.to_string());
                    out.extend(html.take_output());
                }
            }
        }
        Ok(out)
    }

    /// The rewrite failure, once, if there was one.
    pub fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Attributes changed so far.
    pub fn changed(&self) -> usize {
        self.html.as_ref().map_or(0, HtmlStamper::changed)
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
                click_id: "CID".into(),
                sdk_src: Some("/sdk/clickstamp.js".into()),
                max_memory,
            },
            max_body,
            1 << 20,
        )
    }

    fn run(b: &mut BodyRewriter, page: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = page.chunks(step).collect();
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
}
