//! `rate(VALUE UNIT)`: parsing and the anchored tick arithmetic.

use std::time::Duration;

use time::OffsetDateTime;

/// Units in seconds. `second(s)` is a Tusk-only extension (AWS's finest unit is the minute);
/// it exists so tests can see several ticks within seconds.
const UNITS: &[(&str, &str, u64)] = &[
    ("second", "seconds", 1),
    ("minute", "minutes", 60),
    ("hour", "hours", 3_600),
    ("day", "days", 86_400),
];

/// Parses the inside of `rate(...)`; the error is the problem text, without the expression.
pub(crate) fn parse(inner: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return Err("expected a value and a unit, e.g. rate(5 minutes)".to_owned());
    };
    // Digits only: AWS rejects signs, decimals and exponents.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the value `{value}` is not a positive whole number, e.g. rate(5 minutes)"
        ));
    }
    let Ok(value) = value.parse::<u64>() else {
        return Err(format!(
            "the value {value} is too large, e.g. rate(365 days)"
        ));
    };
    if value == 0 {
        return Err(
            "the value must be at least 1, e.g. rate(1 minute) or rate(5 minutes)".to_owned(),
        );
    }
    let Some(&(singular, plural, secs)) = UNITS
        .iter()
        .find(|(singular, plural, _)| unit == *singular || unit == *plural)
    else {
        let example = if value == 1 { "minute" } else { "minutes" };
        return Err(format!(
            "unknown unit `{unit}`; use minute(s), hour(s) or day(s), e.g. rate({value} {example})"
        ));
    };
    // AWS requires the singular for 1 and the plural otherwise; match it so a file that works
    // here also deploys to AWS.
    if value == 1 && unit != singular {
        return Err(format!(
            "a value of 1 takes the singular unit: rate(1 {singular})"
        ));
    }
    if value != 1 && unit != plural {
        return Err(format!(
            "a value other than 1 takes the plural unit: rate({value} {plural})"
        ));
    }
    match value.checked_mul(secs) {
        // Keep every instant representable: the `time` crate stops at year 9999.
        Some(total) if total <= MAX_RATE_SECS => Ok(Duration::from_secs(total)),
        _ => Err(format!(
            "the value {value} is too large, e.g. rate(365 days)"
        )),
    }
}

/// About 1000 years; any longer rate is surely a typo.
const MAX_RATE_SECS: u64 = 1_000 * 366 * 86_400;

/// Renders `every` as the shortest `rate(...)` that parses back to it.
pub(crate) fn display(every: Duration) -> String {
    let secs = every.as_secs();
    let (value, (singular, plural, _)) = UNITS
        .iter()
        .rev()
        .find(|(_, _, unit)| secs % unit == 0 && secs > 0)
        .map(|u| (secs / u.2, *u))
        // Zero (or sub-second) durations never come from parsing; print them as seconds.
        .unwrap_or((secs, UNITS[0]));
    let unit = if value == 1 { singular } else { plural };
    format!("rate({value} {unit})")
}

/// `anchor + k*every` for the smallest `k >= 1` that is strictly after `after`.
///
/// `k` starts at 1 because the anchor (the deploy) is not itself a tick: like AWS, the first
/// tick comes one period after the schedule is created.
pub(crate) fn next_after(
    every: Duration,
    after: OffsetDateTime,
    anchor: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let period = i128::try_from(every.as_nanos()).ok()?;
    if period == 0 {
        return None;
    }
    let elapsed = (after - anchor).whole_nanoseconds();
    let k = if elapsed < 0 { 1 } else { elapsed / period + 1 };
    let offset = k.checked_mul(period)?;
    let secs = i64::try_from(offset.div_euclid(1_000_000_000)).ok()?;
    let nanos = i32::try_from(offset.rem_euclid(1_000_000_000)).ok()?;
    anchor
        .to_offset(time::UtcOffset::UTC)
        .checked_add(time::Duration::new(secs, nanos))
}
