//! Time, for everything in the broker that decides by it: tickets, login limits, proof
//! budgets, the readiness cache, sessions and the sweeper. The ground floor of the crate: it
//! uses no other module, and every module takes the time from here.
//!
//! Decisions take `now` as an argument ([`Millis`]); whoever holds the state reads it from
//! the broker's [`Clock`], which tests replace to move time without sleeping.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the broker's (and its database's) notion of time.
pub type Millis = i64;

/// Where "now" comes from. The server uses [`system_clock`]; tests may move time.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock in Unix milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| unix_millis(SystemTime::now()))
}

/// Milliseconds since the Unix epoch of `time` (negative before 1970, saturating).
pub fn unix_millis(time: SystemTime) -> Millis {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

/// `2026-11-30T06:05:07.123Z`: RFC 3339 in UTC with milliseconds, for Unix milliseconds
/// `ms` (clamped to the years 0000–9999).
pub fn rfc3339(ms: Millis) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(
        if ms < 0 {
            time::PrimitiveDateTime::MIN.assume_utc()
        } else {
            time::PrimitiveDateTime::MAX.assume_utc()
        },
    );
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Unix milliseconds from an RFC 3339 time (`2026-11-30T06:05:07Z`, any offset), a date
/// (`2026-11-30`, midnight UTC) or a number of Unix milliseconds.
pub fn parse_time(text: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    i64::try_from(date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unix_millis_both_sides_of_the_epoch() {
        assert_eq!(unix_millis(UNIX_EPOCH), 0);
        assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_millis(20)), -20);
    }

    #[test]
    fn times_are_written_and_read_as_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(
            parse_time("2024-02-29T12:34:56.789Z"),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_time("2024-02-29T13:34:56+01:00"),
            Some(1_709_210_096_000)
        );
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_time("1709210096789"), Some(1_709_210_096_789));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn the_system_clock_is_near_now() {
        let before = unix_millis(SystemTime::now());
        let now = system_clock()();
        assert!(now >= before && now - before < 60_000, "{before} {now}");
    }
}
