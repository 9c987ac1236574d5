//! A real headless Chromium, driven over the DevTools protocol (a WebSocket), for the
//! pixel SDK and console tests. Just enough protocol: open a page, navigate, evaluate
//! JavaScript, wait for an element, read cookies, take screenshots.

use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

use crate::instance::TempDir;

/// A running headless Chromium with one page. Killed on drop.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser")
    }
}

impl Browser {
    /// Start Chromium (`chromium` from PATH) with a fresh profile; `extra_flags` are
    /// added to the command line (e.g. `--js-flags=--noexpose_wasm` to take
    /// WebAssembly away). `None` when Chromium is not installed outside CI.
    pub fn start(extra_flags: &[&str]) -> Option<Browser> {
        let chromium = crate::require_program("chromium")?;
        let profile = TempDir::new("chromium");
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra_flags)
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("start chromium");
        let ws_url = wait_for_devtools(&profile.0);
        let (ws, _) =
            tungstenite::connect(ws_url.as_str()).expect("connect to chromium's devtools");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("target id").to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        browser.call_page("Page.enable", json!({}));
        browser.call_page("Runtime.enable", json!({}));
        Some(browser)
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params) {
            Ok(result) => result,
            Err(err) => panic!("{method} failed: {err}"),
        }
    }

    /// One DevTools command; `Err` carries the protocol's error object (e.g. the page
    /// navigated away while an evaluation ran).
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .expect("send to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "chromium did not answer {method}"
            );
            let reply = match self.ws.read().expect("read from chromium") {
                Message::Text(t) => serde_json::from_str::<Value>(&t).expect("devtools JSON"),
                _ => continue,
            };
            if reply["id"].as_u64() == Some(id) {
                if let Some(err) = reply.get("error") {
                    return Err(err.clone());
                }
                return Ok(reply["result"].clone());
            }
        }
    }

    fn call_page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Take WebAssembly away from every document the page loads from now on, as in a
    /// browser or policy that has it off.
    pub fn remove_webassembly(&mut self) {
        self.call_page(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "try { delete globalThis.WebAssembly; } catch (e) {}" }),
        );
    }

    /// Navigate the page to `url` (returns once the navigation is committed).
    pub fn navigate(&mut self, url: &str) {
        self.call_page("Page.navigate", json!({ "url": url }));
    }

    /// Evaluate `expression` in the page and return its value (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call_page(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            return json!({ "__exception": e.to_string() });
        }
        r["result"]["value"].clone()
    }

    /// Poll `expression` until it is `true`, or `timeout` passes; returns whether it was.
    ///
    /// An evaluation the page's own navigation cuts short ("Inspected target navigated
    /// or closed") counts as "not yet": polling across a navigation is what this is for.
    pub fn wait_until(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let session = self.session.clone();
        while Instant::now() < deadline {
            let evaluated = self.try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            );
            if let Ok(r) = evaluated {
                if r.get("exceptionDetails").is_none() && r["result"]["value"] == json!(true) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Poll until an element matches the CSS `selector`, or `timeout` passes.
    pub fn wait_for_selector(&mut self, selector: &str, timeout: Duration) -> bool {
        let probe = format!(
            "document.querySelector({}) !== null",
            serde_json::to_string(selector).expect("a string is JSON")
        );
        self.wait_until(&probe, timeout)
    }

    /// Every cookie the browser holds for the current page's URL, `HttpOnly` ones
    /// included (as DevTools reports them: `name`, `value`, `httpOnly`, `sameSite`...).
    pub fn cookies(&mut self) -> Vec<Value> {
        let r = self.call_page("Network.getCookies", json!({}));
        r["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// A PNG screenshot of the page as it is now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        // Right after a navigation, on a loaded machine, the new page may not be laid
        // out yet ("Cannot take screenshot with 0 width"): ask again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let r = loop {
            let session = self.session.clone();
            match self.try_call(
                Some(&session),
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            ) {
                Ok(r) => break r,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("screenshot not ready ({e}), retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => panic!("Page.captureScreenshot failed: {e}"),
            }
        };
        let data = r["data"].as_str().expect("screenshot data");
        let png = decode_base64(data).expect("DevTools sends base64");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Size the page's viewport (screenshots take this size).
    pub fn set_viewport(&mut self, width: u32, height: u32) {
        self.call_page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
    }
}

/// Standard base64 (with or without padding) to bytes; `None` on a foreign character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium writes the port and the browser endpoint's path to `DevToolsActivePort`.
fn wait_for_devtools(profile: &Path) -> String {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return format!("ws://127.0.0.1:{port}{path}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its devtools port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(
            super::decode_base64("iVBORw0KGgo=").unwrap(),
            b"\x89PNG\r\n\x1a\n"
        );
        assert!(super::decode_base64("a$==").is_none());
    }
}
