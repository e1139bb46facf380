//! How templates are shown: age ("12 days"), creation time, size, staleness, and a plain
//! text table.

use chrono::{DateTime, Utc};

use crate::exoscale::Template;
use crate::recipe::units::format_bytes;

/// An age in words: "just now", "5 minutes", "3 hours", "1 day", "12 days".
pub fn age(created: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - created).num_seconds().max(0);
    let (n, unit) = match seconds {
        s if s < 60 => return "just now".to_string(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Whole days since `created`.
pub fn age_days(created: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - created).num_days().max(0)
}

/// Whether a template created at `created` is older than `stale_after_days`.
pub fn is_stale(created: DateTime<Utc>, now: DateTime<Utc>, stale_after_days: u32) -> bool {
    (now - created).num_seconds() > i64::from(stale_after_days) * 86_400
}

/// The creation time as `2026-11-14 10:00 UTC`, or `-`.
pub fn created(template: &Template) -> String {
    template
        .created()
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The size as `10 GiB`, or `-`.
pub fn size(template: &Template) -> String {
    template
        .size
        .map(format_bytes)
        .unwrap_or_else(|| "-".into())
}

/// Lays `rows` out in columns under `header`, two spaces apart; the last column is not
/// padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_read_like_words() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(age(ago(5), now), "just now");
        assert_eq!(age(ago(-50), now), "just now");
        assert_eq!(age(ago(60), now), "1 minute");
        assert_eq!(age(ago(3 * 3600 + 5), now), "3 hours");
        assert_eq!(age(ago(86_400), now), "1 day");
        assert_eq!(age(ago(12 * 86_400 + 7000), now), "12 days");
        assert_eq!(age_days(ago(12 * 86_400 + 7000), now), 12);
        assert!(!is_stale(ago(30 * 86_400), now, 30));
        assert!(is_stale(ago(30 * 86_400 + 1), now, 30));
        assert!(is_stale(ago(1), now, 0));
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_string(), "long value".into(), "x".into()],
            vec!["bbbb".to_string(), "v".into(), "".into()],
        ];
        assert_eq!(
            table(&["H1", "H2", "H3"], &rows),
            vec!["H1    H2          H3", "a     long value  x", "bbbb  v"]
        );
    }

    #[test]
    fn missing_fields_show_a_dash() {
        let t = Template::default();
        assert_eq!(created(&t), "-");
        assert_eq!(size(&t), "-");
        let t = Template {
            size: Some(10 << 30),
            created_at: Some("2026-11-14T10:00:00Z".into()),
            ..Template::default()
        };
        assert_eq!(size(&t), "10 GiB");
        assert_eq!(created(&t), "2026-11-14 10:00 UTC");
    }
}
