//! Plain-text tables for the listing commands (`journal`, `outbox`): columns as wide
//! as their widest cell, so values of any length stay aligned.

/// How a column's cells line up.
#[derive(Clone, Copy)]
pub(super) enum Align {
    Left,
    Right,
}

/// Render `rows` under `header`; the last column is left unpadded (it holds free text
/// such as a query string or a URL).
pub(super) fn render(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            match header[i].1 {
                _ if i == last => out.push_str(cell),
                Align::Left => {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(cell);
                }
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.iter().map(|(h, _)| *h).collect());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A millisecond Unix time as ISO-8601 UTC (`2026-12-01T14:03:07.123Z`); `-` when the
/// value is missing.
pub(super) fn utc_time(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let ms = ms as i64;
    let day = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        crate::report::params::format_date(day),
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let table = render(
            &[
                ("id", Align::Right),
                ("network", Align::Left),
                ("query", Align::Left),
            ],
            &[
                vec!["7".into(), "a-very-long-network".into(), "cid=1".into()],
                vec!["12".into(), "cake".into(), "cid=2".into()],
            ],
        );
        assert_eq!(
            table,
            "id  network              query\n 7  a-very-long-network  cid=1\n12  cake                 cid=2\n"
        );
    }

    #[test]
    fn times_are_utc_iso_8601() {
        assert_eq!(utc_time(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc_time(Some(1_796_137_387_123)),
            "2026-12-01T15:03:07.123Z"
        );
        assert_eq!(utc_time(None), "-");
    }
}
