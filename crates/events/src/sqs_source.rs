//! `sqs` events: poll a Tusk queue, hand batches to the function, delete what it handled.
//! Failed messages become visible again after the queue's visibility timeout; past
//! `maxReceiveCount` deliveries the store moves them to the dead-letter queue.

use crate::queue_db::{Message, Retry};
use crate::records::sqs_record;
use crate::{EventEngine, Invoked, SqsMapping};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn run(events: Arc<EventEngine>, function: String, mapping: SqsMapping) {
    let idle = Duration::from_millis(200);
    loop {
        if events.draining() {
            return;
        }
        let visibility_ms = match events.queues.queue(&mapping.queue).await {
            Ok(Some(q)) => u64::from(q.visibility_timeout_s) * 1000,
            Ok(None) => {
                tracing::warn!(function, queue = %mapping.queue, "queue of an sqs event does not exist; waiting for it");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            // The store is failing over (a cluster) or stopping: keep the poller alive.
            Err(e) => {
                tracing::warn!(function, queue = %mapping.queue, error = %e, "cannot read the queue of an sqs event; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let work = events.work();
        let batch = collect(&events, &mapping, visibility_ms).await;
        if batch.is_empty() {
            drop(work);
            let _ = tokio::time::timeout(idle, events.wake.notified()).await;
            continue;
        }
        handle(&events, &function, &mapping, batch).await;
        drop(work);
    }
}

async fn collect(events: &EventEngine, mapping: &SqsMapping, visibility_ms: u64) -> Vec<Message> {
    let max = mapping.batch_size.max(1) as usize;
    let mut batch = match events
        .queues
        .receive(&mapping.queue, max.min(10_000), visibility_ms)
        .await
    {
        Ok(m) => m,
        Err(_) => return vec![],
    };
    // maximumBatchingWindow: wait for a fuller batch, but not past the window.
    let deadline = Instant::now() + mapping.batching_window;
    while !batch.is_empty() && batch.len() < max && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50).min(mapping.batching_window)).await;
        if let Ok(more) = events
            .queues
            .receive(&mapping.queue, max - batch.len(), visibility_ms)
            .await
        {
            batch.extend(more);
        }
    }
    batch
}

pub(crate) async fn handle(
    events: &EventEngine,
    function: &str,
    mapping: &SqsMapping,
    batch: Vec<Message>,
) {
    // A removed function: its pollers are being stopped; the batch reappears later.
    if events.invoker.max_concurrency(function).is_none() {
        return;
    }
    let region = &events.settings.region;
    let records: Vec<serde_json::Value> = batch.iter().map(|m| sqs_record(region, m)).collect();
    let event = serde_json::json!({ "Records": records });
    events.counters.sqs_batches.fetch_add(1, Ordering::Relaxed);
    let failed: HashSet<String> = match events
        .invoker
        .invoke(function, Bytes::from(event.to_string()))
        .await
    {
        Invoked::Throttled => {
            // Give the messages back right away; the function is busy, not failing.
            for m in &batch {
                let _ = events
                    .queues
                    .retry(
                        &m.queue,
                        &m.receipt,
                        Retry {
                            delay_ms: 500,
                            ..Retry::default()
                        },
                    )
                    .await;
            }
            return;
        }
        Invoked::StartFailed(_) | Invoked::NoSuchFunction => return,
        // The whole batch failed: leave it to reappear after the visibility timeout.
        Invoked::FunctionError { .. } => return,
        Invoked::Response(response) if mapping.report_batch_item_failures => {
            failed_items(&response, &batch)
        }
        Invoked::Response(_) => HashSet::new(),
    };
    for m in batch.iter().filter(|m| !failed.contains(&m.id)) {
        delete_handled(events, m).await;
    }
}

/// Deletes a handled message, trying again for a few seconds while the store fails over (a
/// cluster): a delete given up on means the message is handled twice.
async fn delete_handled(events: &EventEngine, m: &Message) {
    for _ in 0..20 {
        match events.queues.delete(&m.queue, &m.receipt).await {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(queue = %m.queue, error = %e, "cannot delete a handled message yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    tracing::warn!(queue = %m.queue, message_id = %m.id, "a handled message could not be deleted; it will be delivered again");
}

/// `{"batchItemFailures": [{"itemIdentifier": id}]}`; an unreadable answer fails the batch, as
/// Lambda does.
fn failed_items(response: &[u8], batch: &[Message]) -> HashSet<String> {
    let all = || batch.iter().map(|m| m.id.clone()).collect();
    let value: serde_json::Value = match serde_json::from_slice(response) {
        Ok(v) => v,
        Err(_) => return all(),
    };
    match value.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => HashSet::new(),
        Some(serde_json::Value::Array(items)) => {
            let mut out = HashSet::new();
            for item in items {
                match item.get("itemIdentifier").and_then(|i| i.as_str()) {
                    Some(id) if batch.iter().any(|m| m.id == id) => {
                        out.insert(id.to_string());
                    }
                    _ => return all(),
                }
            }
            out
        }
        Some(_) => all(),
    }
}
