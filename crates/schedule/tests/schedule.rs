//! Behaviour of `rate(...)` and `cron(...)` against known calendar facts.
//!
//! Long on purpose: one test per calendar fact of EventBridge's rate/cron semantics.

use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;
use tusk_schedule::{Cron, Schedule, ScheduleError};

fn parse(expr: &str) -> Schedule {
    expr.parse()
        .unwrap_or_else(|e| panic!("{expr} should parse: {e}"))
}

/// The next fire of a cron (whose anchor is irrelevant).
fn next(expr: &str, after: OffsetDateTime) -> Option<OffsetDateTime> {
    parse(expr).next_after(after, after)
}

/// The next `n` fires of a cron after `after`.
fn upcoming(expr: &str, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
    parse(expr).fires_between(after, datetime!(2199-12-31 23:59 UTC), after, n)
}

fn error(expr: &str) -> String {
    match expr.parse::<Schedule>() {
        Ok(s) => panic!("{expr} should be rejected, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the error names the expression, contains `needle`, and shows an example.
#[track_caller]
fn assert_error(expr: &str, needle: &str) {
    let message = error(expr);
    assert!(
        message.contains(needle),
        "{expr}: expected {needle:?} in {message:?}"
    );
    assert!(message.starts_with(expr.trim()), "{message:?}");
    assert!(
        message.contains("e.g.") || message.contains(": rate("),
        "{message:?}"
    );
}

// ---- rate -------------------------------------------------------------------------------

#[test]
fn rate_units() {
    let cases = [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3_600),
        ("rate(12 hours)", 43_200),
        ("rate(1 day)", 86_400),
        ("rate(7 days)", 604_800),
        ("rate(1 second)", 1),
        ("rate(10 seconds)", 10),
        ("  rate( 5   minutes )  ", 300),
    ];
    for (expr, secs) in cases {
        assert_eq!(
            parse(expr),
            Schedule::Rate {
                every: Duration::from_secs(secs)
            },
            "{expr}"
        );
    }
}

#[test]
fn seconds_are_tusk_only() {
    assert!(!parse("rate(10 seconds)").is_aws_compatible());
    assert!(!parse("rate(90 seconds)").is_aws_compatible());
    assert!(parse("rate(120 seconds)").is_aws_compatible());
    assert!(parse("rate(5 minutes)").is_aws_compatible());
    assert!(parse("cron(0 12 * * ? *)").is_aws_compatible());
}

#[test]
fn rate_errors() {
    assert_error("rate(0 minutes)", "must be at least 1");
    assert_error("rate(1 minutes)", "singular unit: rate(1 minute)");
    assert_error("rate(5 minute)", "plural unit: rate(5 minutes)");
    assert_error("rate(1 hours)", "rate(1 hour)");
    assert_error("rate(2 day)", "rate(2 days)");
    assert_error("rate(5 weeks)", "unknown unit `weeks`");
    assert_error("rate(5 Minutes)", "unknown unit `Minutes`");
    assert_error("rate(-1 minutes)", "not a positive whole number");
    assert_error("rate(1.5 hours)", "not a positive whole number");
    assert_error("rate(five minutes)", "not a positive whole number");
    assert_error("rate(5)", "expected a value and a unit");
    assert_error("rate()", "expected a value and a unit");
    assert_error("rate(5 minutes please)", "expected a value and a unit");
    assert_error("rate(5 minutes", "missing the closing `)`");
    assert_error("rate(99999999999999999999 days)", "too large");
    assert_error("rate(999999999 days)", "too large");
    assert!(matches!(
        "rate(0 minutes)".parse::<Schedule>(),
        Err(ScheduleError::InvalidRate { .. })
    ));
}

#[test]
fn not_an_expression() {
    for expr in [
        "",
        "every 5 minutes",
        "RATE(5 minutes)",
        "0 12 * * ? *",
        "at(2026-01-01T00:00:00)",
    ] {
        let err = expr.parse::<Schedule>().unwrap_err();
        assert!(
            matches!(err, ScheduleError::NotAnExpression { .. }),
            "{expr}: {err:?}"
        );
        assert!(err
            .to_string()
            .contains("e.g. rate(5 minutes) or cron(0 12 * * ? *)"));
    }
}

#[test]
fn rate_ticks_are_anchored() {
    let rate = parse("rate(5 minutes)");
    let anchor = datetime!(2026-03-10 10:00:17 UTC);
    // The anchor itself is not a tick; the first is one period later.
    assert_eq!(
        rate.next_after(anchor, anchor),
        Some(datetime!(2026-03-10 10:05:17 UTC))
    );
    assert_eq!(
        rate.next_after(datetime!(2026-03-10 10:05:16.999 UTC), anchor),
        Some(datetime!(2026-03-10 10:05:17 UTC))
    );
    // Strictly after: a tick time itself yields the following tick.
    assert_eq!(
        rate.next_after(datetime!(2026-03-10 10:05:17 UTC), anchor),
        Some(datetime!(2026-03-10 10:10:17 UTC))
    );
    // Long after the anchor: still on the anchor's grid.
    assert_eq!(
        rate.next_after(datetime!(2026-03-11 00:00 UTC), anchor),
        Some(datetime!(2026-03-11 00:00:17 UTC))
    );
    // Before the anchor: the first tick.
    assert_eq!(
        rate.next_after(datetime!(2026-01-01 00:00 UTC), anchor),
        Some(datetime!(2026-03-10 10:05:17 UTC))
    );
    // Offsets are only notation; the result is the same instant, in UTC.
    let next = rate
        .next_after(
            datetime!(2026-03-10 12:01 +02:00),
            datetime!(2026-03-10 12:00:17 +02:00),
        )
        .unwrap();
    assert_eq!(next, datetime!(2026-03-10 10:05:17 UTC));
    assert_eq!(next.offset(), time::UtcOffset::UTC);
}

#[test]
fn rate_in_seconds_and_days() {
    let anchor = datetime!(2026-03-10 10:00 UTC);
    assert_eq!(
        parse("rate(10 seconds)").next_after(datetime!(2026-03-10 10:00:25 UTC), anchor),
        Some(datetime!(2026-03-10 10:00:30 UTC))
    );
    assert_eq!(
        parse("rate(1 day)").next_after(datetime!(2026-03-12 09:00 UTC), anchor),
        Some(datetime!(2026-03-12 10:00 UTC))
    );
}

#[test]
fn rate_fires_between_with_limit() {
    let rate = parse("rate(1 hour)");
    let anchor = datetime!(2026-03-10 00:00 UTC);
    let to = datetime!(2026-03-10 10:00 UTC);
    let all = rate.fires_between(anchor, to, anchor, 100);
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], datetime!(2026-03-10 01:00 UTC));
    assert_eq!(all[9], to, "the end of the window is included");
    assert_eq!(
        rate.fires_between(anchor, to, anchor, 3),
        vec![
            datetime!(2026-03-10 01:00 UTC),
            datetime!(2026-03-10 02:00 UTC),
            datetime!(2026-03-10 03:00 UTC),
        ]
    );
    // The start of the window is excluded.
    let from = datetime!(2026-03-10 08:00 UTC);
    assert_eq!(
        rate.fires_between(from, to, anchor, 100),
        vec![datetime!(2026-03-10 09:00 UTC), to]
    );
    assert!(rate.fires_between(anchor, to, anchor, 0).is_empty());
    assert!(rate.fires_between(to, anchor, anchor, 10).is_empty());
}

#[test]
fn zero_rate_built_by_hand_never_fires() {
    let rate = Schedule::Rate {
        every: Duration::ZERO,
    };
    let t = datetime!(2026-03-10 00:00 UTC);
    assert_eq!(rate.next_after(t, t), None);
    assert!(rate
        .fires_between(t, t + time::Duration::DAY, t, 10)
        .is_empty());
}

// ---- cron: basics ------------------------------------------------------------------------

#[test]
fn daily_at_noon() {
    let expr = "cron(0 12 * * ? *)";
    assert_eq!(
        next(expr, datetime!(2026-03-10 11:59:30 UTC)),
        Some(datetime!(2026-03-10 12:00 UTC))
    );
    // Strictly after: the fire time itself moves to the next day.
    assert_eq!(
        next(expr, datetime!(2026-03-10 12:00 UTC)),
        Some(datetime!(2026-03-11 12:00 UTC))
    );
    assert_eq!(
        next(expr, datetime!(2026-12-31 12:00:00.5 UTC)),
        Some(datetime!(2027-01-01 12:00 UTC))
    );
    // The same with `*` in day-of-week and `?` in day-of-month.
    assert_eq!(
        next("cron(0 12 ? * * *)", datetime!(2026-03-10 12:00 UTC)),
        Some(datetime!(2026-03-11 12:00 UTC))
    );
}

#[test]
fn cron_results_are_utc_whatever_the_input_offset() {
    let got = next("cron(0 12 * * ? *)", datetime!(2026-03-10 13:30 +02:00)).unwrap();
    assert_eq!(got, datetime!(2026-03-10 12:00 UTC));
    assert_eq!(got.offset(), time::UtcOffset::UTC);
}

#[test]
fn minute_steps_and_ranges() {
    let t = datetime!(2026-03-10 10:07 UTC);
    assert_eq!(
        upcoming("cron(0/15 * * * ? *)", t, 3),
        [
            datetime!(2026-03-10 10:15 UTC),
            datetime!(2026-03-10 10:30 UTC),
            datetime!(2026-03-10 10:45 UTC)
        ]
    );
    assert_eq!(
        upcoming("cron(*/5 * * * ? *)", t, 2),
        [
            datetime!(2026-03-10 10:10 UTC),
            datetime!(2026-03-10 10:15 UTC)
        ]
    );
    // The AWS docs' example: 1/10 is minute 1, 11, 21, ...
    assert_eq!(
        upcoming("cron(1/10 * * * ? *)", t, 2),
        [
            datetime!(2026-03-10 10:11 UTC),
            datetime!(2026-03-10 10:21 UTC)
        ]
    );
    assert_eq!(
        upcoming(
            "cron(10-50/10 * * * ? *)",
            datetime!(2026-03-10 10:35 UTC),
            4
        ),
        [
            datetime!(2026-03-10 10:40 UTC),
            datetime!(2026-03-10 10:50 UTC),
            datetime!(2026-03-10 11:10 UTC),
            datetime!(2026-03-10 11:20 UTC),
        ]
    );
    assert_eq!(
        upcoming(
            "cron(5,25,45 * * * ? *)",
            datetime!(2026-03-10 10:45 UTC),
            2
        ),
        [
            datetime!(2026-03-10 11:05 UTC),
            datetime!(2026-03-10 11:25 UTC)
        ]
    );
    assert_eq!(
        upcoming("cron(* * * * ? *)", datetime!(2026-03-10 23:59:59 UTC), 2),
        [
            datetime!(2026-03-11 00:00 UTC),
            datetime!(2026-03-11 00:01 UTC)
        ]
    );
}

#[test]
fn hour_ranges_steps_and_wrap() {
    let t = datetime!(2026-03-10 18:30 UTC);
    assert_eq!(
        upcoming("cron(0 9-17 * * ? *)", t, 2),
        [
            datetime!(2026-03-11 09:00 UTC),
            datetime!(2026-03-11 10:00 UTC)
        ]
    );
    assert_eq!(
        upcoming("cron(30 */6 * * ? *)", t, 3),
        [
            datetime!(2026-03-11 00:30 UTC),
            datetime!(2026-03-11 06:30 UTC),
            datetime!(2026-03-11 12:30 UTC)
        ]
    );
    // A backwards range wraps past midnight: 22, 23, 0, 1, 2.
    assert_eq!(
        upcoming("cron(0 22-2 * * ? *)", t, 6),
        [
            datetime!(2026-03-10 22:00 UTC),
            datetime!(2026-03-10 23:00 UTC),
            datetime!(2026-03-11 00:00 UTC),
            datetime!(2026-03-11 01:00 UTC),
            datetime!(2026-03-11 02:00 UTC),
            datetime!(2026-03-11 22:00 UTC),
        ]
    );
}

#[test]
fn day_of_month_lists() {
    assert_eq!(
        upcoming("cron(0 0 1,15 * ? *)", datetime!(2026-03-10 00:00 UTC), 3),
        [
            datetime!(2026-03-15 00:00 UTC),
            datetime!(2026-04-01 00:00 UTC),
            datetime!(2026-04-15 00:00 UTC)
        ]
    );
    // Every 10 days from the 5th: 5, 15, 25.
    assert_eq!(
        upcoming("cron(0 0 5/10 * ? *)", datetime!(2026-03-20 00:00 UTC), 2),
        [
            datetime!(2026-03-25 00:00 UTC),
            datetime!(2026-04-05 00:00 UTC)
        ]
    );
    // The 31st only exists in some months.
    assert_eq!(
        upcoming("cron(0 0 31 * ? *)", datetime!(2026-03-31 00:00 UTC), 2),
        [
            datetime!(2026-05-31 00:00 UTC),
            datetime!(2026-07-31 00:00 UTC)
        ]
    );
}

#[test]
fn months_by_number_and_name() {
    let t = datetime!(2026-03-10 00:00 UTC);
    let quarterly = [
        datetime!(2026-04-01 00:00 UTC),
        datetime!(2026-07-01 00:00 UTC),
        datetime!(2026-10-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    ];
    assert_eq!(upcoming("cron(0 0 1 1/3 ? *)", t, 4), quarterly);
    assert_eq!(upcoming("cron(0 0 1 JAN,APR,JUL,OCT ? *)", t, 4), quarterly);
    assert_eq!(upcoming("cron(0 0 1 jan,Apr,jul,OCT ? *)", t, 4), quarterly);
    // NOV-FEB wraps over the new year.
    assert_eq!(
        upcoming("cron(0 0 1 NOV-FEB ? *)", t, 4),
        [
            datetime!(2026-11-01 00:00 UTC),
            datetime!(2026-12-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
            datetime!(2027-02-01 00:00 UTC)
        ]
    );
}

#[test]
fn february_29th_waits_for_a_leap_year() {
    assert_eq!(
        next("cron(0 0 29 2 ? *)", datetime!(2026-01-01 00:00 UTC)),
        Some(datetime!(2028-02-29 00:00 UTC))
    );
    assert_eq!(
        next("cron(0 0 29 FEB ? *)", datetime!(2028-02-29 00:00 UTC)),
        Some(datetime!(2032-02-29 00:00 UTC))
    );
    // 2100 is not a leap year.
    assert_eq!(
        next("cron(0 0 29 2 ? *)", datetime!(2096-03-01 00:00 UTC)),
        Some(datetime!(2104-02-29 00:00 UTC))
    );
}

#[test]
fn years() {
    let expr = "cron(0 0 1 1 ? 2030)";
    assert_eq!(
        next(expr, datetime!(2026-03-10 00:00 UTC)),
        Some(datetime!(2030-01-01 00:00 UTC))
    );
    assert_eq!(next(expr, datetime!(2030-01-01 00:00 UTC)), None);
    assert_eq!(
        upcoming(
            "cron(0 0 1 1 ? 2027-2028,2035)",
            datetime!(2026-03-10 00:00 UTC),
            10
        ),
        [
            datetime!(2027-01-01 00:00 UTC),
            datetime!(2028-01-01 00:00 UTC),
            datetime!(2035-01-01 00:00 UTC)
        ]
    );
    assert_eq!(
        upcoming(
            "cron(0 0 1 1 ? 2030/50)",
            datetime!(2026-03-10 00:00 UTC),
            10
        ),
        [
            datetime!(2030-01-01 00:00 UTC),
            datetime!(2080-01-01 00:00 UTC),
            datetime!(2130-01-01 00:00 UTC),
            datetime!(2180-01-01 00:00 UTC)
        ]
    );
}

#[test]
fn range_of_years_is_bounded() {
    // Nothing fires after 2199.
    assert_eq!(
        next("cron(0 12 * * ? *)", datetime!(2199-12-31 12:00 UTC)),
        None
    );
    assert_eq!(
        next("cron(59 23 31 12 ? *)", datetime!(2199-12-31 23:58 UTC)),
        Some(datetime!(2199-12-31 23:59 UTC))
    );
    assert_eq!(
        next("cron(0 12 * * ? *)", datetime!(3000-01-01 00:00 UTC)),
        None
    );
    // Before 1970, the first fire is in 1970.
    assert_eq!(
        next("cron(0 12 * * ? *)", datetime!(1900-06-15 00:00 UTC)),
        Some(datetime!(1970-01-01 12:00 UTC))
    );
}

// ---- cron: day-of-week -------------------------------------------------------------------

#[test]
fn day_of_week_numbers_start_at_sunday() {
    // 2026-03-01 is a Sunday; AWS numbers it 1.
    let t = datetime!(2026-02-26 00:00 UTC);
    assert_eq!(
        next("cron(0 0 ? * 1 *)", t),
        Some(datetime!(2026-03-01 00:00 UTC))
    );
    assert_eq!(
        next("cron(0 0 ? * SUN *)", t),
        Some(datetime!(2026-03-01 00:00 UTC))
    );
    assert_eq!(
        next("cron(0 0 ? * 7 *)", t),
        Some(datetime!(2026-02-28 00:00 UTC))
    );
    assert_eq!(
        next("cron(0 0 ? * 2 *)", t),
        Some(datetime!(2026-03-02 00:00 UTC))
    );
    // `L` alone is the last day of the week: Saturday.
    assert_eq!(
        next("cron(0 0 ? * L *)", t),
        Some(datetime!(2026-02-28 00:00 UTC))
    );
}

#[test]
fn weekdays_only() {
    // Friday 2026-11-27, evening: the next weekday morning is Monday the 30th.
    let friday = datetime!(2026-11-27 18:00 UTC);
    assert_eq!(
        next("cron(0 9 ? * MON-FRI *)", friday),
        Some(datetime!(2026-11-30 09:00 UTC))
    );
    assert_eq!(
        next("cron(0 9 ? * 2-6 *)", friday),
        Some(datetime!(2026-11-30 09:00 UTC))
    );
    assert_eq!(
        next("cron(0 9 ? * mon-fri *)", friday),
        Some(datetime!(2026-11-30 09:00 UTC))
    );
    // Weekends, by a wrapping range and by a list.
    for expr in [
        "cron(0 9 ? * SAT-SUN *)",
        "cron(0 9 ? * SAT,SUN *)",
        "cron(0 9 ? * 7,1 *)",
    ] {
        assert_eq!(
            upcoming(expr, friday, 2),
            [
                datetime!(2026-11-28 09:00 UTC),
                datetime!(2026-11-29 09:00 UTC)
            ],
            "{expr}"
        );
    }
    // FRI-MON: Friday, Saturday, Sunday, Monday.
    assert_eq!(
        upcoming(
            "cron(0 9 ? * FRI-MON *)",
            datetime!(2026-11-24 00:00 UTC),
            5
        ),
        [
            datetime!(2026-11-27 09:00 UTC),
            datetime!(2026-11-28 09:00 UTC),
            datetime!(2026-11-29 09:00 UTC),
            datetime!(2026-11-30 09:00 UTC),
            datetime!(2026-12-04 09:00 UTC),
        ]
    );
    // Every other day of the week from Sunday: SUN, TUE, THU, SAT.
    assert_eq!(
        upcoming("cron(0 0 ? * 1/2 *)", datetime!(2026-11-28 12:00 UTC), 4),
        [
            datetime!(2026-11-29 00:00 UTC),
            datetime!(2026-12-01 00:00 UTC),
            datetime!(2026-12-03 00:00 UTC),
            datetime!(2026-12-05 00:00 UTC)
        ]
    );
}

#[test]
fn last_weekday_of_the_month() {
    // The last Friday of November 2026 is the 27th.
    assert_eq!(
        next("cron(0 10 ? * 6L *)", datetime!(2026-11-01 00:00 UTC)),
        Some(datetime!(2026-11-27 10:00 UTC))
    );
    assert_eq!(
        next("cron(0 10 ? * FRIL *)", datetime!(2026-11-01 00:00 UTC)),
        Some(datetime!(2026-11-27 10:00 UTC))
    );
    // The last Thursday (5L), month after month; December 2026 ends on Thursday the 31st.
    assert_eq!(
        upcoming("cron(0 10 ? * 5L *)", datetime!(2026-11-01 00:00 UTC), 3),
        [
            datetime!(2026-11-26 10:00 UTC),
            datetime!(2026-12-31 10:00 UTC),
            datetime!(2027-01-28 10:00 UTC)
        ]
    );
}

#[test]
fn nth_weekday_of_the_month() {
    // The second Tuesday of March 2026 is the 10th (the 1st is a Sunday).
    assert_eq!(
        next("cron(0 12 ? * 3#2 *)", datetime!(2026-03-01 00:00 UTC)),
        Some(datetime!(2026-03-10 12:00 UTC))
    );
    assert_eq!(
        next("cron(0 12 ? * TUE#2 *)", datetime!(2026-03-10 12:00 UTC)),
        Some(datetime!(2026-04-14 12:00 UTC))
    );
    // US Thanksgiving 2026, the fourth Thursday of November, is the 26th.
    assert_eq!(
        next("cron(0 12 ? 11 5#4 *)", datetime!(2026-01-01 00:00 UTC)),
        Some(datetime!(2026-11-26 12:00 UTC))
    );
    // A fifth Friday: May 2026 has one (the 29th), June none, July the 31st.
    assert_eq!(
        upcoming("cron(0 12 ? * 6#5 *)", datetime!(2026-05-01 00:00 UTC), 2),
        [
            datetime!(2026-05-29 12:00 UTC),
            datetime!(2026-07-31 12:00 UTC)
        ]
    );
    // The first Monday, when the month starts on a Monday.
    assert_eq!(
        next("cron(0 0 ? * 2#1 *)", datetime!(2026-05-31 00:00 UTC)),
        Some(datetime!(2026-06-01 00:00 UTC))
    );
}

// ---- cron: L and W in day-of-month -------------------------------------------------------

#[test]
fn last_day_of_the_month() {
    assert_eq!(
        upcoming("cron(0 0 L * ? *)", datetime!(2026-01-31 00:00 UTC), 3),
        [
            datetime!(2026-02-28 00:00 UTC),
            datetime!(2026-03-31 00:00 UTC),
            datetime!(2026-04-30 00:00 UTC)
        ]
    );
    assert_eq!(
        next("cron(0 0 L 2 ? *)", datetime!(2027-03-01 00:00 UTC)),
        Some(datetime!(2028-02-29 00:00 UTC))
    );
}

#[test]
fn last_weekday_of_the_month_lw() {
    // Jan 2026 ends on a Saturday (→ Fri 30th), Feb on a Saturday (→ Fri 27th),
    // Mar on a Tuesday (the 31st itself); May on a Sunday (→ Fri 29th).
    assert_eq!(
        upcoming("cron(0 18 LW * ? *)", datetime!(2026-01-01 00:00 UTC), 3),
        [
            datetime!(2026-01-30 18:00 UTC),
            datetime!(2026-02-27 18:00 UTC),
            datetime!(2026-03-31 18:00 UTC)
        ]
    );
    assert_eq!(
        next("cron(0 18 LW 5 ? *)", datetime!(2026-01-01 00:00 UTC)),
        Some(datetime!(2026-05-29 18:00 UTC))
    );
}

#[test]
fn nearest_weekday() {
    let t = datetime!(2026-01-01 00:00 UTC);
    // The 15th of August 2026 is a Saturday: the Friday before.
    assert_eq!(
        next("cron(0 9 15W 8 ? *)", t),
        Some(datetime!(2026-08-14 09:00 UTC))
    );
    // The 15th of February 2026 is a Sunday: the Monday after.
    assert_eq!(
        next("cron(0 9 15W 2 ? *)", t),
        Some(datetime!(2026-02-16 09:00 UTC))
    );
    // The 15th of April 2026 is a Wednesday: that day.
    assert_eq!(
        next("cron(0 9 15W 4 ? *)", t),
        Some(datetime!(2026-04-15 09:00 UTC))
    );
    // Saturday the 1st (August 2026): not back into July but forward to Monday the 3rd.
    assert_eq!(
        next("cron(0 9 1W 8 ? *)", t),
        Some(datetime!(2026-08-03 09:00 UTC))
    );
    // Sunday the 1st (March 2026): Monday the 2nd.
    assert_eq!(
        next("cron(0 9 1W 3 ? *)", t),
        Some(datetime!(2026-03-02 09:00 UTC))
    );
    // Sunday the 31st (May 2026): not into June but back to Friday the 29th.
    assert_eq!(
        next("cron(0 9 31W 5 ? *)", t),
        Some(datetime!(2026-05-29 09:00 UTC))
    );
    // 31W skips months without a 31st: after March comes May.
    assert_eq!(
        next("cron(0 9 31W * ? *)", datetime!(2026-04-01 00:00 UTC)),
        Some(datetime!(2026-05-29 09:00 UTC))
    );
    // Every month in turn.
    assert_eq!(
        upcoming("cron(0 9 15w * ? *)", datetime!(2026-07-01 00:00 UTC), 3),
        [
            datetime!(2026-07-15 09:00 UTC),
            datetime!(2026-08-14 09:00 UTC),
            datetime!(2026-09-15 09:00 UTC)
        ]
    );
}

// ---- cron: never firing ------------------------------------------------------------------

#[test]
fn impossible_dates_return_none_quickly() {
    let started = std::time::Instant::now();
    for expr in [
        "cron(0 0 30 2 ? *)",
        "cron(0 0 31 4,6,9,11 ? *)",
        "cron(0 0 30W 2 ? *)",
        "cron(0 0 ? 2 1#5 2026)", // February 2026 has four Sundays
    ] {
        // From 1970 the search has to cover every year up to 2199.
        assert_eq!(next(expr, datetime!(1970-01-01 00:00 UTC)), None, "{expr}");
        assert!(parse(expr)
            .fires_between(
                datetime!(1970-01-01 00:00 UTC),
                datetime!(2199-12-31 23:59 UTC),
                datetime!(1970-01-01 00:00 UTC),
                10
            )
            .is_empty());
    }
    // Generous, as the machine is shared; a minute-by-minute scan would take far longer.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn cron_fires_between_with_limit() {
    let cron = parse("cron(0/15 * * * ? *)");
    let from = datetime!(2026-03-10 10:00 UTC);
    let to = datetime!(2026-03-10 11:00 UTC);
    let all = cron.fires_between(from, to, from, 100);
    assert_eq!(
        all,
        [
            datetime!(2026-03-10 10:15 UTC),
            datetime!(2026-03-10 10:30 UTC),
            datetime!(2026-03-10 10:45 UTC),
            datetime!(2026-03-10 11:00 UTC),
        ]
    );
    assert_eq!(cron.fires_between(from, to, from, 2), all[..2]);
    assert!(cron.fires_between(from, to, from, 0).is_empty());
    // A day of downtime with a minutely schedule, capped.
    let minutely = parse("cron(* * * * ? *)");
    let missed = minutely.fires_between(from, from + time::Duration::DAY, from, 50);
    assert_eq!(missed.len(), 50);
    assert_eq!(missed[49], datetime!(2026-03-10 10:50 UTC));
}

// ---- parsing, display, serde -------------------------------------------------------------

#[test]
fn display_round_trips() {
    for expr in [
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(1 day)",
        "rate(30 seconds)",
        "cron(0 12 * * ? *)",
        "cron(0/15 9-17 ? * MON-FRI 2026-2030)",
        "cron(0 10 ? * 6L *)",
        "cron(0 10 LW * ? *)",
    ] {
        assert_eq!(parse(expr).to_string(), expr);
        assert_eq!(parse(&parse(expr).to_string()), parse(expr));
    }
    // Extra spaces are normalized; rates print in their largest whole unit.
    assert_eq!(
        parse("cron( 0  12 * * ?  * )").to_string(),
        "cron(0 12 * * ? *)"
    );
    assert_eq!(parse("rate(120 minutes)").to_string(), "rate(2 hours)");
    assert_eq!(parse("rate(60 seconds)").to_string(), "rate(1 minute)");
}

#[test]
fn serde_as_a_string() {
    let schedule = parse("cron(0 12 * * ? *)");
    let json = serde_json::to_string(&schedule).unwrap();
    assert_eq!(json, "\"cron(0 12 * * ? *)\"");
    assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
    let err = serde_json::from_str::<Schedule>("\"rate(1 minutes)\"").unwrap_err();
    assert!(err.to_string().contains("rate(1 minute)"), "{err}");
}

#[test]
fn cron_parse_takes_the_fields() {
    let cron = Cron::parse("0 12 * * ? *").unwrap();
    assert_eq!(cron.fields(), "0 12 * * ? *");
    assert_eq!(Schedule::Cron(cron), parse("cron(0 12 * * ? *)"));
}

// ---- cron: errors ------------------------------------------------------------------------

#[test]
fn both_day_fields_star_message() {
    assert_eq!(
        error("cron(0 12 * * * *)"),
        "cron(0 12 * * * *): day-of-month and day-of-week cannot both be `*`; use `?` in one of them, e.g. cron(0 12 * * ? *)"
    );
}

#[test]
fn day_field_conflicts() {
    assert_error(
        "cron(0 12 ? * ? *)",
        "cannot both be `?`; set one of them, e.g. cron(0 12 * * ? *)",
    );
    assert_error(
        "cron(0 12 15 * MON *)",
        "cannot both be set; use `?` in one of them, e.g. cron(0 12 15 * ? *)",
    );
    assert_error("cron(0 12 * * MON *)", "e.g. cron(0 12 ? * MON *)");
    assert_error("cron(0 12 15 * * *)", "e.g. cron(0 12 15 * ? *)");
}

#[test]
fn field_count() {
    assert_error(
        "cron(0 12 * * ?)",
        "expected 6 fields (minutes hours day-of-month month day-of-week year), found 5",
    );
    // Unix habit: five fields get the same expression with a year as the example.
    assert!(error("cron(15 10 ? * MON-FRI)").ends_with("e.g. cron(15 10 ? * MON-FRI *)"));
    assert!(error("cron(0 12 * * *)").ends_with("e.g. cron(0 12 * * ? *)"));
    assert_error("cron(0 0 12 * * ? *)", "found 7");
    assert_error("cron()", "found 0");
    assert_error("cron(0 12 * * ? *", "missing the closing `)`");
}

#[test]
fn question_mark_only_in_day_fields() {
    assert_error(
        "cron(? 12 * * ? *)",
        "`?` is only allowed in day-of-month or day-of-week, not in minutes",
    );
    assert_error("cron(0 ? * * ? *)", "not in hours");
    assert_error("cron(0 12 * ? ? *)", "not in month");
    assert_error("cron(0 12 * * ? ?)", "not in year");
    assert_error(
        "cron(0 12 1,? * ? *)",
        "`?` must stand alone in day-of-month",
    );
    assert_error(
        "cron(0 12 ? * MON,? *)",
        "`?` must stand alone in day-of-week",
    );
}

#[test]
fn out_of_range_values() {
    assert_error(
        "cron(60 12 * * ? *)",
        "minutes value 60 is out of range 0-59",
    );
    assert_error("cron(0 24 * * ? *)", "hours value 24 is out of range 0-23");
    assert_error(
        "cron(0 12 0 * ? *)",
        "day-of-month value 0 is out of range 1-31",
    );
    assert_error(
        "cron(0 12 32 * ? *)",
        "day-of-month value 32 is out of range 1-31",
    );
    assert_error(
        "cron(0 12 1 13 ? *)",
        "month value 13 is out of range 1-12 or JAN-DEC",
    );
    assert_error("cron(0 12 1 0 ? *)", "month value 0 is out of range");
    assert_error(
        "cron(0 12 ? * 0 *)",
        "day-of-week value 0 is out of range 1-7 or SUN-SAT (1 is Sunday)",
    );
    assert_error("cron(0 12 ? * 8 *)", "day-of-week value 8 is out of range");
    assert_error(
        "cron(0 12 * * ? 1969)",
        "year value 1969 is out of range 1970-2199",
    );
    assert_error("cron(0 12 * * ? 2200)", "year value 2200 is out of range");
    assert_error(
        "cron(0 12 * * ? 2026-2200)",
        "year value 2200 is out of range",
    );
    assert_error(
        "cron(0 12 32W * ? *)",
        "day-of-month value 32 is out of range",
    );
    assert_error("cron(0 12 ? * 8L *)", "day-of-week value 8 is out of range");
    assert_error(
        "cron(0 12 ? * 9#2 *)",
        "day-of-week value 9 is out of range",
    );
    assert_error("cron(99999999999 12 * * ? *)", "out of range");
}

#[test]
fn malformed_values_steps_and_lists() {
    assert_error(
        "cron(*/0 * * * ? *)",
        "the step in minutes `*/0` must be a whole number from 1 to 60",
    );
    assert_error("cron(0/61 * * * ? *)", "from 1 to 60");
    assert_error("cron(0/x * * * ? *)", "the step in minutes");
    assert_error("cron(0/5/2 * * * ? *)", "the step in minutes");
    assert_error("cron(1,,2 * * * ? *)", "minutes `1,,2` has an empty item");
    assert_error("cron(1, 12 * * ? * *)", "found 7");
    assert_error("cron(5- * * * ? *)", "minutes `5-` is missing a value");
    assert_error("cron(-5 * * * ? *)", "minutes `-5` is missing a value");
    assert_error(
        "cron(1-2-3 * * * ? *)",
        "`2-3` is not a valid minutes value",
    );
    assert_error(
        "cron(0 12 * FOO ? *)",
        "`FOO` is not a valid month value; use 1-12 or JAN-DEC",
    );
    assert_error(
        "cron(0 12 ? * JAN *)",
        "`JAN` is not a valid day-of-week value",
    );
    assert_error("cron(0 12 1 MON ? *)", "`MON` is not a valid month value");
    assert_error(
        "cron(0 12 * * ? 2030-2020)",
        "year range `2030-2020` runs backwards",
    );
    assert_error(
        "cron(0 L * * ? *)",
        "`L`, `W` and `#` are only allowed in day-of-month or day-of-week",
    );
    assert_error(
        "cron(0 12 * 1W ? *)",
        "only allowed in day-of-month or day-of-week",
    );
}

#[test]
fn special_characters_in_the_wrong_place() {
    // `#` and `nL` stand alone; AWS rejects "3#1,6#3".
    assert_error("cron(0 12 ? * 3#1,6#3 *)", "`#` must stand alone");
    assert_error("cron(0 12 ? * 2-3#1 *)", "`#` must stand alone");
    assert_error(
        "cron(0 12 ? * 3#6 *)",
        "the number after `#` is the week of the month, 1-5",
    );
    assert_error("cron(0 12 ? * 3#0 *)", "1-5");
    assert_error("cron(0 12 ? * 3# *)", "1-5");
    assert_error("cron(0 12 ? * #2 *)", "day-of-week `#2` is missing a value");
    assert_error("cron(0 12 ? * 2,6L *)", "`L` follows a single day");
    assert_error("cron(0 12 ? * L,2 *)", "`L` stands alone (Saturday)");
    assert_error("cron(0 12 ? * 2W *)", "`W` is only allowed in day-of-month");
    assert_error("cron(0 12 3#2 * ? *)", "`#` is only allowed in day-of-week");
    assert_error("cron(0 12 L,15 * ? *)", "`L` must stand alone");
    assert_error("cron(0 12 L-3 * ? *)", "`L` must stand alone");
    assert_error("cron(0 12 1-15W * ? *)", "`W` follows a single day");
    assert_error("cron(0 12 W * ? *)", "day-of-month `W` is missing a value");
    assert_error("cron(0 12 W15 * ? *)", "`W` goes right after a single day");
}

#[test]
fn error_variants() {
    assert!(matches!(
        "cron(0 12 * * * *)".parse::<Schedule>(),
        Err(ScheduleError::InvalidCron { .. })
    ));
}
