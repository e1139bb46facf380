//! How a template is described to people, by the command line and the window alike: its
//! age ("12 days"), whether it is stale, its creation time and its size.

use chrono::{DateTime, Utc};

use super::Template;
use crate::base::units::format_bytes;

/// Templates older than this many days are stale unless the user says otherwise: machines
/// that old should be rebuilt.
pub const DEFAULT_STALE_AFTER_DAYS: u32 = 30;

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
