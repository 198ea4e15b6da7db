//! How the CLI prints: aligned text tables for people, JSON for scripts, and short forms of
//! durations and times. Pure formatting; no I/O besides writing to standard output.

use std::fmt::Write as _;

/// A table printed with every column padded to its widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, headers first; columns two spaces apart.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Milliseconds as a short duration: `850ms`, `3.2s`, `4m12s`, `2h03m`, `3d04h`.
pub fn ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// An optional duration in milliseconds, `-` when absent.
pub fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), ms)
}

/// Unix milliseconds as an RFC 3339 UTC time to the second.
pub fn time(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix_ms.to_string())
}

/// `text` on one line, cut to `max` characters with `…`.
pub fn cut(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_durations_shorten() {
        let mut t = Table::new(&["QUEUE", "BACKLOG"]);
        t.row(vec!["messages".into(), "12".into()]);
        t.row(vec!["w".into(), "3".into()]);
        assert_eq!(t.render(), "QUEUE     BACKLOG\nmessages  12\nw         3\n");
        assert_eq!(ms(850), "850ms");
        assert_eq!(ms(3200), "3.2s");
        assert_eq!(ms(252_000), "4m12s");
        assert_eq!(ms(7_380_000), "2h03m");
        assert_eq!(ms(273_600_000), "3d04h");
        assert_eq!(opt_ms(None), "-");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(cut("a\nbcdef", 4), "a b…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
