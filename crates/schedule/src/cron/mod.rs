//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`: the parsed form and the search
//! for the next matching minute.

mod parse;
mod set;

use std::fmt;

use time::{Date, Month, OffsetDateTime, Time, UtcOffset};

use parse::{FIELD_NAMES, HOURS, MINUTES, MONTH, YEAR};
use set::ValueSet;

/// The first year a cron expression can name.
pub const MIN_YEAR: i32 = 1970;
/// The last year a cron expression can name; searches for the next fire time stop here.
pub const MAX_YEAR: i32 = 2199;

/// A parsed `cron(...)` expression, evaluated in UTC at minute granularity.
///
/// Build one with [`Cron::parse`] (the six fields) or by parsing a whole `cron(...)`
/// [`Schedule`](crate::Schedule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The six fields as written, joined by single spaces (for `Display`).
    fields: String,
    /// Boxed so that `Schedule` stays small next to its `Rate` variant.
    table: Box<Table>,
}

/// The parsed fields: which values of each match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    minutes: ValueSet,
    hours: ValueSet,
    months: ValueSet,
    years: ValueSet,
    days: Days,
}

/// Exactly one of day-of-month and day-of-week is `?`; this holds the other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Days {
    OfMonth(DayOfMonth),
    OfWeek(DayOfWeek),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayOfMonth {
    Set(ValueSet),
    /// `L`
    Last,
    /// `LW`
    LastWeekday,
    /// `15W`: the weekday nearest the given day, never leaving the month.
    NearestWeekday(u32),
}

/// Weekdays are numbered as AWS does: 1 = Sunday ... 7 = Saturday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayOfWeek {
    Set(ValueSet),
    /// `6L`: the last such weekday of the month.
    Last(u32),
    /// `3#2`: the `nth` such weekday of the month.
    Nth {
        weekday: u32,
        nth: u32,
    },
}

impl Cron {
    /// Parses the six space-separated fields (what goes inside `cron(...)`).
    ///
    /// The error is the problem alone, without the expression; [`Schedule`](crate::Schedule)'s
    /// `FromStr` wraps it into a [`ScheduleError`](crate::ScheduleError).
    pub fn parse(fields: &str) -> Result<Self, String> {
        let parts: Vec<&str> = fields.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = parts[..] else {
            // Five fields is usually Unix cron habit: offer the same with a year, if valid.
            let with_year = format!("{} *", parts.join(" "));
            let example = if parts.len() == 5 && Self::parse(&with_year).is_ok() {
                format!("cron({with_year})")
            } else {
                "cron(0 12 * * ? *)".to_owned()
            };
            let hint = if parts.len() == 5 {
                " (AWS cron ends with a year field)"
            } else {
                ""
            };
            return Err(format!(
                "expected 6 fields ({FIELD_NAMES}), found {}{hint}; e.g. {example}",
                parts.len()
            ));
        };
        let minutes = parse::list(&MINUTES, minutes)?;
        let hours = parse::list(&HOURS, hours)?;
        let day_of_month = parse::day_of_month(dom)?;
        let months = parse::list(&MONTH, month)?;
        let day_of_week = parse::day_of_week(dow)?;
        let years = parse::list(&YEAR, year)?;

        // A copy of the expression with one field replaced, to suggest a fix.
        let with = |index: usize, value: &str| {
            let mut fixed = parts.clone();
            fixed[index] = value;
            format!("cron({})", fixed.join(" "))
        };
        let days = match (day_of_month, day_of_week) {
            (Some(d), None) => Days::OfMonth(d),
            (None, Some(w)) => Days::OfWeek(w),
            (None, None) => {
                return Err(format!(
                    "day-of-month and day-of-week cannot both be `?`; set one of them, e.g. {}",
                    with(2, "*")
                ))
            }
            (Some(_), Some(_)) if dom == "*" && dow == "*" => {
                return Err(format!(
                "day-of-month and day-of-week cannot both be `*`; use `?` in one of them, e.g. {}",
                with(4, "?")
            ))
            }
            (Some(_), Some(_)) => {
                // Keep whichever field carries a real restriction.
                let fix = if dom == "*" {
                    with(2, "?")
                } else {
                    with(4, "?")
                };
                return Err(format!(
                    "day-of-month (`{dom}`) and day-of-week (`{dow}`) cannot both be set; \
                     use `?` in one of them, e.g. {fix}"
                ));
            }
        };
        Ok(Self {
            fields: parts.join(" "),
            table: Box::new(Table {
                minutes,
                hours,
                months,
                years,
                days,
            }),
        })
    }

    /// The six fields as written, joined by single spaces.
    pub fn fields(&self) -> &str {
        &self.fields
    }

    /// The first matching minute strictly after `after`, in UTC; `None` when nothing matches
    /// up to the end of [`MAX_YEAR`].
    ///
    /// The search walks years, then months, then the days matching in each month, then hours
    /// and minutes, jumping straight to the next allowed value of each field. Its work is
    /// bounded by one day-of-month computation per candidate month: at most 12 × 230 even for
    /// an expression that never fires, such as `cron(0 0 30 2 ? *)`.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let t = &self.table;
        let after = after.to_offset(UtcOffset::UTC);
        // Fire times fall on whole minutes, so the first candidate is the next whole minute.
        let start = after
            .replace_nanosecond(0)
            .ok()?
            .replace_second(0)
            .ok()?
            .checked_add(time::Duration::MINUTE)?;
        let (start_year, start_month, start_day, start_hour, start_minute) =
            if start.year() < MIN_YEAR {
                (MIN_YEAR, 1, 1, 0, 0)
            } else {
                (
                    start.year(),
                    u32::from(u8::from(start.month())),
                    u32::from(start.day()),
                    u32::from(start.hour()),
                    u32::from(start.minute()),
                )
            };
        if start_year > MAX_YEAR {
            return None;
        }

        let mut year = t.years.next_from(u32::try_from(start_year).ok()?);
        while let Some(y) = year {
            let y_i32 = i32::try_from(y).ok()?;
            let in_start_year = y_i32 == start_year;
            let mut month = t
                .months
                .next_from(if in_start_year { start_month } else { 1 });
            while let Some(m) = month {
                let in_start_month = in_start_year && m == start_month;
                let days = t.days_in(y_i32, m)?;
                let first_day = if in_start_month { start_day } else { 1 };
                for day in (first_day..=31).filter(|d| days & (1 << d) != 0) {
                    let in_start_day = in_start_month && day == start_day;
                    let mut hour = t.hours.next_from(if in_start_day { start_hour } else { 0 });
                    while let Some(h) = hour {
                        let from = if in_start_day && h == start_hour {
                            start_minute
                        } else {
                            0
                        };
                        if let Some(minute) = t.minutes.next_from(from) {
                            return at(y_i32, m, day, h, minute);
                        }
                        hour = t.hours.next_from(h + 1);
                    }
                }
                month = t.months.next_from(m + 1);
            }
            year = t.years.next_from(y + 1);
        }
        None
    }
}

impl Table {
    /// The days of `month` in `year` that match, as bits (bit `d` set = day `d` matches).
    fn days_in(&self, year: i32, month: u32) -> Option<u64> {
        let month_enum = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let last = u32::from(days_in_month(year, month_enum));
        let first_weekday = u32::from(
            Date::from_calendar_date(year, month_enum, 1)
                .ok()?
                .weekday()
                .number_from_sunday(),
        );
        // AWS numbering: 1 = Sunday ... 7 = Saturday.
        let weekday_of = |day: u32| (first_weekday - 1 + day - 1) % 7 + 1;
        const SUNDAY: u32 = 1;
        const SATURDAY: u32 = 7;
        let bit = |day: u32| 1u64 << day;
        let all_days = (bit(last + 1) - 1) & !1;

        Some(
            match self.days {
                Days::OfMonth(DayOfMonth::Set(set)) => (1..=last)
                    .filter(|d| set.contains(*d))
                    .fold(0, |acc, d| acc | bit(d)),
                Days::OfMonth(DayOfMonth::Last) => bit(last),
                Days::OfMonth(DayOfMonth::LastWeekday) => bit(match weekday_of(last) {
                    SATURDAY => last - 1,
                    SUNDAY => last - 2,
                    _ => last,
                }),
                // A day the month does not have (`31W` in April) does not fire that month.
                Days::OfMonth(DayOfMonth::NearestWeekday(day)) if day > last => 0,
                // Nearest weekday without leaving the month: a Saturday the 1st moves forward to
                // Monday the 3rd, a Sunday on the last day back to Friday.
                Days::OfMonth(DayOfMonth::NearestWeekday(day)) => bit(match weekday_of(day) {
                    SATURDAY if day == 1 => 3,
                    SATURDAY => day - 1,
                    SUNDAY if day == last => day - 2,
                    SUNDAY => day + 1,
                    _ => day,
                }),
                Days::OfWeek(DayOfWeek::Set(set)) => (1..=last)
                    .filter(|d| set.contains(weekday_of(*d)))
                    .fold(0, |acc, d| acc | bit(d)),
                Days::OfWeek(DayOfWeek::Last(weekday)) => {
                    bit(last - (weekday_of(last) + 7 - weekday) % 7)
                }
                Days::OfWeek(DayOfWeek::Nth { weekday, nth }) => {
                    let first = 1 + (weekday + 7 - first_weekday) % 7;
                    let day = first + 7 * (nth - 1);
                    if day <= last {
                        bit(day)
                    } else {
                        0
                    }
                }
            } & all_days,
        )
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron({})", self.fields)
    }
}

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Option<OffsetDateTime> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, 0).ok()?;
    Some(date.with_time(time).assume_utc())
}

/// Written out rather than using `time`'s helper, whose name changed within 0.3.
fn days_in_month(year: i32, month: Month) -> u8 {
    match month {
        Month::February if time::util::is_leap_year(year) => 29,
        Month::February => 28,
        Month::April | Month::June | Month::September | Month::November => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::OffsetDateTime;

    use super::Cron;

    /// Whether the minute `t` matches, checked field by field with no skipping.
    fn matches(cron: &Cron, t: OffsetDateTime) -> bool {
        // Day matching last: it is the costly check.
        t.second() == 0
            && cron.table.minutes.contains(u32::from(t.minute()))
            && cron.table.hours.contains(u32::from(t.hour()))
            && cron
                .table
                .days_in(t.year(), u32::from(u8::from(t.month())))
                .is_some_and(|days| days & (1 << t.day()) != 0)
            && cron.table.months.contains(u32::from(u8::from(t.month())))
            && cron.table.years.contains(u32::try_from(t.year()).unwrap())
    }

    /// The skipping search agrees with a minute-by-minute scan.
    #[test]
    fn search_agrees_with_a_scan() {
        let exprs = [
            "*/7 * * * ? *",
            "0 9-17 ? * MON-FRI *",
            "30 22-2 * * ? *",
            "0 0 L * ? *",
            "15 12 LW * ? *",
            "0 6 1W * ? *",
            "0 6 31W * ? *",
            "0 0 ? * 6L *",
            "0 0 ? * 5#5 *",
            "5,55 */5 1-7 * ? *",
            "0 0 29 2 ? *",
            "59 23 ? JAN,MAR 7 2026,2027",
        ];
        // Crosses a year end, month ends, February and a fifth Thursday (2026-01-29).
        let start = datetime!(2025-12-30 21:59:30 UTC);
        let end = datetime!(2026-03-10 00:00 UTC);
        for expr in exprs {
            let cron = Cron::parse(expr).unwrap();
            let mut expected = Vec::new();
            let mut t = start.replace_second(0).unwrap() + time::Duration::MINUTE;
            while t <= end {
                if matches(&cron, t) {
                    expected.push(t);
                }
                t += time::Duration::MINUTE;
            }
            let mut found = Vec::new();
            let mut cursor = start;
            while let Some(next) = cron.next_after(cursor).filter(|n| *n <= end) {
                found.push(next);
                cursor = next;
            }
            assert_eq!(found, expected, "{expr}");
        }
    }
}
