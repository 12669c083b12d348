//! One task per `schedule` event: wait for the next tick, then record the tick and its async
//! invocation in one commit, so a restart never fires a tick twice. Ticks missed while the
//! node was down are counted and logged, not replayed in a burst.

use crate::queue_db::now_ms;
use crate::{
    async_queue, new_message, records, AsyncInvocation, AsyncTransport, EventEngine, ScheduleSpec,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const MISSED_REPORT_LIMIT: usize = 100_000;

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) async fn run(events: Arc<EventEngine>, function: String, spec: ScheduleSpec) {
    if let Some(transport) = events.transport().cloned() {
        return run_clustered(events, transport, function, spec).await;
    }
    let state = match events.queues.schedule_state(&spec.key, now_ms()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(function, schedule = %spec.schedule, error = %e, "cannot load schedule state");
            return;
        }
    };
    let anchor = at(state.anchor_ms);
    let mut last = state.last_fire_ms;
    let now = now_ms();
    let missed = spec
        .schedule
        .fires_between(at(last), at(now), anchor, MISSED_REPORT_LIMIT);
    if let Some(latest) = missed.last() {
        let n = missed.len() as u64;
        tracing::warn!(function, schedule = %spec.schedule, missed = n, "schedule ticks were missed while the node was down; they are not replayed");
        events
            .counters
            .schedule_missed
            .fetch_add(n, Ordering::Relaxed);
        let fire_ms = ms(*latest);
        let _ = events.queues.fire(&spec.key, fire_ms, n, vec![]).await;
        last = fire_ms;
    }
    loop {
        let Some(next) = spec.schedule.next_after(at(last.max(now_ms() - 1)), anchor) else {
            tracing::info!(function, schedule = %spec.schedule, "schedule has no future ticks");
            return;
        };
        let next_ms = ms(next);
        let wait = (next_ms - now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let body = tick_body(&events, &spec, next_ms);
        let message = new_message(
            body,
            serde_json::json!({"attempt": 0, "schedule": spec.key}),
        );
        let send = vec![(async_queue(&function), message)];
        match events.queues.fire(&spec.key, next_ms, 0, send).await {
            Ok(true) => {
                events
                    .counters
                    .schedule_fired
                    .fetch_add(1, Ordering::Relaxed);
                events.poke();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(function, error = %e, "cannot record a schedule tick"),
        }
        last = next_ms;
    }
}

/// The event a tick delivers: the schedule's `input`, or a Scheduled Event.
fn tick_body(events: &EventEngine, spec: &ScheduleSpec, fire_ms: i64) -> String {
    match &spec.input {
        // Serverless passes a string `input` through as the event's JSON text.
        Some(serde_json::Value::String(s))
            if serde_json::from_str::<serde_json::Value>(s).is_ok() =>
        {
            s.clone()
        }
        Some(v) => v.to_string(),
        None => records::scheduled_event(&events.settings.region, &spec.rule, fire_ms).to_string(),
    }
}

/// In a cluster every node runs every schedule and publishes each tick with the id
/// `KEY@TICK_MS`; the transport drops the copies (JetStream de-duplication), so a tick fires
/// once however many nodes are up, and still fires while any one is.
async fn run_clustered(
    events: Arc<EventEngine>,
    transport: Arc<dyn AsyncTransport>,
    function: String,
    spec: ScheduleSpec,
) {
    let anchor_ms = loop {
        match transport.schedule_anchor(&spec.key, now_ms()).await {
            Ok(a) => break a,
            Err(e) => {
                tracing::warn!(function, schedule = %spec.schedule, error = %e, "cannot read the schedule's anchor; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let anchor = at(anchor_ms);
    let mut last = now_ms() - 1;
    loop {
        let Some(next) = spec.schedule.next_after(at(last), anchor) else {
            tracing::info!(function, schedule = %spec.schedule, "schedule has no future ticks");
            return;
        };
        let next_ms = ms(next);
        let wait = (next_ms - now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let event = AsyncInvocation {
            id: uuid::Uuid::new_v4().to_string(),
            body: tick_body(&events, &spec, next_ms),
            attempt: 0,
            sent_ms: next_ms,
            not_before_ms: 0,
        };
        let dedup = format!("{}@{next_ms}", spec.key);
        // A tick is worth a few tries while the cluster fails over, not more than its period.
        let mut tries = 0;
        loop {
            match transport
                .publish(&function, event.clone(), dedup.clone())
                .await
            {
                Ok(first) => {
                    // Only the node whose copy JetStream kept counts the tick as fired.
                    if first {
                        events
                            .counters
                            .schedule_fired
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(function, error = %e, "cannot publish a schedule tick; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::error!(function, error = %e, "a schedule tick was not published");
                    events
                        .counters
                        .schedule_missed
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        last = next_ms;
    }
}
