//! The pure half of traffic quality: what a request's headers say about who sent it.
//! No I/O and no state, so every rule here is a unit test away from being checked.

use super::{Quality, Reason};

/// The bot, crawler, HTTP-library and headless-browser list shipped with clickstamp
/// (`proxy/data/bot-user-agents.txt`), extended per deployment by
/// `traffic.bot_user_agents`.
pub const SHIPPED_BOT_USER_AGENTS: &str = include_str!("../../data/bot-user-agents.txt");

/// User-agent fragments, matched as ASCII case-insensitive substrings in one pass
/// (Aho-Corasick), so a list of thousands costs what a list of ten does.
#[derive(Debug, Clone)]
pub struct BotList {
    fragments: Vec<String>,
    matcher: Option<aho_corasick::AhoCorasick>,
}

impl BotList {
    /// The fragments of a list file (one a line, `#` comments and blank lines
    /// skipped) plus `extra` ones.
    pub fn new(list: &str, extra: &[String]) -> BotList {
        let mut fragments: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .chain(extra.iter().map(|s| s.trim()))
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        fragments.sort();
        fragments.dedup();
        // A DFA: the fastest search, and the list is small enough for its memory.
        let matcher = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&fragments)
            // Only a pattern set beyond the automaton's size limits fails; such a list
            // would be a mistake, and matching falls back to the plain scan.
            .ok();
        BotList { fragments, matcher }
    }

    /// Number of fragments.
    pub fn len(&self) -> usize {
        self.fragments.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// Whether `user_agent` contains one of the fragments (ASCII case-insensitive).
    pub fn matches(&self, user_agent: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(user_agent),
            None => {
                let ua = user_agent.to_ascii_lowercase();
                self.fragments.iter().any(|f| ua.contains(f.as_str()))
            }
        }
    }
}

/// The headers a quality or routing decision reads besides the user agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSignals {
    pub accept_language: Option<String>,
    /// `Sec-CH-UA`: the brand list of a Chromium-based browser.
    pub sec_ch_ua: Option<String>,
    /// `Sec-CH-UA-Mobile`: `?1` on a phone, `?0` elsewhere.
    pub sec_ch_ua_mobile: Option<String>,
    /// `Sec-CH-UA-Platform`: `"Windows"`, `"macOS"`, `"Android"`, ...
    pub sec_ch_ua_platform: Option<String>,
}

impl HeaderSignals {
    /// Read the signals through `header` (a lookup by lowercase header name).
    pub fn from_headers(header: impl Fn(&str) -> Option<String>) -> HeaderSignals {
        HeaderSignals {
            accept_language: header("accept-language"),
            sec_ch_ua: header("sec-ch-ua"),
            sec_ch_ua_mobile: header("sec-ch-ua-mobile"),
            sec_ch_ua_platform: header("sec-ch-ua-platform"),
        }
    }

    /// The first language the visitor asks for, lowercase, without region or
    /// weight (`de-DE,de;q=0.9` → `de`); empty when none is sent.
    pub fn primary_language(&self) -> String {
        let Some(header) = &self.accept_language else {
            return String::new();
        };
        let first = header.split(',').next().unwrap_or("");
        let tag = first.split(';').next().unwrap_or("").trim();
        let lang = tag.split(['-', '_']).next().unwrap_or("");
        if lang == "*" || lang.len() > 8 || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
            return String::new();
        }
        lang.to_ascii_lowercase()
    }
}

/// What a user agent (and the Client Hints beside it) says about the device.
/// Every field is one of a fixed set of lowercase words, or empty when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device: &'static str,
    /// `windows`, `macos`, `linux`, `chromeos`, `android`, `ios` or `other`.
    pub os: &'static str,
    /// `chrome`, `edge`, `firefox`, `safari`, `opera`, `samsung`, `yandex`, `vivaldi`,
    /// `ie` or `other`.
    pub browser: &'static str,
}

fn os_word(name: &str) -> &'static str {
    match name {
        n if n.starts_with("Windows") && n != "Windows Phone OS" => "windows",
        "Mac OSX" | "Mac OS Classic" | "macOS" => "macos",
        "Linux" | "BSD" => "linux",
        "ChromeOS" | "Chrome OS" => "chromeos",
        "Android" => "android",
        "iPhone" | "iPad" | "iPod" | "iOS" => "ios",
        "UNKNOWN" | "" => "",
        _ => "other",
    }
}

fn browser_word(name: &str) -> &'static str {
    match name {
        "Chrome" => "chrome",
        "Edge" => "edge",
        "Firefox" => "firefox",
        "Safari" => "safari",
        "Opera" => "opera",
        "SamsungBrowser" => "samsung",
        "Yandex Browser" => "yandex",
        "Vivaldi" => "vivaldi",
        "Internet Explorer" => "ie",
        "UNKNOWN" | "" => "",
        _ => "other",
    }
}

/// The `Sec-CH-UA-Platform` value as an OS word (the header is a quoted string).
fn platform_word(platform: &str) -> &'static str {
    match platform.trim().trim_matches('"') {
        "Windows" => "windows",
        "macOS" => "macos",
        "Linux" => "linux",
        "Chrome OS" | "ChromeOS" => "chromeos",
        "Android" => "android",
        "iOS" => "ios",
        "" | "Unknown" => "",
        _ => "other",
    }
}

/// A user agent as woothee (a maintained parser) reads it; parsed once per click and
/// shared by [`device`] and [`header_quality`].
pub type ParsedAgent<'a> = Option<woothee::parser::WootheeResult<'a>>;

/// Parse `user_agent`.
pub fn parse_agent(user_agent: Option<&str>) -> ParsedAgent<'_> {
    user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua))
}

/// The device of a parsed user agent, with the Client Hints filling in what it leaves
/// open: a Chromium browser that reduces its user agent still names the real
/// platform in `Sec-CH-UA-Platform`.
pub fn device(parsed: &ParsedAgent<'_>, hints: &HeaderSignals) -> Device {
    let mut out = Device::default();
    if let Some(p) = parsed {
        out.os = os_word(p.os);
        out.browser = browser_word(p.name);
        out.device = match p.category {
            "pc" => "desktop",
            "smartphone" | "mobilephone" if p.os == "iPad" => "tablet",
            "smartphone" | "mobilephone" => "mobile",
            "crawler" => "bot",
            "appliance" | "misc" => "other",
            _ => "",
        };
    }
    if let Some(platform) = &hints.sec_ch_ua_platform {
        let word = platform_word(platform);
        if !word.is_empty() {
            out.os = word;
        }
    }
    match hints.sec_ch_ua_mobile.as_deref().map(str::trim) {
        Some("?1") if out.device != "tablet" => out.device = "mobile",
        Some("?0") if out.device.is_empty() => out.device = "desktop",
        _ => {}
    }
    out
}

/// The header-only quality signals of one request: bot list, missing headers, the
/// user agent against its Client Hints. Network and rate signals are added by the
/// caller, which holds the lists and the state.
pub fn header_quality(
    user_agent: Option<&str>,
    parsed: &ParsedAgent<'_>,
    hints: &HeaderSignals,
    bots: &BotList,
    require_accept_language: bool,
) -> Quality {
    let mut q = Quality::OK;
    let ua = user_agent.map(str::trim).unwrap_or("");
    if ua.is_empty() {
        q.add(Reason::NoUserAgent);
    } else if bots.matches(ua) {
        q.add(Reason::BotUserAgent);
    }
    if hints
        .sec_ch_ua
        .as_deref()
        .is_some_and(|brands| brands.to_ascii_lowercase().contains("headless"))
    {
        q.add(Reason::Headless);
    }
    if require_accept_language
        && hints
            .accept_language
            .as_deref()
            .is_none_or(|v| v.trim().is_empty())
    {
        q.add(Reason::NoAcceptLanguage);
    }
    if !ua.is_empty() && hints_contradict(parsed, hints) {
        q.add(Reason::ClientHintsMismatch);
    }
    q
}

/// Whether the Client Hints contradict the user agent: another platform, a phone
/// claiming a desktop agent or the other way round, or hints from a browser whose
/// user agent says it is not Chromium-based (only Chromium sends them).
fn hints_contradict(parsed: &ParsedAgent<'_>, hints: &HeaderSignals) -> bool {
    let sent_hints = hints.sec_ch_ua.is_some()
        || hints.sec_ch_ua_mobile.is_some()
        || hints.sec_ch_ua_platform.is_some();
    if !sent_hints {
        return false;
    }
    let Some(p) = parsed else {
        return false;
    };
    let ua_os = os_word(p.os);
    if let Some(platform) = &hints.sec_ch_ua_platform {
        let hinted = platform_word(platform);
        // ChromeOS may present itself as Linux in a frozen user agent.
        let alike = matches!(
            (hinted, ua_os),
            ("chromeos", "linux") | ("linux", "chromeos")
        );
        if !hinted.is_empty() && !ua_os.is_empty() && hinted != ua_os && !alike {
            return true;
        }
    }
    match hints.sec_ch_ua_mobile.as_deref().map(str::trim) {
        Some("?1") if p.category == "pc" => return true,
        Some("?0") if p.category == "smartphone" && p.os != "iPad" => return true,
        _ => {}
    }
    matches!(browser_word(p.name), "firefox" | "safari")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESKTOP_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";

    fn quality_of(ua: Option<&str>, hints: &HeaderSignals, bots: &BotList, lang: bool) -> Quality {
        header_quality(ua, &parse_agent(ua), hints, bots, lang)
    }

    fn device_of(ua: Option<&str>, hints: &HeaderSignals) -> Device {
        device(&parse_agent(ua), hints)
    }

    fn shipped() -> BotList {
        BotList::new(SHIPPED_BOT_USER_AGENTS, &[])
    }

    fn browser_headers() -> HeaderSignals {
        HeaderSignals {
            accept_language: Some("en-US,en;q=0.9".into()),
            sec_ch_ua: Some(
                "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""
                    .into(),
            ),
            sec_ch_ua_mobile: Some("?0".into()),
            sec_ch_ua_platform: Some("\"Windows\"".into()),
        }
    }

    #[test]
    fn tools_and_crawlers_are_bots_and_browsers_are_not() {
        let bots = shipped();
        for ua in [
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        ] {
            assert!(bots.matches(ua), "{ua}");
        }
        for ua in [DESKTOP_CHROME, IPHONE_SAFARI, ANDROID_CHROME,
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:132.0) Gecko/20100101 Firefox/132.0",
            "Mozilla/5.0 (Linux; Android 13; Cubot P80) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        ] {
            assert!(!bots.matches(ua), "{ua}");
        }
    }

    #[test]
    fn the_config_extends_the_shipped_list() {
        let bots = BotList::new(SHIPPED_BOT_USER_AGENTS, &["  AcmeMonitor ".into()]);
        assert!(bots.matches("acmemonitor/2.0"));
        assert_eq!(bots.len(), shipped().len() + 1);
    }

    #[test]
    fn a_desktop_chrome_with_its_usual_headers_is_ok() {
        let q = quality_of(Some(DESKTOP_CHROME), &browser_headers(), &shipped(), true);
        assert_eq!(q, Quality::OK, "{}", q.reasons_text());
    }

    #[test]
    fn curl_is_flagged_as_a_bot_without_accept_language() {
        let q = quality_of(
            Some("curl/8.5.0"),
            &HeaderSignals::default(),
            &shipped(),
            true,
        );
        assert_eq!(q.reasons_text(), "bot_user_agent,no_accept_language");
        let q = quality_of(None, &HeaderSignals::default(), &shipped(), false);
        assert_eq!(q.reasons_text(), "no_user_agent");
    }

    #[test]
    fn hints_that_contradict_the_user_agent_are_flagged() {
        let mut linux = browser_headers();
        linux.sec_ch_ua_platform = Some("\"Linux\"".into());
        let q = quality_of(Some(DESKTOP_CHROME), &linux, &shipped(), true);
        assert_eq!(q.reasons_text(), "client_hints_mismatch");
        let mut phone = browser_headers();
        phone.sec_ch_ua_mobile = Some("?1".into());
        assert!(quality_of(Some(DESKTOP_CHROME), &phone, &shipped(), true).is_flagged());
        // Safari sends no Client Hints: a "Safari" that does is something else.
        let q = quality_of(Some(IPHONE_SAFARI), &browser_headers(), &shipped(), true);
        assert!(q.reasons_text().contains("client_hints_mismatch"));
        // A headless brand is named as such.
        let mut headless = browser_headers();
        headless.sec_ch_ua = Some("\"HeadlessChrome\";v=\"131\"".into());
        let q = quality_of(Some(DESKTOP_CHROME), &headless, &shipped(), true);
        assert_eq!(q.reasons_text(), "headless");
    }

    #[test]
    fn devices_from_the_user_agent_and_the_hints() {
        let none = HeaderSignals::default();
        assert_eq!(
            device_of(Some(DESKTOP_CHROME), &none),
            Device {
                device: "desktop",
                os: "windows",
                browser: "chrome"
            }
        );
        assert_eq!(
            device_of(Some(IPHONE_SAFARI), &none),
            Device {
                device: "mobile",
                os: "ios",
                browser: "safari"
            }
        );
        assert_eq!(
            device_of(Some(ANDROID_CHROME), &none),
            Device {
                device: "mobile",
                os: "android",
                browser: "chrome"
            }
        );
        // A reduced user agent says Windows; the platform hint knows better.
        let mut mac = browser_headers();
        mac.sec_ch_ua_platform = Some("\"macOS\"".into());
        assert_eq!(device_of(Some(DESKTOP_CHROME), &mac).os, "macos");
        let phone = HeaderSignals {
            sec_ch_ua_mobile: Some("?1".into()),
            ..Default::default()
        };
        assert_eq!(device_of(None, &phone).device, "mobile");
        assert_eq!(device_of(None, &none), Device::default());
    }

    #[test]
    fn primary_language() {
        let lang = |v: &str| {
            HeaderSignals {
                accept_language: Some(v.into()),
                ..Default::default()
            }
            .primary_language()
        };
        assert_eq!(lang("de-DE,de;q=0.9,en;q=0.8"), "de");
        assert_eq!(lang("EN"), "en");
        assert_eq!(lang("*"), "");
        assert_eq!(lang("x1"), "");
        assert_eq!(HeaderSignals::default().primary_language(), "");
    }
}
