//! A fake traffic source on loopback: records every postback it receives and answers
//! as told — 200, 500, 429, a 4xx refusal, hang, or refuse connections altogether.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the fake source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    ServerError,
    TooManyRequests,
    /// Refuse the request as a client error with this 4xx status (a source that finds
    /// the relay malformed: final, never worth retrying).
    ClientError(u16),
    /// Accept and never answer.
    Hang,
    /// Close the listening socket: connections are refused.
    Refuse,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    received: Vec<String>,
    listener_alive: bool,
    /// TCP connections accepted so far.
    connections: usize,
}

/// A running fake source. Stops when dropped.
#[derive(Debug)]
pub struct FakeSource {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeSource {
    /// Start answering 200 on a free loopback port.
    pub fn start() -> FakeSource {
        // Outside the ephemeral range, so no one takes the port while the source is
        // refusing connections and it can always come back on it.
        let listener = TcpListener::bind(crate::instance::free_addr()).expect("bind fake source");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Ok,
            received: Vec::new(),
            listener_alive: true,
            connections: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let source = FakeSource { addr, state, stop };
        source.spawn_accept(listener);
        source
    }

    fn spawn_accept(&self, listener: TcpListener) {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if state.lock().unwrap().mode == Mode::Refuse {
                state.lock().unwrap().listener_alive = false;
                return; // dropping the listener refuses further connections
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    state.lock().unwrap().connections += 1;
                    let state = state.clone();
                    std::thread::spawn(move || serve(stream, &state));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
    }

    /// Change how requests are answered from now on.
    pub fn set_mode(&self, mode: Mode) {
        let revive = {
            let mut s = self.state.lock().unwrap();
            s.mode = mode;
            mode != Mode::Refuse && !s.listener_alive
        };
        if revive {
            // Rebind the same port (std sets SO_REUSEADDR on Unix).
            let deadline = Instant::now() + Duration::from_secs(5);
            let listener = loop {
                match TcpListener::bind(self.addr) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("rebind fake source: {e}"),
                }
            };
            self.state.lock().unwrap().listener_alive = true;
            self.spawn_accept(listener);
        } else if mode == Mode::Refuse {
            // Wait until the accept loop has dropped the listener.
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.state.lock().unwrap().listener_alive && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// TCP connections accepted so far (a keep-alive client needs far fewer than
    /// requests).
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Request targets received so far (path and query), answered or not.
    pub fn received(&self) -> Vec<String> {
        self.state.lock().unwrap().received.clone()
    }

    /// Wait until `pred` holds for the received targets, or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if pred(&got) || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answer requests on one connection until the client closes it (HTTP/1.1 keep-alive,
/// as real sources do).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mode = {
            let mut s = state.lock().unwrap();
            s.received.push(target);
            s.mode
        };
        let status = match mode {
            Mode::Ok => "200 OK".to_string(),
            Mode::ServerError => "500 Internal Server Error".to_string(),
            Mode::TooManyRequests => "429 Too Many Requests".to_string(),
            Mode::ClientError(code) => format!("{code} Client Error"),
            Mode::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Mode::Refuse => return,
        };
        if write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}
