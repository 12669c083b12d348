//! Field-by-field parsing of `cron(...)`. Every error is the problem text alone; the caller
//! prefixes the whole expression.

use super::set::ValueSet;
use super::{DayOfMonth, DayOfWeek};

/// One of the six fields: its range, names, and an expression to show in errors.
pub(crate) struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ... (month and day-of-week only).
    names: &'static [&'static str],
    /// Whether a backwards range such as hours `22-2` wraps around (22, 23, 0, 1, 2). Years
    /// do not wrap: `2030-2020` can only be a mistake.
    wraps: bool,
    /// Only day-of-month and day-of-week take `?`, `L`, `W` and `#`.
    day: bool,
    allowed: &'static str,
    example: &'static str,
}

pub(crate) const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    wraps: true,
    day: false,
    allowed: "0-59",
    example: "cron(0/15 * * * ? *)",
};
pub(crate) const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    wraps: true,
    day: false,
    allowed: "0-23",
    example: "cron(0 9-17 * * ? *)",
};
pub(crate) const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    wraps: true,
    day: true,
    allowed: "1-31",
    example: "cron(0 12 1,15 * ? *)",
};
pub(crate) const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    wraps: true,
    day: false,
    allowed: "1-12 or JAN-DEC",
    example: "cron(0 12 1 JAN-JUN ? *)",
};
pub(crate) const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    wraps: true,
    day: true,
    allowed: "1-7 or SUN-SAT (1 is Sunday)",
    example: "cron(0 12 ? * MON-FRI *)",
};
pub(crate) const YEAR: Field = Field {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    wraps: false,
    day: false,
    allowed: "1970-2199",
    example: "cron(0 12 1 1 ? 2026-2030)",
};

/// The names of the six fields, in order, for the field-count error.
pub(crate) const FIELD_NAMES: &str = "minutes hours day-of-month month day-of-week year";

/// A list of `,`-separated items, each `*`, `V`, `A-B`, with an optional `/STEP`.
pub(crate) fn list(field: &Field, text: &str) -> Result<ValueSet, String> {
    if !field.day && text.contains('?') {
        return Err(format!(
            "`?` is only allowed in day-of-month or day-of-week, not in {}; e.g. {}",
            field.name, field.example
        ));
    }
    let span = field.max - field.min + 1;
    let mut set = ValueSet::empty(field.min);
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{} `{text}` has an empty item; separate values with single commas, e.g. {}",
                field.name, field.example
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(field, item, step)?)),
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(field, item, a)?, value(field, item, b)?);
            if a > b && !field.wraps {
                return Err(format!(
                    "{} range `{range}` runs backwards; write the smaller value first, e.g. {}",
                    field.name, field.example
                ));
            }
            (a, b)
        } else {
            let v = value(field, item, range)?;
            // `5/15` means "from 5, every 15", up to the end of the field.
            (v, if step.is_some() { field.max } else { v })
        };
        // Offsets from `start`, wrapping past `max` back to `min` for ranges like `22-2`.
        let len = if end >= start {
            end - start
        } else {
            end + span - start
        };
        let step = step.unwrap_or(1);
        let mut offset = 0;
        while offset <= len {
            set.insert(field.min + (start - field.min + offset) % span);
            offset += step;
        }
    }
    Ok(set)
}

fn parse_step(field: &Field, item: &str, step: &str) -> Result<u32, String> {
    let span = field.max - field.min + 1;
    match digits(step) {
        Some(n) if (1..=span).contains(&n) => Ok(n),
        _ => Err(format!(
            "the step in {} `{item}` must be a whole number from 1 to {span}, e.g. {}",
            field.name, field.example
        )),
    }
}

/// One value: a number in range or, for month and day-of-week, a name (any case).
pub(crate) fn value(field: &Field, item: &str, token: &str) -> Result<u32, String> {
    if token.is_empty() {
        return Err(format!(
            "{} `{item}` is missing a value; use {}, e.g. {}",
            field.name, field.allowed, field.example
        ));
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return match digits(token) {
            Some(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{} value {token} is out of range {}, e.g. {}",
                field.name, field.allowed, field.example
            )),
        };
    }
    if let Some(i) = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token))
    {
        // At most 12 names, so the index always fits.
        return Ok(field.min + u32::try_from(i).unwrap_or(0));
    }
    let upper = token.to_ascii_uppercase();
    if !field.day && (upper.contains('L') || upper.contains('W') || upper.contains('#')) {
        return Err(format!(
            "`{token}` in {}: `L`, `W` and `#` are only allowed in day-of-month or day-of-week; use {}, e.g. {}",
            field.name, field.allowed, field.example
        ));
    }
    Err(format!(
        "`{token}` is not a valid {} value; use {}, e.g. {}",
        field.name, field.allowed, field.example
    ))
}

fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Characters that turn a single-value form (`15W`, `6L`, `3#2`) into a list or range, which
/// AWS does not allow.
const LIST_CHARS: [char; 4] = [',', '-', '/', '*'];

/// Day-of-month; `None` is `?`.
pub(crate) fn day_of_month(text: &str) -> Result<Option<DayOfMonth>, String> {
    let field = &DAY_OF_MONTH;
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "?" => return Ok(None),
        "L" => return Ok(Some(DayOfMonth::Last)),
        "LW" => return Ok(Some(DayOfMonth::LastWeekday)),
        _ => {}
    }
    if upper.contains('?') {
        return Err("`?` must stand alone in day-of-month, e.g. cron(0 12 ? * MON *)".to_owned());
    }
    if upper.contains('#') {
        return Err(format!(
            "`{text}` in day-of-month: `#` is only allowed in day-of-week, e.g. cron(0 12 ? * 3#2 *) (the second Tuesday)"
        ));
    }
    if upper.contains('L') {
        return Err(format!(
            "`{text}` in day-of-month: `L` must stand alone (the last day of the month) or be `LW` \
             (the last weekday), e.g. cron(0 12 L * ? *)"
        ));
    }
    if let Some(day) = upper.strip_suffix('W') {
        if day.contains(LIST_CHARS) || day.contains('W') {
            return Err(format!(
                "`{text}` in day-of-month: `W` follows a single day, not a list or range, \
                 e.g. cron(0 12 15W * ? *) (the weekday nearest the 15th)"
            ));
        }
        return Ok(Some(DayOfMonth::NearestWeekday(value(field, text, day)?)));
    }
    if upper.contains('W') {
        return Err(format!(
            "`{text}` in day-of-month: `W` goes right after a single day, e.g. cron(0 12 15W * ? *)"
        ));
    }
    Ok(Some(DayOfMonth::Set(list(field, text)?)))
}

/// Day-of-week; `None` is `?`.
pub(crate) fn day_of_week(text: &str) -> Result<Option<DayOfWeek>, String> {
    let field = &DAY_OF_WEEK;
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "?" => return Ok(None),
        // `L` alone is the last day of the week: Saturday.
        "L" => {
            let mut saturday = ValueSet::empty(field.min);
            saturday.insert(7);
            return Ok(Some(DayOfWeek::Set(saturday)));
        }
        _ => {}
    }
    if upper.contains('?') {
        return Err("`?` must stand alone in day-of-week, e.g. cron(0 12 15 * ? *)".to_owned());
    }
    if let Some((day, nth)) = upper.split_once('#') {
        if upper.contains(LIST_CHARS) || upper.contains('L') || nth.contains('#') {
            return Err(format!(
                "`{text}` in day-of-week: `#` must stand alone (one `#` expression per field), \
                 e.g. cron(0 12 ? * 3#2 *) (the second Tuesday)"
            ));
        }
        let weekday = value(field, text, day)?;
        return match digits(nth) {
            Some(nth @ 1..=5) => Ok(Some(DayOfWeek::Nth { weekday, nth })),
            _ => Err(format!(
                "`{text}` in day-of-week: the number after `#` is the week of the month, 1-5, \
                 e.g. cron(0 12 ? * 3#2 *) (the second Tuesday)"
            )),
        };
    }
    if let Some(day) = upper.strip_suffix('L') {
        if day.contains(LIST_CHARS) || day.contains('L') {
            return Err(format!(
                "`{text}` in day-of-week: `L` follows a single day, not a list or range, \
                 e.g. cron(0 12 ? * 6L *) (the last Friday of the month)"
            ));
        }
        return Ok(Some(DayOfWeek::Last(value(field, text, day)?)));
    }
    if upper.contains('L') {
        return Err(format!(
            "`{text}` in day-of-week: `L` stands alone (Saturday) or follows a single day, \
             e.g. cron(0 12 ? * 6L *) (the last Friday of the month)"
        ));
    }
    if upper.contains('W') && !field.names.iter().any(|n| upper.contains(n)) {
        return Err(format!(
            "`{text}` in day-of-week: `W` is only allowed in day-of-month, e.g. cron(0 12 15W * ? *)"
        ));
    }
    Ok(Some(DayOfWeek::Set(list(field, text)?)))
}
