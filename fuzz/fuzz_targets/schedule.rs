//! `rate(...)` / `cron(...)` parsing (tusk_schedule) and next-fire computation on whatever
//! parses. Invariants: no panic or hang; next_after is strictly after its argument and
//! monotonic; a cron fires on a minute boundary no later than MAX_YEAR; Display re-parses to
//! the same schedule; fires_between returns sorted times within its window and limit.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use tusk_schedule::{Schedule, MAX_YEAR};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Half the seconds since the epoch (1970..2106).
    after: u32,
    anchor: u32,
    span_minutes: u16,
    /// Last, so it takes the rest of the input: a seed is 10 bytes then the expression.
    expr: &'a str,
}

fn time_of(secs: u32) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::from(secs) * 2).expect("in range")
}

fuzz_target!(|input: Input<'_>| {
    let Ok(schedule) = input.expr.parse::<Schedule>() else {
        return;
    };
    let shown = schedule.to_string();
    let again: Schedule = shown
        .parse()
        .unwrap_or_else(|e| panic!("{shown:?} (from {:?}) does not re-parse: {e}", input.expr));
    assert_eq!(again, schedule, "Display round trip of {:?}", input.expr);
    let _ = schedule.is_aws_compatible();

    let after = time_of(input.after);
    let anchor = time_of(input.anchor);
    let Some(next) = schedule.next_after(after, anchor) else {
        return;
    };
    assert!(next > after, "{shown}: next {next} not after {after}");
    if let Schedule::Cron(_) = schedule {
        assert_eq!(
            next.second(),
            0,
            "{shown}: cron fired off the minute: {next}"
        );
        assert!(
            next.year() <= MAX_YEAR,
            "{shown}: fired after MAX_YEAR: {next}"
        );
    }
    if let Some(second) = schedule.next_after(next, anchor) {
        assert!(
            second > next,
            "{shown}: not monotonic: {next} then {second}"
        );
    }
    let to = after + time::Duration::minutes(i64::from(input.span_minutes));
    let fires = schedule.fires_between(after, to, anchor, 50);
    assert!(fires.len() <= 50);
    let mut prev = after;
    for f in fires {
        assert!(
            f > prev && f <= to,
            "{shown}: fire {f} outside ({prev}, {to}]"
        );
        prev = f;
    }
});
