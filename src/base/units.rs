//! Units used by recipe options: Go durations (`20m`, `1h30m`, `500ms`) and disk sizes
//! (`10G`, bare numbers in MiB).

use std::time::Duration;

/// Parses a Go duration string (`time.ParseDuration`): a sequence of decimal numbers with
/// optional fractions and a unit each (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); `0` alone is
/// allowed. Negative durations are refused: no recipe option means anything by them.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!("invalid number in duration `{text}`"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid number in duration `{text}`"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "missing unit in duration `{text}` (use h, m, s or ms)"
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}` (use h, m, s, ms, us or ns)"
                ));
            }
        };
        total_nanos += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(format!("duration `{text}` is too long"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// A time shown to people as it runs: `12.3 s` under a minute, then `1:05` (minutes and
/// seconds, as the window's build and history and `kiln history` show it).
pub fn format_elapsed(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = d.as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Formats a duration the way Go prints it (`1h30m0s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_nanos();
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

const MIB: u64 = 1024 * 1024;

/// Parses a disk size as Packer's qemu builder does: a number with an optional suffix `K`,
/// `M`, `G`, `T` (either case, optionally followed by `B`/`iB`); a bare number means MiB.
/// Returns bytes.
pub fn parse_disk_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!(
            "expected a size like \"10G\" or a number of MiB, got \"{text}\""
        ));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("size \"{text}\" is too large"))?;
    let unit = s[digits..].trim();
    let multiplier: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => MIB,
        "K" | "KB" | "KIB" => 1024,
        "G" | "GB" | "GIB" => 1024 * MIB,
        "T" | "TB" | "TIB" => 1024 * 1024 * MIB,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` in \"{text}\" (use K, M, G or T; a bare number is MiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// Formats bytes with a binary unit (`10 GiB`, `512 MiB`, `1.5 GiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{} {}", value as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("2h45m30.5s"),
            Ok(Duration::from_millis(9_930_500))
        );
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(
            parse_duration("twenty")
                .unwrap_err()
                .contains("invalid number")
        );
        assert!(parse_duration("20").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("20d")
                .unwrap_err()
                .contains("unknown unit `d`")
        );
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("1..5s").is_err());
        assert!(
            parse_duration("9999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn disk_sizes() {
        assert_eq!(parse_disk_size("10G"), Ok(10 * 1024 * MIB));
        assert_eq!(parse_disk_size("10g"), Ok(10 * 1024 * MIB));
        assert_eq!(parse_disk_size("40960"), Ok(40960 * MIB));
        assert_eq!(parse_disk_size("40960M"), Ok(40960 * MIB));
        assert_eq!(parse_disk_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_disk_size("1T"), Ok(1024 * 1024 * MIB));
        assert_eq!(parse_disk_size("10GiB"), Ok(10 * 1024 * MIB));
    }

    #[test]
    fn bad_disk_sizes_say_why() {
        assert!(
            parse_disk_size("ten")
                .unwrap_err()
                .contains("expected a size")
        );
        assert!(
            parse_disk_size("10X")
                .unwrap_err()
                .contains("unknown size unit `X`")
        );
        assert!(
            parse_disk_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_disk_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn bytes_format_with_binary_units() {
        assert_eq!(format_bytes(10 * 1024 * MIB), "10 GiB");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536 * MIB), "1.5 GiB");
    }
}
