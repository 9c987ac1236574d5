//! A small threaded HTTP/1.1 origin on loopback for landing-page tests: keep-alive,
//! Content-Length or chunked framing, bodies written in caller-chosen pieces (so a
//! chunk can end inside an attribute), and a record of every request it received.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a reply's body is framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`, written in the given pieces.
    Length,
    /// `Transfer-Encoding: chunked`, one HTTP chunk per piece.
    Chunked,
}

/// One reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Byte offsets at which the body is split into separately flushed writes.
    pub splits: Vec<usize>,
}

impl Reply {
    /// A 200 with `content_type` and `body`, Content-Length framed, one write.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            framing: Framing::Length,
            splits: Vec::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Use chunked framing, split at `splits`.
    pub fn chunked(mut self, splits: Vec<usize>) -> Reply {
        self.framing = Framing::Chunked;
        self.splits = splits;
        self
    }

    /// Keep Content-Length framing but write in pieces split at `splits`.
    pub fn pieces(mut self, splits: Vec<usize>) -> Reply {
        self.splits = splits;
        self
    }
}

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running origin; stops accepting when dropped.
pub struct OriginServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for OriginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OriginServer({})", self.addr)
    }
}

impl OriginServer {
    /// Serve every request with `handler`.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> OriginServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, c, st) = (seen.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || loop {
            if st.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    *c.lock().unwrap() += 1;
                    let (s, h) = (s.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &s, &*h));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        });
        OriginServer {
            addr,
            seen,
            connections,
            stop,
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

impl Drop for OriginServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    while let Some(read) = crate::http::read_request(&mut reader) {
        let req = Seen {
            method: read.method,
            target: read.target,
            headers: read.headers,
        };
        seen.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        if write_reply(&mut out, &req, &reply).is_err() {
            return;
        }
    }
}

fn write_reply(out: &mut TcpStream, req: &Seen, reply: &Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let bodiless = req.method == "HEAD" || reply.status == 304 || reply.status == 204;
    match reply.framing {
        Framing::Length => head.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
        Framing::Chunked if !bodiless => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Chunked => {}
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.flush()?;
    if bodiless {
        return Ok(());
    }
    let mut cuts = reply.splits.clone();
    cuts.retain(|&c| c > 0 && c < reply.body.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(reply.body.len());
    let mut at = 0;
    for cut in cuts {
        let piece = &reply.body[at..cut];
        at = cut;
        match reply.framing {
            Framing::Length => out.write_all(piece)?,
            Framing::Chunked => {
                out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                out.write_all(piece)?;
                out.write_all(b"\r\n")?;
            }
        }
        out.flush()?;
        // Let each piece travel on its own so the proxy sees it as a separate read.
        std::thread::sleep(Duration::from_millis(1));
    }
    if reply.framing == Framing::Chunked {
        out.write_all(b"0\r\n\r\n")?;
        out.flush()?;
    }
    Ok(())
}

/// A landing page shaped like real ones (~50 KB: head with meta/styles/scripts,
/// navigation, long copy, many links of every kind), as `(original, expected)` where
/// `expected` is the page with exactly the stamped links changed, given `click_id`,
/// offer URL host `net.example` with path `/offer` on a CAKE network (`s2`).
/// Also returns how many links should change.
pub fn landing_page(click_id: &str) -> (String, String, usize) {
    let mut orig = String::new();
    let mut exp = String::new();
    let mut changed = 0;
    let same = |o: &mut String, e: &mut String, s: &str| {
        o.push_str(s);
        e.push_str(s);
    };
    same(&mut orig, &mut exp, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Lose 10 kg by summer — the doctors hate it</title>\n<link rel=\"stylesheet\" href=\"/static/app.css?v=3\">\n<style>body{font:16px/1.5 sans-serif} .cta{background:#f60;color:#fff} a[href*=\"net.example\"]{font-weight:bold}</style>\n<script>window.offer = \"https://net.example/offer?a=1\"; /* not an attribute: untouched */ var html = '<a href=\"https://net.example/offer\">';</script>\n</head>\n<body>\n<!-- <a href=\"https://net.example/offer?a=1\">commented out</a> -->\n<nav><a href=\"/\">Home</a> <a href=\"/about\">About</a> <a href=\"https://other.example/privacy\">Privacy</a></nav>\n");
    let mut i = 0;
    while orig.len() < 48_000 {
        i += 1;
        same(&mut orig, &mut exp, &format!("<section id=\"s{i}\"><h2>Chapter {i}: what they don't tell you</h2>\n<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation &amp; ullamco laboris — “quoted” ünïcödé text.</p>\n<img src=\"/img/{i}.jpg\" alt=\"before and after\" width=\"320\" height=\"200\">\n"));
        // An offer link: stamped.
        let o = format!("<p><a class=\"cta\" href=\"https://net.example/offer?a=1&amp;b={i}\" data-pos=\"{i}\">Get it now</a></p>\n");
        let e = format!("<p><a class=\"cta\" href=\"https://net.example/offer?a=1&amp;b={i}&amp;s2={click_id}\" data-pos=\"{i}\">Get it now</a></p>\n");
        orig.push_str(&o);
        exp.push_str(&e);
        changed += 1;
        // Not ours: byte-identical (including odd quoting and spacing).
        same(&mut orig, &mut exp, &format!("<p><a  href='https://other.example/read?i={i}'   rel=nofollow >Read more</a> <a href=https://net.example/offers/{i}>not the offer path</a> <a href=\"#top\">top</a></p>\n"));
        match i % 4 {
            0 => {
                // A token link to a tracker path: the token is replaced.
                orig.push_str(&format!(
                    "<p><a href=\"/go/demo?click={{clickid}}&amp;pos={i}\">Order</a></p>\n"
                ));
                exp.push_str(&format!(
                    "<p><a href=\"/go/demo?click={click_id}&amp;pos={i}\">Order</a></p>\n"
                ));
                changed += 1;
            }
            1 => {
                // Uppercase host, unquoted: stamped and re-quoted.
                orig.push_str(&format!(
                    "<p><a href=HTTPS://NET.EXAMPLE/offer/{i}>Deal</a></p>\n"
                ));
                exp.push_str(&format!(
                    "<p><a href=\"HTTPS://NET.EXAMPLE/offer/{i}?s2={click_id}\">Deal</a></p>\n"
                ));
                changed += 1;
            }
            2 => {
                // A form to the offer and a token in another style.
                orig.push_str(&format!("<form method=\"post\" action=\"https://net.example/offer?f={i}\"><input name=\"email\" value=\"{{clickid}}\"><button>Go</button></form>\n<p><a href=\"https://partner.example/?sub=[CLICK_ID]\">Partner</a></p>\n"));
                exp.push_str(&format!("<form method=\"post\" action=\"https://net.example/offer?f={i}&s2={click_id}\"><input name=\"email\" value=\"{{clickid}}\"><button>Go</button></form>\n<p><a href=\"https://partner.example/?sub={click_id}\">Partner</a></p>\n"));
                changed += 2;
            }
            _ => {
                same(&mut orig, &mut exp, "<p><a href=\"mailto:help@net.example\">Mail us</a> <a href=\"javascript:void(0)\" onclick=\"location='https://net.example/offer'\">JS</a></p>\n");
            }
        }
    }
    // An image map and a meta refresh at the very end.
    orig.push_str("<map name=\"m\"><area shape=\"rect\" coords=\"0,0,10,10\" href=\"https://net.example/offer/map\"></map>\n");
    exp.push_str(&format!("<map name=\"m\"><area shape=\"rect\" coords=\"0,0,10,10\" href=\"https://net.example/offer/map?s2={click_id}\"></map>\n"));
    changed += 1;
    // (Not inside <noscript>: like a browser with scripting on, lol-html reads that as text.)
    orig.push_str(
        "<meta http-equiv=\"refresh\" content=\"30; url=https://net.example/offer?a=9\">\n",
    );
    exp.push_str(&format!("<meta http-equiv=\"refresh\" content=\"30; url=https://net.example/offer?a=9&s2={click_id}\">\n"));
    changed += 1;
    same(&mut orig, &mut exp, "<footer>© 2025 Example Health Ltd. <a href=\"/terms\">Terms</a></footer>\n</body>\n</html>\n");
    (orig, exp, changed)
}

/// Split points for "awkward" delivery: inside the first offer link's attribute value,
/// inside a tag name, inside a multi-byte character, inside an entity, and 1-byte pieces
/// around them, then every 997 bytes.
pub fn awkward_splits(page: &str) -> Vec<usize> {
    let mut cuts = Vec::new();
    if let Some(i) = page.find("href=\"https://net.example/offer?a=1&amp;b=1") {
        cuts.extend([i + 3, i + 10, i + 11, i + 12, i + 30, i + 38]);
    }
    if let Some(i) = page.find("<section") {
        cuts.extend([i + 1, i + 4]);
    }
    if let Some(i) = page.find('ü') {
        cuts.push(i + 1);
    }
    if let Some(i) = page.find("<meta http-equiv") {
        cuts.extend([i + 20, i + 40]);
    }
    if let Some(i) = page.find("href=HTTPS") {
        cuts.extend([i + 5, i + 6]);
    }
    cuts.extend((1..page.len() / 997).map(|k| k * 997));
    cuts
}
