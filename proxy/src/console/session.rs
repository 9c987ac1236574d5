//! Console sessions: a random session id in an `HttpOnly; SameSite=Strict` cookie, a
//! per-session CSRF token every POST must carry, and expiry (idle and absolute).
//!
//! Sessions live in this process's memory only: a restart logs everyone out, and on
//! several nodes each node has its own (log in on the node you browse).

use parking_lot::Mutex;
use rand::RngCore;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The cookie holding the session id.
pub const COOKIE_NAME: &str = "clickstamp_console";

/// A session unused this long is gone: a console left open on a shared desk.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// However busy, a session ends this long after its login.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at most; the oldest is dropped beyond it, so repeated logins cannot
/// grow memory without bound.
const MAX_SESSIONS: usize = 256;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token POST forms carry in their `csrf` field.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Every live session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex: unguessable ids and tokens.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Open a session; returns its id (the cookie's value).
    pub fn open(&self) -> String {
        let now = Instant::now();
        let id = random_token();
        let mut sessions = self.by_id.lock();
        sessions.retain(|_, s| s.alive(now));
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The live session with `id`, its idle clock restarted; an expired one is removed.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.by_id.lock();
        let session = sessions.get_mut(id)?;
        if !session.alive(now) {
            sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// End the session with `id`.
    pub fn close(&self, id: &str) {
        self.by_id.lock().remove(id);
    }

    #[cfg(test)]
    fn age_by(&self, id: &str, by: Duration) {
        if let Some(s) = self.by_id.lock().get_mut(id) {
            s.created -= by;
            s.last_seen -= by;
        }
    }
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < IDLE_TIMEOUT
            && now.duration_since(self.created) < MAX_LIFETIME
    }

    /// Whether `given` is this session's CSRF token, compared in constant time.
    pub fn csrf_matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.csrf.as_bytes())
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ:
/// tokens and the admin secret are compared with it.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `Set-Cookie` value carrying session `id`. `Secure` when the request came over
/// TLS (directly or, per `X-Forwarded-Proto`, through a proxy that ended it): the
/// admin listener itself is plain HTTP, where a `Secure` cookie would never return.
pub fn set_cookie(id: &str, over_tls: bool) -> String {
    let secure = if over_tls { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        MAX_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(over_tls: bool) -> String {
    let secure = if over_tls { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The session id in a `Cookie` header, if any.
pub fn session_id_from(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_carries_its_own_csrf_token_and_expires() {
        let sessions = Sessions::default();
        let a = sessions.open();
        let b = sessions.open();
        let (sa, sb) = (sessions.touch(&a).unwrap(), sessions.touch(&b).unwrap());
        assert_ne!(sa.csrf, sb.csrf, "tokens are per session");
        assert!(sa.csrf_matches(&sa.csrf));
        assert!(!sa.csrf_matches(&sb.csrf));
        assert!(!sa.csrf_matches(""));
        sessions.age_by(&a, IDLE_TIMEOUT);
        assert!(sessions.touch(&a).is_none(), "idle too long");
        assert!(sessions.touch(&a).is_none(), "and removed");
        sessions.close(&b);
        assert!(sessions.touch(&b).is_none(), "logged out");
        assert!(sessions.touch("no-such-session").is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_only_over_tls() {
        let plain = set_cookie("abc", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert_eq!(
            session_id_from("a=1; clickstamp_console=xyz; b=2"),
            Some("xyz")
        );
        assert_eq!(session_id_from("clickstamp_console="), None);
        assert_eq!(session_id_from("other=1"), None);
    }
}
