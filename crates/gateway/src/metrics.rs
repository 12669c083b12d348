//! `GET /_tusk/metrics`: Prometheus text exposition (format 0.0.4), rendered by hand because the
//! format is a few lines of text and the counters already live in the pools.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use tusk_pool::{Dispatcher, DURATION_BUCKETS_MS};

pub fn render(dispatcher: &Dispatcher, dropped_log_lines: u64) -> String {
    let mut out = String::new();
    let metrics = dispatcher.metrics();
    let counters = [
        ("tusk_invocations_total", "Invocations, by function."),
        (
            "tusk_errors_total",
            "Invocations that ended in a function error, timeout or crash.",
        ),
        (
            "tusk_throttles_total",
            "Requests rejected with 429 because the function was at its concurrency limit.",
        ),
        (
            "tusk_timeouts_total",
            "Invocations that ran past the function's timeout.",
        ),
        ("tusk_cold_starts_total", "Instances started."),
    ];
    for (name, help) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (function, m) in &metrics {
            let v = match name {
                "tusk_invocations_total" => &m.invocations,
                "tusk_errors_total" => &m.errors,
                "tusk_throttles_total" => &m.throttles,
                "tusk_timeouts_total" => &m.timeouts,
                _ => &m.cold_starts,
            };
            let _ = writeln!(
                out,
                "{name}{{function=\"{function}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
    let name = "tusk_invocation_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Invocation duration.\n# TYPE {name} histogram"
    );
    for (function, m) in &metrics {
        let mut cumulative = 0;
        for (i, bound) in DURATION_BUCKETS_MS.iter().enumerate() {
            cumulative += m.duration_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{function=\"{function}\",le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        cumulative += m.duration_buckets[DURATION_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{function=\"{function}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = m.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{function=\"{function}\"}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{function=\"{function}\"}} {}",
            m.duration_count.load(Ordering::Relaxed)
        );
    }
    let name = "tusk_instances";
    let _ = writeln!(
        out,
        "# HELP {name} Live instances, by function and state.\n# TYPE {name} gauge"
    );
    let mut pools = dispatcher.all();
    pools.sort_by(|a, b| a.name().cmp(b.name()));
    for pool in pools {
        let (idle, busy) = pool.instance_counts();
        let _ = writeln!(
            out,
            "{name}{{function=\"{}\",state=\"idle\"}} {idle}",
            pool.name()
        );
        let _ = writeln!(
            out,
            "{name}{{function=\"{}\",state=\"busy\"}} {busy}",
            pool.name()
        );
    }
    let name = "tusk_log_lines_dropped_total";
    let _ = writeln!(out, "# HELP {name} Log lines dropped because functions printed faster than they could be stored.\n# TYPE {name} counter\n{name} {dropped_log_lines}");
    out
}

/// Queue depths, oldest ages and the async/schedule counters.
pub fn render_events(
    stats: &[tusk_events::queue_db::QueueStats],
    c: &tusk_events::EventCounters,
) -> String {
    let mut out = String::new();
    let name = "tusk_queue_messages";
    let _ = writeln!(out, "# HELP {name} Messages per queue and state (async:<function> queues hold async invocations).\n# TYPE {name} gauge");
    for s in stats {
        for (state, v) in [
            ("visible", s.visible),
            ("in_flight", s.in_flight),
            ("delayed", s.delayed),
            ("retrying", s.retrying),
        ] {
            let _ = writeln!(out, "{name}{{queue=\"{}\",state=\"{state}\"}} {v}", s.name);
        }
    }
    let name = "tusk_queue_oldest_message_age_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Age of the oldest message per queue.\n# TYPE {name} gauge"
    );
    for s in stats {
        let _ = writeln!(
            out,
            "{name}{{queue=\"{}\"}} {}",
            s.name,
            s.oldest_age_ms as f64 / 1000.0
        );
    }
    let v = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let name = "tusk_async_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Async invocation events by outcome.\n# TYPE {name} counter"
    );
    for (outcome, value) in [
        ("accepted", v(&c.async_accepted)),
        ("succeeded", v(&c.async_succeeded)),
        ("retried", v(&c.async_retried)),
        ("throttled", v(&c.async_throttled)),
        ("dead_lettered", v(&c.dead_lettered)),
        ("too_old", v(&c.dropped_too_old)),
    ] {
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {value}");
    }
    let name = "tusk_schedule_ticks_total";
    let _ = writeln!(out, "# HELP {name} Schedule ticks fired, and missed while the node was down.\n# TYPE {name} counter");
    let _ = writeln!(out, "{name}{{state=\"fired\"}} {}", v(&c.schedule_fired));
    let _ = writeln!(out, "{name}{{state=\"missed\"}} {}", v(&c.schedule_missed));
    out
}
