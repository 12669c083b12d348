//! Signing times: the `YYYYMMDDTHHMMSSZ` form SigV4 signs, and the HTTP `Date` form it may
//! arrive in.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc2822;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// How far the signing time may be from the server's clock, either way (AWS uses 15 minutes).
pub(crate) const MAX_SKEW_SECS: i64 = 15 * 60;

/// A point in time, in whole seconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(pub(crate) i64);

// The time crate cannot represent years past 9999; clamping keeps formatting infallible.
const MAX_UNIX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

impl Timestamp {
    pub(crate) fn from_system_time(t: SystemTime) -> Self {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
        };
        Timestamp(secs)
    }

    /// Parses the strict `YYYYMMDDTHHMMSSZ` form of `X-Amz-Date`.
    pub(crate) fn parse_amz(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        // ASCII first: the fields are sliced by byte offset, and a presigned URL's
        // `X-Amz-Date` is percent-decoded, so it can hold any UTF-8.
        if !s.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[range];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let year = i32::try_from(num(0..4)?).ok()?;
        let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
        let day = u8::try_from(num(6..8)?).ok()?;
        let hour = u8::try_from(num(9..11)?).ok()?;
        let minute = u8::try_from(num(11..13)?).ok()?;
        let second = u8::try_from(num(13..15)?).ok()?;
        let date = Date::from_calendar_date(year, month, day).ok()?;
        let time = Time::from_hms(hour, minute, second).ok()?;
        Some(Timestamp(
            PrimitiveDateTime::new(date, time)
                .assume_utc()
                .unix_timestamp(),
        ))
    }

    /// Parses an HTTP `Date` header (`Sun, 30 Aug 2015 12:36:00 GMT`).
    ///
    /// botocore writes this header with Python's `formatdate()`, which ends in `-0000`
    /// rather than `GMT`, so numeric zones are accepted as well.
    pub(crate) fn parse_http_date(s: &str) -> Option<Self> {
        let s = s.trim();
        let normalized = match s.rsplit_once(' ') {
            Some((head, "GMT" | "UTC" | "UT")) => format!("{head} +0000"),
            _ => s.to_owned(),
        };
        OffsetDateTime::parse(&normalized, &Rfc2822)
            .ok()
            .map(|t| Timestamp(t.unix_timestamp()))
    }

    /// The `YYYYMMDDTHHMMSSZ` form that goes into the string to sign.
    pub(crate) fn to_amz(self) -> String {
        let t = OffsetDateTime::from_unix_timestamp(self.0.clamp(0, MAX_UNIX))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn amz_round_trip() {
        let t = Timestamp::parse_amz("20150830T123600Z").unwrap();
        assert_eq!(t.0, 1_440_938_160);
        assert_eq!(t.to_amz(), "20150830T123600Z");
        let st = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(Timestamp::from_system_time(st), t);
    }

    #[test]
    fn amz_rejects_sloppy_forms() {
        for bad in [
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "20150830t123600Z",
            "20151330T123600Z",
            "20150231T123600Z",
            "20150830T253600Z",
            "2015083+T123600Z",
            "",
            // Found by the sigv4 fuzz target: 16 bytes with a 3-byte character across the
            // month field panicked on a non-boundary slice.
            "20240\u{fffd}T103000Z",
        ] {
            assert_eq!(Timestamp::parse_amz(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_date_forms() {
        let want = Some(Timestamp(1_440_938_160));
        assert_eq!(
            Timestamp::parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT"),
            want
        );
        assert_eq!(
            Timestamp::parse_http_date("Sun, 30 Aug 2015 12:36:00 -0000"),
            want
        );
        assert_eq!(
            Timestamp::parse_http_date("Sun, 30 Aug 2015 14:36:00 +0200"),
            want
        );
        assert_eq!(Timestamp::parse_http_date("yesterday"), None);
    }
}
