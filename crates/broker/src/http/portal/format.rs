//! How the portal writes times, byte counts and durations for people (the script formats
//! live updates the same way).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// `2026-11-30 06:05 UTC` for Unix milliseconds `ms`.
pub(super) fn utc_minute(ms: i64) -> String {
    let at = utc(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// `2026-11-30T06:05:07Z`, for `<time datetime>`.
pub(super) fn utc_iso(ms: i64) -> String {
    utc(ms).format(&Rfc3339).unwrap_or_default()
}

/// The second of Unix milliseconds `ms` (clamped to the years `time` represents).
fn utc(ms: i64) -> OffsetDateTime {
    let secs = ms.div_euclid(1000);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 {
        PrimitiveDateTime::MIN.assume_utc()
    } else {
        PrimitiveDateTime::MAX.assume_utc()
    })
}

/// `512 B`, `1.5 KiB`, `2.0 MiB`, …
pub(super) fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `45 s`, `3 min 5 s`, `2 h 0 min`.
pub(super) fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_bytes_and_durations_read_well() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(1_735_689_600_000), "2025-01-01 00:00 UTC");
        assert_eq!(utc_iso(1_709_210_096_000), "2024-02-29T12:34:56Z");
        assert_eq!(utc_minute(-1), "1969-12-31 23:59 UTC");
        assert_eq!(utc_minute(i64::MAX), "9999-12-31 23:59 UTC");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(7200), "2 h 0 min");
    }
}
