//! Fake ad platforms on loopback: Meta's Conversions API, Google Ads click-conversion
//! uploads (with an OAuth token endpoint), TikTok's Events API and a webhook
//! receiver. Each checks what the real one checks — path, credentials, required
//! fields and their types, batch limits, timestamp rules — and answers as the real
//! one documents: success, partial failure, a 400 with an error object; a test can
//! queue other answers (429 with `Retry-After`, 500) ahead of the normal ones.

use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which platform the fake plays, with the credentials it accepts.
#[derive(Debug, Clone)]
pub enum Kind {
    Meta {
        pixel_id: String,
        access_token: String,
    },
    GoogleAds {
        customer_id: String,
        developer_token: String,
        /// The access token the token endpoint hands out (and uploads must carry).
        access_token: String,
        refresh_token: String,
    },
    TikTok {
        pixel_code: String,
        access_token: String,
    },
    Webhook,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the fake answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An answer queued ahead of the platform's own.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<Received>,
    /// Events accepted (Meta/TikTok `data[]` items, Google conversions, webhook bodies).
    accepted: Vec<Value>,
    canned: VecDeque<Canned>,
    /// Google Ads: click ids whose rows fail with a per-row error.
    failing_click_ids: HashSet<String>,
}

/// A running fake platform. Stops accepting when dropped.
#[derive(Debug)]
pub struct FakePlatform {
    pub addr: SocketAddr,
    kind: Kind,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakePlatform {
    pub fn start(kind: Kind) -> FakePlatform {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake platform");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, k) = (state.clone(), stop.clone(), kind.clone());
        std::thread::spawn(move || loop {
            if sp.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let (st, k) = (st.clone(), k.clone());
                    std::thread::spawn(move || serve(stream, &k, &st));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        });
        FakePlatform {
            addr,
            kind,
            state,
            stop,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next request(s) with `answers`, in order, before the normal ones.
    pub fn queue(&self, answers: Vec<Canned>) {
        self.state.lock().unwrap().canned.extend(answers);
    }

    /// Google Ads: rows for this click id fail with a per-row error.
    pub fn fail_click_id(&self, click_id: &str) {
        self.state
            .lock()
            .unwrap()
            .failing_click_ids
            .insert(click_id.to_string());
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to the platform's event path (not its token endpoint).
    pub fn event_requests(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != "/token")
            .collect()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Wait until `n` events were accepted (or `timeout` passes); returns them.
    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, kind: &Kind, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    while let Some(req) = crate::http::read_request(&mut reader) {
        let mut received = Received {
            at: Instant::now(),
            method: req.method,
            path: req.target,
            headers: req.headers,
            body: req.body,
            status: 0,
        };
        let canned = state.lock().unwrap().canned.pop_front();
        let (status, extra, answer) = match canned {
            Some(c) => {
                // `X-Delay-Ms` on a canned answer holds it back: a slow platform.
                if let Some((_, ms)) = c.headers.iter().find(|(k, _)| k == "X-Delay-Ms") {
                    received.status = c.status;
                    state.lock().unwrap().requests.push(received.clone());
                    std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\n\r\n{}",
                        c.status,
                        c.body.len(),
                        c.body
                    );
                    continue;
                }
                (c.status, c.headers, c.body)
            }
            None => {
                let (status, answer, accepted) = answer(kind, &received, state);
                state.lock().unwrap().accepted.extend(accepted);
                (status, Vec::new(), answer.to_string())
            }
        };
        received.status = status;
        state.lock().unwrap().requests.push(received);
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            answer.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err()
            || stream.write_all(answer.as_bytes()).is_err()
        {
            return;
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Meta's error object.
fn meta_error(code: i64, message: &str) -> (u16, Value, Vec<Value>) {
    (
        400,
        json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}}),
        Vec::new(),
    )
}

fn google_error(status: u16, rpc: &str, message: &str) -> (u16, Value, Vec<Value>) {
    (
        status,
        json!({"error": {"code": status, "message": message, "status": rpc}}),
        Vec::new(),
    )
}

/// The platform's own answer to `r`, and the events it accepted.
fn answer(kind: &Kind, r: &Received, state: &Mutex<State>) -> (u16, Value, Vec<Value>) {
    if r.method != "POST" {
        return (405, json!({"error": "POST only"}), Vec::new());
    }
    match kind {
        Kind::Meta {
            pixel_id,
            access_token,
        } => meta(r, pixel_id, access_token),
        Kind::GoogleAds {
            customer_id,
            developer_token,
            access_token,
            refresh_token,
        } => google(
            r,
            customer_id,
            developer_token,
            access_token,
            refresh_token,
            state,
        ),
        Kind::TikTok {
            pixel_code,
            access_token,
        } => tiktok(r, pixel_code, access_token),
        Kind::Webhook => (200, json!({"ok": true}), vec![r.json()]),
    }
}

fn meta(r: &Received, pixel_id: &str, access_token: &str) -> (u16, Value, Vec<Value>) {
    if r.path.split('?').next() != Some(&format!("/v21.0/{pixel_id}/events")) {
        return meta_error(803, &format!("Unsupported post request: {}", r.path));
    }
    let body = r.json();
    if body["access_token"].as_str() != Some(access_token) {
        return meta_error(
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Some(data) = body["data"].as_array() else {
        return meta_error(100, "The parameter data is required");
    };
    if data.is_empty() || data.len() > 1000 {
        return meta_error(100, "data must hold 1 to 1000 events");
    }
    let now = now_secs();
    for (i, e) in data.iter().enumerate() {
        let ok_strings = ["event_name", "event_id", "action_source"]
            .iter()
            .all(|k| e[*k].as_str().is_some_and(|s| !s.is_empty()));
        let Some(t) = e["event_time"].as_i64() else {
            return meta_error(
                100,
                &format!("data[{i}].event_time must be an integer of seconds"),
            );
        };
        if !ok_strings || !e["user_data"].is_object() {
            return meta_error(100, &format!("data[{i}] lacks a required parameter"));
        }
        if t > now + 60 || t < now - 7 * 86_400 {
            return meta_error(
                100,
                &format!("data[{i}].event_time is outside the accepted window (7 days back)"),
            );
        }
        if let Some(custom) = e.get("custom_data") {
            if !custom["value"].is_number()
                || custom["currency"].as_str().is_none_or(|c| c.len() != 3)
            {
                return meta_error(
                    100,
                    &format!("data[{i}].custom_data needs value and currency"),
                );
            }
        }
    }
    (
        200,
        json!({"events_received": data.len(), "messages": [], "fbtrace_id": "AbCdEf"}),
        data.clone(),
    )
}

fn date_time_ok(s: &str) -> bool {
    // yyyy-mm-dd hh:mm:ss+hh:mm
    let b = s.as_bytes();
    b.len() == 25
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 | 22 => *c == b':',
            19 => *c == b'+' || *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn google(
    r: &Received,
    customer_id: &str,
    developer_token: &str,
    access_token: &str,
    refresh_token: &str,
    state: &Mutex<State>,
) -> (u16, Value, Vec<Value>) {
    if r.path == "/token" {
        let form = clickstamp_plugins::query::parse_query(&String::from_utf8_lossy(&r.body));
        let field = |k: &str| clickstamp_plugins::query::first_value(&form, k).map(str::to_string);
        let ok = field("grant_type").as_deref() == Some("refresh_token")
            && field("refresh_token").as_deref() == Some(refresh_token)
            && field("client_id").is_some()
            && field("client_secret").is_some();
        return if ok {
            (
                200,
                json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}),
                Vec::new(),
            )
        } else {
            (400, json!({"error": "invalid_grant"}), Vec::new())
        };
    }
    if r.header("authorization") != Some(&format!("Bearer {access_token}")) {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential.",
        );
    }
    if r.header("developer-token") != Some(developer_token) {
        return google_error(401, "UNAUTHENTICATED", "The developer token is not valid.");
    }
    let body = r.json();
    let adjustments = r.path == format!("/v19/customers/{customer_id}:uploadConversionAdjustments");
    if !adjustments && r.path != format!("/v19/customers/{customer_id}:uploadClickConversions") {
        return google_error(404, "NOT_FOUND", &format!("no method at {}", r.path));
    }
    if body["partialFailure"] != json!(true) {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "partial_failure must be true for this method",
        );
    }
    let rows_key = if adjustments {
        "conversionAdjustments"
    } else {
        "conversions"
    };
    let Some(rows) = body[rows_key].as_array() else {
        return google_error(400, "INVALID_ARGUMENT", &format!("{rows_key} is required"));
    };
    if rows.is_empty() || rows.len() > 2000 {
        return google_error(400, "INVALID_ARGUMENT", "1 to 2000 rows per request");
    }
    let action_prefix = format!("customers/{customer_id}/conversionActions/");
    let failing = state.lock().unwrap().failing_click_ids.clone();
    let mut errors = Vec::new();
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let action_ok = row["conversionAction"]
            .as_str()
            .is_some_and(|a| a.starts_with(&action_prefix));
        let problem = if adjustments {
            let ok = action_ok
                && row["adjustmentType"] == json!("RETRACTION")
                && row["orderId"].is_string()
                && row["adjustmentDateTime"].as_str().is_some_and(date_time_ok);
            (!ok).then_some(("conversionAdjustmentUploadError", "INVALID_ADJUSTMENT"))
        } else {
            let ids: Vec<&str> = ["gclid", "gbraid", "wbraid"]
                .iter()
                .filter_map(|k| row[*k].as_str())
                .collect();
            let value_ok = row.get("conversionValue").is_none_or(Value::is_number)
                && (row.get("conversionValue").is_none() || row["currencyCode"].is_string());
            if ids.len() != 1 {
                Some(("conversionUploadError", "EXACTLY_ONE_CLICK_ID_REQUIRED"))
            } else if failing.contains(ids[0]) {
                Some(("conversionUploadError", "UNPARSEABLE_GCLID"))
            } else if !action_ok
                || !row["conversionDateTime"].as_str().is_some_and(date_time_ok)
                || !row["orderId"].is_string()
                || !value_ok
            {
                Some(("fieldError", "REQUIRED"))
            } else {
                None
            }
        };
        match problem {
            Some((family, code)) => {
                errors.push(json!({
                    "errorCode": {family: code},
                    "message": format!("row {i} refused: {code}"),
                    "location": {"fieldPathElements": [{"fieldName": rows_key, "index": i}]}
                }));
                results.push(json!({}));
            }
            None => {
                results.push(json!({"conversionAction": row["conversionAction"]}));
                accepted.push(row.clone());
            }
        }
    }
    let mut answer = json!({"results": results});
    if !errors.is_empty() {
        answer["partialFailureError"] = json!({
            "code": 3,
            "message": format!("{} rows failed", errors.len()),
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v19.errors.GoogleAdsFailure", "errors": errors}]
        });
    }
    (200, answer, accepted)
}

fn tiktok(r: &Received, pixel_code: &str, access_token: &str) -> (u16, Value, Vec<Value>) {
    let error = |code: i64, message: &str| {
        (
            200,
            json!({"code": code, "message": message, "request_id": "req-1", "data": {}}),
            Vec::new(),
        )
    };
    if r.path != "/open_api/v1.3/event/track/" {
        return (
            404,
            json!({"code": 40400, "message": "not found"}),
            Vec::new(),
        );
    }
    if r.header("access-token") != Some(access_token) {
        return error(40105, "The access token is invalid or has been revoked.");
    }
    let body = r.json();
    if body["event_source"] != json!("web") || body["event_source_id"].as_str() != Some(pixel_code)
    {
        return error(
            40002,
            "event_source must be web and event_source_id the pixel code",
        );
    }
    let Some(data) = body["data"].as_array() else {
        return error(40002, "data is required");
    };
    if data.is_empty() || data.len() > 1000 {
        return error(40002, "data must hold 1 to 1000 events");
    }
    let now = now_secs();
    for (i, e) in data.iter().enumerate() {
        let Some(t) = e["event_time"].as_i64() else {
            return error(40002, &format!("data[{i}].event_time must be an integer"));
        };
        if t > now + 60 || t < now - 7 * 86_400 {
            return error(40002, &format!("data[{i}].event_time out of range"));
        }
        if !e["event"].is_string() || !e["event_id"].is_string() || !e["user"].is_object() {
            return error(40002, &format!("data[{i}] lacks event, event_id or user"));
        }
    }
    (
        200,
        json!({"code": 0, "message": "OK", "request_id": "req-1", "data": {}}),
        data.clone(),
    )
}
