//! HTML building blocks: the one escaping function every value goes through, the page
//! frame and small helpers (tables, POST buttons carrying the CSRF token).

use std::fmt::Write;

/// `text` safe inside HTML element content and inside quoted attribute values. Every
/// value the console writes goes through here: journal entries are raw queries from
/// the internet.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An optional value escaped, or a dash.
pub fn escape_or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "–".to_string(), escape)
}

/// `text` as a query-string value (for links the console builds), already HTML-safe
/// (percent-encoding leaves no `<`, `"` or `&`).
pub fn url_value(text: &str) -> String {
    clickstamp_plugins::query::encode_query_value(text)
}

/// The sections, in the navigation's order: (path, title).
pub const SECTIONS: &[(&str, &str)] = &[
    ("/console", "Today"),
    ("/console/journal", "Journal"),
    ("/console/outbox", "Outbox"),
    ("/console/explain", "Explain a click"),
    ("/console/report", "Report"),
    ("/console/networks", "Networks"),
    ("/console/config", "Config"),
];

/// A whole console page: head, navigation (with the logout form), `body`.
pub fn page(title: &str, active: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in SECTIONS {
        let class = if *path == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{}</a>", escape(name));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · clickstamp</title>\
<link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
<script src=\"/console/assets/console.js\" defer></script></head>\
<body><header><span class=\"brand\">clickstamp</span><nav>{nav}</nav>\
{logout}</header><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
        logout = post_button("/logout", csrf, "Log out", "logout", &[]),
    )
}

/// The login page (no session yet, so no navigation); `problem` is shown above the form.
pub fn login_page(problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |p| {
        format!("<p class=\"error\" id=\"login-error\">{}</p>", escape(p))
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Log in · clickstamp</title>\
<link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
<body class=\"login\"><main><h1>clickstamp console</h1>{problem}\
<form method=\"post\" action=\"/login\" id=\"login-form\">\
<label>Admin token (<code>secrets.admin_token</code>) \
<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" autofocus></label>\
<button type=\"submit\">Log in</button></form></main></body></html>"
    )
}

/// A form that POSTs to `action` with the CSRF token and `fields`, shown as one button.
pub fn post_button(
    action: &str,
    csrf: &str,
    label: &str,
    class: &str,
    fields: &[(&str, &str)],
) -> String {
    let mut hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    );
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{hidden}\
<button type=\"submit\" class=\"{}\">{}</button></form>",
        escape(action),
        escape(class),
        escape(label)
    )
}

/// A table with `headers` and already-rendered cells; `id` names it for tests and CSS.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", escape(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">nothing here</td></tr>",
            headers.len()
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let day = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        crate::report::params::format_date(day),
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// A short message box: `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {}\" id=\"notice\">{}</p>",
        escape(kind),
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_open_a_tag_or_leave_an_attribute() {
        let hostile = r#"<script>alert("x")</script>' onmouseover='y' &amp;"#;
        let escaped = escape(hostile);
        assert_eq!(
            escaped,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onmouseover=&#39;y&#39; &amp;amp;"
        );
        for forbidden in ['<', '>', '"', '\''] {
            assert!(
                !escaped.contains(forbidden),
                "{forbidden} left in {escaped}"
            );
        }
        let cell = table("t", &["<b>"], &[vec![escape("<img src=x onerror=1>")]]);
        assert!(!cell.contains("<img") && !cell.contains("<b>"), "{cell}");
        let form = post_button("/x\"><script>", "t\"k", "<go>", "c", &[("n", "v\"'")]);
        assert!(
            !form.contains("<script>") && !form.contains("<go>"),
            "{form}"
        );
        assert!(form.contains("value=\"t&quot;k\""), "{form}");
        assert!(!login_page(Some("<script>")).contains("<script>"));
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(
            utc_time(1_764_633_600_000 + 3_723_000),
            "2025-12-02 01:02:03"
        );
    }
}
