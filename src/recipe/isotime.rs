//! Go's `time.Format` reference-time layouts (`2006-01-02T15:04:05Z07:00`), as Packer's
//! `{{isotime "LAYOUT"}}` uses them.
//!
//! This is a port of the layout scanner (`nextStdChunk`) and of the formatter
//! (`Time.appendFormat`) in Go's `src/time/format.go`, so every layout element Go knows is
//! recognised with Go's exact precedence rules, and everything else is copied literally:
//!
//! | element | meaning |
//! | --- | --- |
//! | `2006` `06` | year, 4 digits / last 2 digits |
//! | `January` `Jan` `01` `1` | month name / abbreviation / zero-padded / plain |
//! | `Monday` `Mon` | weekday name / abbreviation |
//! | `02` `_2` `2` | day of month, zero-padded / space-padded / plain |
//! | `002` `__2` | day of year, zero-padded / space-padded to 3 |
//! | `15` `03` `3` | hour 24h / 12h zero-padded / 12h plain |
//! | `04` `4` `05` `5` | minute, second (zero-padded / plain) |
//! | `PM` `pm` | AM/PM mark |
//! | `MST` | zone abbreviation (`UTC` for UTC times) |
//! | `Z07:00:00` `Z070000` `Z07:00` `Z0700` `Z07` | ISO 8601 offset, `Z` for UTC |
//! | `-07:00:00` `-070000` `-07:00` `-0700` `-07` | numeric offset, always digits |
//! | `.000` `,000` `.999` `,999` (any count) | fractional seconds, fixed / trailing zeros trimmed |
//!
//! As in Go, `Jan` and `Mon` are only elements when not followed by a lower-case ASCII letter
//! (`Janet`, `Month` stay literal), `_2006` is a literal `_` followed by the year, and a run of
//! fraction digits only counts when no other digit follows it.

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

/// Formats `t` (a UTC time, zone abbreviation `UTC`) with the Go layout `layout`, exactly as Go's
/// `t.UTC().Format(layout)` does.
pub fn format_utc(t: &DateTime<Utc>, layout: &str) -> String {
    let parts = Parts::new(&t.fixed_offset(), Some("UTC"));
    format_parts(&parts, layout)
}

/// Formats `t` with the Go layout `layout` in `t`'s own offset. `zone` is the zone abbreviation
/// printed for `MST`; without one, Go prints the offset as `-0700` there.
pub fn format_fixed(t: &DateTime<FixedOffset>, zone: Option<&str>, layout: &str) -> String {
    let parts = Parts::new(t, zone);
    format_parts(&parts, layout)
}

/// The calendar and clock fields of the time being formatted.
struct Parts<'z> {
    year: i64,
    month: usize,
    day: i64,
    yday: i64,
    weekday: usize,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    offset: i64,
    zone: Option<&'z str>,
}

impl<'z> Parts<'z> {
    fn new(t: &DateTime<FixedOffset>, zone: Option<&'z str>) -> Self {
        let local = t.naive_local();
        Parts {
            year: i64::from(local.year()),
            month: local.month() as usize,
            day: i64::from(local.day()),
            yday: i64::from(local.ordinal()),
            weekday: local.weekday().num_days_from_sunday() as usize,
            hour: i64::from(local.hour()),
            minute: i64::from(local.minute()),
            second: i64::from(local.second()),
            // chrono represents a leap second as nanos >= 1e9; Go has no leap seconds.
            nanos: i64::from(local.nanosecond().min(999_999_999)),
            offset: i64::from(t.offset().local_minus_utc()),
            zone: zone.filter(|z| !z.is_empty()),
        }
    }
}

/// One layout element (Go's `std*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    Tz,
    Iso8601Tz,
    Iso8601SecondsTz,
    Iso8601ShortTz,
    Iso8601ColonTz,
    Iso8601ColonSecondsTz,
    NumTz,
    NumSecondsTz,
    NumShortTz,
    NumColonTz,
    NumColonSecondsTz,
    /// `.000…`: `digits` places, trailing zeros kept; `sep` is `.` or `,`.
    FracSecond0 {
        digits: usize,
        sep: u8,
    },
    /// `.999…`: up to `digits` places, trailing zeros (and a bare separator) removed.
    FracSecond9 {
        digits: usize,
        sep: u8,
    },
}

const STD0X: [Std; 6] = [
    Std::ZeroMonth,
    Std::ZeroDay,
    Std::ZeroHour12,
    Std::ZeroMinute,
    Std::ZeroSecond,
    Std::Year,
];

const LONG_DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

const LONG_MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Whether `s` starts with an ASCII lower-case letter (Go's `startsWithLowerCase`).
fn starts_with_lower(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'a'..=b'z'))
}

/// Finds the first layout element in `layout`: returns (length of the literal prefix, the
/// element, index where the rest starts), or `None` when the whole layout is literal.
/// A port of Go's `nextStdChunk`.
fn next_std_chunk(layout: &[u8]) -> Option<(usize, Std, usize)> {
    let n = layout.len();
    let has = |i: usize, s: &[u8]| layout.get(i..i + s.len()) == Some(s);
    for i in 0..n {
        match layout[i] {
            b'J' if has(i, b"Jan") => {
                if has(i, b"January") {
                    return Some((i, Std::LongMonth, i + 7));
                }
                if !starts_with_lower(&layout[i + 3..]) {
                    return Some((i, Std::Month, i + 3));
                }
            }
            b'M' => {
                if has(i, b"Mon") {
                    if has(i, b"Monday") {
                        return Some((i, Std::LongWeekDay, i + 6));
                    }
                    if !starts_with_lower(&layout[i + 3..]) {
                        return Some((i, Std::WeekDay, i + 3));
                    }
                }
                if has(i, b"MST") {
                    return Some((i, Std::Tz, i + 3));
                }
            }
            b'0' => {
                if let Some(&d @ b'1'..=b'6') = layout.get(i + 1) {
                    return Some((i, STD0X[usize::from(d - b'1')], i + 2));
                }
                if has(i, b"002") {
                    return Some((i, Std::ZeroYearDay, i + 3));
                }
            }
            b'1' => {
                if layout.get(i + 1) == Some(&b'5') {
                    return Some((i, Std::Hour, i + 2));
                }
                return Some((i, Std::NumMonth, i + 1));
            }
            b'2' => {
                if has(i, b"2006") {
                    return Some((i, Std::LongYear, i + 4));
                }
                return Some((i, Std::Day, i + 1));
            }
            b'_' => {
                if layout.get(i + 1) == Some(&b'2') {
                    // `_2006` is a literal `_` followed by the long year.
                    if has(i + 1, b"2006") {
                        return Some((i + 1, Std::LongYear, i + 5));
                    }
                    return Some((i, Std::UnderDay, i + 2));
                }
                if has(i, b"__2") {
                    return Some((i, Std::UnderYearDay, i + 3));
                }
            }
            b'3' => return Some((i, Std::Hour12, i + 1)),
            b'4' => return Some((i, Std::Minute, i + 1)),
            b'5' => return Some((i, Std::Second, i + 1)),
            b'P' if layout.get(i + 1) == Some(&b'M') => return Some((i, Std::PM, i + 2)),
            b'p' if layout.get(i + 1) == Some(&b'm') => return Some((i, Std::Pm, i + 2)),
            b'-' => {
                if has(i, b"-070000") {
                    return Some((i, Std::NumSecondsTz, i + 7));
                }
                if has(i, b"-07:00:00") {
                    return Some((i, Std::NumColonSecondsTz, i + 9));
                }
                if has(i, b"-0700") {
                    return Some((i, Std::NumTz, i + 5));
                }
                if has(i, b"-07:00") {
                    return Some((i, Std::NumColonTz, i + 6));
                }
                if has(i, b"-07") {
                    return Some((i, Std::NumShortTz, i + 3));
                }
            }
            b'Z' => {
                if has(i, b"Z070000") {
                    return Some((i, Std::Iso8601SecondsTz, i + 7));
                }
                if has(i, b"Z07:00:00") {
                    return Some((i, Std::Iso8601ColonSecondsTz, i + 9));
                }
                if has(i, b"Z0700") {
                    return Some((i, Std::Iso8601Tz, i + 5));
                }
                if has(i, b"Z07:00") {
                    return Some((i, Std::Iso8601ColonTz, i + 6));
                }
                if has(i, b"Z07") {
                    return Some((i, Std::Iso8601ShortTz, i + 3));
                }
            }
            sep @ (b'.' | b',') => {
                if let Some(&ch @ (b'0' | b'9')) = layout.get(i + 1) {
                    let mut j = i + 1;
                    while j < n && layout[j] == ch {
                        j += 1;
                    }
                    // Only a fractional second if no other digit follows the run.
                    if !layout.get(j).is_some_and(u8::is_ascii_digit) {
                        // Go packs the digit count in 12 bits.
                        let digits = (j - (i + 1)) & 0xfff;
                        let std = if ch == b'0' {
                            Std::FracSecond0 { digits, sep }
                        } else {
                            Std::FracSecond9 { digits, sep }
                        };
                        return Some((i, std, j));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Appends the decimal form of `x`, zero-padded to `width` digits (Go's `appendInt`).
fn append_int(out: &mut String, x: i64, width: usize) {
    if x < 0 {
        out.push('-');
    }
    let digits = x.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// Appends a fractional second (Go's `appendNano`).
fn append_nano(out: &mut String, nanos: i64, digits: usize, sep: u8, trim: bool) {
    if trim && (digits == 0 || nanos == 0) {
        return;
    }
    let start = out.len();
    out.push(char::from(sep));
    append_int(out, nanos, 9);
    if digits < 9 {
        out.truncate(out.len() - 9 + digits);
    }
    if trim {
        while out.len() > start && out.ends_with('0') {
            out.pop();
        }
        if out.len() == start + 1 {
            out.pop();
        }
    }
}

/// Appends a numeric zone offset for the zone elements.
fn append_zone(out: &mut String, std: Std, offset: i64) {
    use Std::*;
    let iso = matches!(
        std,
        Iso8601Tz | Iso8601ColonTz | Iso8601SecondsTz | Iso8601ShortTz | Iso8601ColonSecondsTz
    );
    if offset == 0 && iso {
        out.push('Z');
        return;
    }
    let mut zone = offset / 60;
    let mut abs_offset = offset;
    if zone < 0 {
        out.push('-');
        zone = -zone;
        abs_offset = -abs_offset;
    } else {
        out.push('+');
    }
    append_int(out, zone / 60, 2);
    if matches!(
        std,
        Iso8601ColonTz | NumColonTz | Iso8601ColonSecondsTz | NumColonSecondsTz
    ) {
        out.push(':');
    }
    if !matches!(std, NumShortTz | Iso8601ShortTz) {
        append_int(out, zone % 60, 2);
    }
    if matches!(
        std,
        Iso8601SecondsTz | NumSecondsTz | NumColonSecondsTz | Iso8601ColonSecondsTz
    ) {
        if matches!(std, NumColonSecondsTz | Iso8601ColonSecondsTz) {
            out.push(':');
        }
        append_int(out, abs_offset % 60, 2);
    }
}

fn format_parts(p: &Parts<'_>, layout: &str) -> String {
    let mut out = String::with_capacity(layout.len() + 10);
    let mut rest = layout;
    while !rest.is_empty() {
        let Some((prefix, std, next)) = next_std_chunk(rest.as_bytes()) else {
            out.push_str(rest);
            break;
        };
        // Every element starts and ends on an ASCII byte, so these are char boundaries.
        out.push_str(&rest[..prefix]);
        rest = &rest[next..];
        let hour12 = match p.hour % 12 {
            0 => 12,
            h => h,
        };
        match std {
            Std::Year => append_int(&mut out, p.year.abs() % 100, 2),
            Std::LongYear => append_int(&mut out, p.year, 4),
            Std::Month => out.push_str(&LONG_MONTH_NAMES[p.month - 1][..3]),
            Std::LongMonth => out.push_str(LONG_MONTH_NAMES[p.month - 1]),
            Std::NumMonth => append_int(&mut out, p.month as i64, 0),
            Std::ZeroMonth => append_int(&mut out, p.month as i64, 2),
            Std::WeekDay => out.push_str(&LONG_DAY_NAMES[p.weekday][..3]),
            Std::LongWeekDay => out.push_str(LONG_DAY_NAMES[p.weekday]),
            Std::Day => append_int(&mut out, p.day, 0),
            Std::UnderDay => {
                if p.day < 10 {
                    out.push(' ');
                }
                append_int(&mut out, p.day, 0);
            }
            Std::ZeroDay => append_int(&mut out, p.day, 2),
            Std::UnderYearDay => {
                if p.yday < 100 {
                    out.push(' ');
                    if p.yday < 10 {
                        out.push(' ');
                    }
                }
                append_int(&mut out, p.yday, 0);
            }
            Std::ZeroYearDay => append_int(&mut out, p.yday, 3),
            Std::Hour => append_int(&mut out, p.hour, 2),
            Std::Hour12 => append_int(&mut out, hour12, 0),
            Std::ZeroHour12 => append_int(&mut out, hour12, 2),
            Std::Minute => append_int(&mut out, p.minute, 0),
            Std::ZeroMinute => append_int(&mut out, p.minute, 2),
            Std::Second => append_int(&mut out, p.second, 0),
            Std::ZeroSecond => append_int(&mut out, p.second, 2),
            Std::PM => out.push_str(if p.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if p.hour >= 12 { "pm" } else { "am" }),
            Std::Tz => match p.zone {
                Some(name) => out.push_str(name),
                None => {
                    // No zone name known: Go prints the offset as -0700.
                    let mut zone = p.offset / 60;
                    if zone < 0 {
                        out.push('-');
                        zone = -zone;
                    } else {
                        out.push('+');
                    }
                    append_int(&mut out, zone / 60, 2);
                    append_int(&mut out, zone % 60, 2);
                }
            },
            Std::FracSecond0 { digits, sep } => append_nano(&mut out, p.nanos, digits, sep, false),
            Std::FracSecond9 { digits, sep } => append_nano(&mut out, p.nanos, digits, sep, true),
            zone => append_zone(&mut out, zone, p.offset),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 2009-11-10T23:04:05Z, the Go playground's favourite instant (plus 5 seconds).
    fn playground() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2009, 11, 10, 23, 4, 5).unwrap()
    }

    /// Go's `format_test.go` instant: Wed Feb 4 21:00:57.012345600 PST 2009.
    fn go_test_time() -> DateTime<FixedOffset> {
        let pst = FixedOffset::west_opt(8 * 3600).unwrap();
        DateTime::from_timestamp(1_233_810_057, 12_345_600)
            .unwrap()
            .with_timezone(&pst)
    }

    #[test]
    fn playground_layouts() {
        let t = playground();
        let cases = [
            ("2006-01-02", "2009-11-10"),
            ("Jan _2 15:04:05", "Nov 10 23:04:05"),
            ("3:04PM", "11:04PM"),
            ("20060102150405", "20091110230405"),
            ("20060102", "20091110"),
            ("2006-01-02T15:04:05Z07:00", "2009-11-10T23:04:05Z"),
            (
                "2006-01-02T15:04:05.999999999Z07:00",
                "2009-11-10T23:04:05Z",
            ),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Tue Nov 10 23:04:05 UTC 2009",
            ),
            (
                "Mon Jan 02 15:04:05 -0700 2006",
                "Tue Nov 10 23:04:05 +0000 2009",
            ),
            ("02 Jan 06 15:04 MST", "10 Nov 09 23:04 UTC"),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Tuesday, 10-Nov-09 23:04:05 UTC",
            ),
            ("01/02 03:04:05PM '06 -0700", "11/10 11:04:05PM '09 +0000"),
            ("January 2, 3:04:05pm 2006", "November 10, 11:04:05pm 2009"),
            ("002 __2", "314 314"),
            ("Z07:00 Z0700 Z07 Z070000 Z07:00:00", "Z Z Z Z Z"),
            (
                "-07:00 -0700 -07 -070000 -07:00:00",
                "+00:00 +0000 +00 +000000 +00:00:00",
            ),
            (".000 ,00 .999 ,9", ".000 ,00  "),
            ("Hour15Year200603", "Hour23Year200911"),
            ("Mon 1504", "Tue 2304"),
            ("02-Jan-06 03\\_04\\_05", "10-Nov-09 11\\_04\\_05"),
            ("Jan-_2-15:04:05.000", "Nov-10-23:04:05.000"),
            ("_2006", "_2009"),
            ("no layout here!", "no layout here!"),
            ("", ""),
            ("%Y-%m-%d", "%Y-%m-%d"),
            ("héllo 2006 ☃", "héllo 2009 ☃"),
        ];
        for (layout, want) in cases {
            assert_eq!(format_utc(&t, layout), want, "layout {layout:?}");
        }
    }

    #[test]
    fn go_format_test_table() {
        // The table of Go's src/time/format_test.go (TestFormat), same instant and zone.
        let t = go_test_time();
        let cases = [
            ("Mon Jan _2 15:04:05 2006", "Wed Feb  4 21:00:57 2009"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Wed Feb  4 21:00:57 PST 2009",
            ),
            (
                "Mon Jan 02 15:04:05 -0700 2006",
                "Wed Feb 04 21:00:57 -0800 2009",
            ),
            ("02 Jan 06 15:04 MST", "04 Feb 09 21:00 PST"),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Wednesday, 04-Feb-09 21:00:57 PST",
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 MST",
                "Wed, 04 Feb 2009 21:00:57 PST",
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 -0700",
                "Wed, 04 Feb 2009 21:00:57 -0800",
            ),
            ("2006-01-02T15:04:05Z07:00", "2009-02-04T21:00:57-08:00"),
            (
                "2006-01-02T15:04:05.999999999Z07:00",
                "2009-02-04T21:00:57.0123456-08:00",
            ),
            ("3:04PM", "9:00PM"),
            ("3pm", "9pm"),
            ("3PM", "9PM"),
            ("06 01 02", "09 02 04"),
            (
                "Hi Janet, the Month is January",
                "Hi Janet, the Month is February",
            ),
            ("Jan _2 15:04:05", "Feb  4 21:00:57"),
            ("Jan _2 15:04:05.000", "Feb  4 21:00:57.012"),
            ("Jan _2 15:04:05.000000", "Feb  4 21:00:57.012345"),
            ("Jan _2 15:04:05.000000000", "Feb  4 21:00:57.012345600"),
            ("Jan _2 15:04:05.999999999", "Feb  4 21:00:57.0123456"),
            ("2006.01.02 15:04:05.999", "2009.02.04 21:00:57.012"),
            ("2006-01-02 15:04:05", "2009-02-04 21:00:57"),
            ("2006-01-02", "2009-02-04"),
            ("15:04:05", "21:00:57"),
            ("Jan  2 002 __2 2", "Feb  4 035  35 4"),
            ("2006 6 06 _6 __6 ___6", "2009 6 09 _6 __6 ___6"),
            ("Jan January 1 01 _1", "Feb February 2 02 _2"),
            ("2 02 _2 __2", "4 04  4  35"),
            ("Mon Monday", "Wed Wednesday"),
            ("15 3 03 _3", "21 9 09 _9"),
            ("4 04 _4", "0 00 _0"),
            ("5 05 _5", "57 57 _57"),
        ];
        for (layout, want) in cases {
            assert_eq!(
                format_fixed(&t, Some("PST"), layout),
                want,
                "layout {layout:?}"
            );
        }
    }

    #[test]
    fn zones_with_offsets() {
        let t = go_test_time();
        assert_eq!(format_fixed(&t, None, "MST"), "-0800");
        assert_eq!(
            format_fixed(&t, None, "Z07:00:00 Z070000 Z07 -07:00:00 -070000 -07"),
            "-08:00:00 -080000 -08 -08:00:00 -080000 -08"
        );
        let east = FixedOffset::east_opt(5 * 3600 + 30 * 60 + 15).unwrap();
        let t = playground().with_timezone(&east);
        assert_eq!(
            format_fixed(&t, None, "Z07:00:00|-0700|MST|15:04:05"),
            "+05:30:15|+0530|+0530|04:34:20"
        );
    }

    #[test]
    fn fractional_seconds() {
        let t = Utc.with_ymd_and_hms(2009, 11, 10, 23, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(format_utc(&t, "05.000"), "05.120");
        assert_eq!(format_utc(&t, "05.999"), "05.12");
        assert_eq!(format_utc(&t, "05,999999"), "05,12");
        assert_eq!(format_utc(&t, "05.0"), "05.1");
        assert_eq!(format_utc(&t, "05.000000000000"), "05.120000000");
        // A run of zeros followed by another digit is literal text.
        assert_eq!(format_utc(&t, ".0001"), ".0011");
        // No digits after the separator: literal.
        assert_eq!(format_utc(&t, "5."), "5.");
    }

    #[test]
    fn midnight_and_noon_in_12h_clock() {
        let midnight = Utc.with_ymd_and_hms(2024, 1, 1, 0, 7, 9).unwrap();
        assert_eq!(format_utc(&midnight, "3:04:05 PM 03"), "12:07:09 AM 12");
        let noon = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(format_utc(&noon, "3pm"), "12pm");
        assert_eq!(format_utc(&noon, "__2 002"), "  1 001");
    }

    #[test]
    fn never_panics_on_odd_layouts() {
        let t = playground();
        for layout in [
            "J", "Ja", "M", "Mo", "MS", "0", "_", "__", "-0", "-07:0", "Z0", "Z07:0", ".", ",",
            "P", "p", "é", "0é", ".9é",
        ] {
            let _ = format_utc(&t, layout);
        }
    }
}
