//! The schedule expressions of the Serverless Framework's `schedule` event, which are AWS
//! EventBridge's: `rate(5 minutes)` and `cron(0 12 * * ? *)`. The node parses them at deploy
//! time and asks [`Schedule::next_after`] when to fire next, and [`Schedule::fires_between`]
//! which ticks it missed while it was down.
//!
//! ```
//! use tusk_schedule::Schedule;
//! use time::macros::datetime;
//!
//! let weekdays: Schedule = "cron(0 9 ? * MON-FRI *)".parse().unwrap();
//! let friday_evening = datetime!(2026-11-27 18:00 UTC);
//! assert_eq!(
//!     weekdays.next_after(friday_evening, friday_evening),
//!     Some(datetime!(2026-11-30 09:00 UTC)), // the Monday
//! );
//! ```
//!
//! # What is supported
//!
//! `rate(VALUE UNIT)`: `VALUE` a whole number ≥ 1; `UNIT` one of `minute`, `minutes`, `hour`,
//! `hours`, `day`, `days`, singular exactly when `VALUE` is 1 (`rate(1 minutes)` and
//! `rate(5 minute)` are errors, as on AWS). **Tusk only:** `second` / `seconds` also work, so
//! tests can watch ticks arrive within seconds; AWS rejects them, and
//! [`Schedule::is_aws_compatible`] says so. Ticks fall at `anchor + k × every` for `k ≥ 1`,
//! where the anchor is when the schedule was deployed.
//!
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, always in UTC:
//!
//! | field | values | special characters |
//! |---|---|---|
//! | Minutes | 0-59 | `, - * /` |
//! | Hours | 0-23 | `, - * /` |
//! | Day-of-month | 1-31 | `, - * / ?`, `L` (last day), `LW` (last weekday), `15W` (weekday nearest the 15th) |
//! | Month | 1-12 or JAN-DEC | `, - * /` |
//! | Day-of-week | 1-7 or SUN-SAT, **1 = Sunday** | `, - * / ?`, `L` (Saturday), `6L` (last Friday of the month), `3#2` (second Tuesday) |
//! | Year | 1970-2199 | `, - * /` |
//!
//! - Exactly one of day-of-month and day-of-week is `?`; the other restricts the days.
//! - `*/15`, `0/15` (from 0, every 15), `10-50/10`; ranges may wrap around (`22-2` hours,
//!   `FRI-MON`), except in the year field. Names are case-insensitive.
//! - `L`, `LW`, `nW`, `nL` and `n#k` stand alone in their field (no lists or ranges), as on
//!   AWS (`3#1,6#3` is rejected).
//! - `nW` never leaves the month: Saturday the 1st moves to Monday the 3rd, Sunday the last
//!   day to the Friday before. A day the month lacks (`31W` in April) does not fire that month.
//!   `n#5` fires only in months that have a fifth such weekday.
//!
//! Limits: minute granularity for cron; nothing fires after [`MAX_YEAR`], so the search for
//! the next time always ends (an impossible date such as `cron(0 0 30 2 ? *)` yields `None`
//! after at most a few thousand month checks).

mod cron;
mod error;
mod rate;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

pub use cron::{Cron, MAX_YEAR, MIN_YEAR};
pub use error::ScheduleError;

/// A parsed `schedule` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `rate(5 minutes)`: every `every`, counted from the anchor (the deploy time).
    Rate {
        /// The period; never zero when parsed.
        every: Duration,
    },
    /// `cron(0 12 * * ? *)`: at the matching minutes, in UTC.
    Cron(Cron),
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expr = s.trim();
        let invalid_rate = |problem: String| ScheduleError::InvalidRate {
            expr: expr.to_owned(),
            problem,
        };
        let invalid_cron = |problem: String| ScheduleError::InvalidCron {
            expr: expr.to_owned(),
            problem,
        };
        if let Some(rest) = expr.strip_prefix("rate(") {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                invalid_rate("missing the closing `)`, e.g. rate(5 minutes)".into())
            })?;
            let every = rate::parse(inner).map_err(invalid_rate)?;
            Ok(Self::Rate { every })
        } else if let Some(rest) = expr.strip_prefix("cron(") {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                invalid_cron("missing the closing `)`, e.g. cron(0 12 * * ? *)".into())
            })?;
            Ok(Self::Cron(Cron::parse(inner).map_err(invalid_cron)?))
        } else {
            Err(ScheduleError::NotAnExpression {
                expr: expr.to_owned(),
            })
        }
    }
}

impl Schedule {
    /// The first fire time strictly after `after`, in UTC.
    ///
    /// For a rate: `anchor + k × every` for the smallest `k ≥ 1` that is after `after`; the
    /// anchor is when the schedule was created or deployed, and is not itself a tick. A cron
    /// ignores `anchor`. `None` when there is no later fire time: a cron past its last
    /// matching minute (at the latest the end of [`MAX_YEAR`]), or a time beyond what
    /// [`OffsetDateTime`] can hold.
    pub fn next_after(
        &self,
        after: OffsetDateTime,
        anchor: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        match self {
            Self::Rate { every } => rate::next_after(*every, after, anchor),
            Self::Cron(cron) => cron.next_after(after),
        }
    }

    /// Every fire time in `(from, to]`, oldest first, at most `limit` of them (the oldest
    /// `limit`). The node uses it to find the ticks it missed while it was down; a result of
    /// exactly `limit` entries may have been cut short.
    pub fn fires_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        anchor: OffsetDateTime,
        limit: usize,
    ) -> Vec<OffsetDateTime> {
        let mut fires = Vec::new();
        let mut cursor = from;
        while fires.len() < limit {
            match self.next_after(cursor, anchor) {
                Some(next) if next <= to => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }

    /// Whether AWS would accept this expression too: false only for Tusk's sub-minute rates
    /// (`rate(30 seconds)`), so a deploy can warn that the file will not work on AWS.
    pub fn is_aws_compatible(&self) -> bool {
        match self {
            Self::Rate { every } => every.as_secs() % 60 == 0 && every.subsec_nanos() == 0,
            Self::Cron(_) => true,
        }
    }
}

/// Renders the expression back in AWS syntax: `rate(5 minutes)` (in the largest whole unit)
/// or `cron(...)` with the fields as written.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate { every } => f.write_str(&rate::display(*every)),
            Self::Cron(cron) => fmt::Display::fmt(cron, f),
        }
    }
}

/// Serialized as the expression string, so stored schedules read like `serverless.yml`.
impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
