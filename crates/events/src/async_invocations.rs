//! Async invocations (`Event` invocations, schedule ticks and function destinations): how
//! one is accepted, the dispatch loop that hands stored ones to the [`Invoker`], the decision
//! after each try (success, retry with back-off, throttled, too old, out of retries) and where
//! its record goes (destinations), and the [`AsyncTransport`] that carries them in a cluster.
//!
//! Never removes an invocation except in the same commit that stores where its outcome went.

use crate::queue_db::{self, Message, NewMessage, QueueError, Retry};
use crate::{
    async_queue, new_message, records, BoxFuture, Destination, EventEngine, FunctionEventConfig,
    Invoked,
};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One async invocation as it travels between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncInvocation {
    /// The request id the caller got back.
    pub id: String,
    pub body: String,
    /// 0 for the first try; retries count up.
    pub attempt: u32,
    /// When the event was first accepted (keeps its age across retries).
    pub sent_ms: i64,
    /// Not to be run before this time (a retry's delay); 0 = at once.
    pub not_before_ms: i64,
}

/// What to do with an async invocation after one try (see [`EventEngine::attempt`]).
#[derive(Debug)]
pub enum Decision {
    /// Finished (succeeded, dropped or out of retries): remove it and send these records to
    /// the destinations (`async:NAME` queues are functions).
    Complete(Vec<(String, NewMessage)>),
    /// The function failed: run it again after `delay` as try number `attempt`.
    Retry {
        delay: Duration,
        attempt: u32,
        error: String,
    },
    /// No instance was free: try again after the delay, as the same attempt.
    Throttled(Duration),
}

/// Where async invocations travel when the node is one of a cluster (NATS JetStream); without
/// one they stay in the node's [`queue_db::QueueDb`].
pub trait AsyncTransport: Send + Sync + 'static {
    /// Durably enqueues an event for `function`. A second publish with the same `dedup_id`
    /// inside the transport's window is dropped (schedules use it to fire once per tick).
    /// Returns false when it was such a duplicate.
    fn publish<'a>(
        &'a self,
        function: &'a str,
        event: AsyncInvocation,
        dedup_id: String,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;
    /// Takes `function`'s events (shared with every other node) and runs them through
    /// [`EventEngine::attempt`] until the task is aborted.
    fn consume(
        self: Arc<Self>,
        events: Arc<EventEngine>,
        function: String,
    ) -> BoxFuture<'static, ()>;
    /// How many of `function`'s events wait across the cluster, and how many are being run
    /// (handed out, not yet acked).
    fn depth<'a>(&'a self, function: &'a str) -> BoxFuture<'a, Result<(u64, u64), QueueError>>;
    /// The cluster-wide anchor of a rate schedule (the first node to ask sets it to `now_ms`),
    /// so every node computes the same ticks.
    fn schedule_anchor<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<i64, QueueError>>;
}

impl EventEngine {
    /// Accepts an async (`Event`) invocation; returns its request id once it is durably stored.
    pub async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<String, QueueError> {
        let body = String::from_utf8(payload.to_vec())
            .map_err(|_| QueueError::Invalid("the payload must be UTF-8 JSON".into()))?;
        let message = new_message(body, serde_json::json!({"attempt": 0}));
        let id = message.id.clone();
        match self.transport.get() {
            Some(transport) => {
                let event = AsyncInvocation {
                    id: id.clone(),
                    body: message.body,
                    attempt: 0,
                    sent_ms: queue_db::now_ms(),
                    not_before_ms: 0,
                };
                transport.publish(function, event, id.clone()).await?;
            }
            None => {
                self.queues
                    .send(&async_queue(function), vec![message])
                    .await?;
            }
        }
        self.counters.async_accepted.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(id)
    }

    /// Wakes the dispatcher (after a send to a queue a poller may wait on).
    pub(crate) async fn dispatch_loop(self: Arc<Self>) {
        loop {
            if self.draining() {
                return;
            }
            let functions: Vec<String> = self
                .functions
                .read()
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default();
            let mut busy = false;
            for function in functions {
                let limit = self.limit_for(&function);
                let free = limit.available_permits();
                if free == 0 {
                    continue;
                }
                let Some(config) = self.config(&function) else {
                    continue;
                };
                let visibility = (config.timeout + Duration::from_secs(30)).as_millis() as u64;
                let messages = match self
                    .queues
                    .receive(&async_queue(&function), free.min(64), visibility)
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(function, error = %e, "cannot read async events");
                        continue;
                    }
                };
                busy |= !messages.is_empty();
                for message in messages {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        break;
                    };
                    let events = self.clone();
                    let config = config.clone();
                    let work = self.work();
                    tokio::spawn(async move {
                        let _work = work;
                        events.run_async(&config, message).await;
                        drop(permit);
                        events.wake.notify_one();
                    });
                }
            }
            if !busy {
                // New events wake us; delayed retries are picked up by the periodic look.
                let _ =
                    tokio::time::timeout(Duration::from_millis(250), self.wake.notified()).await;
            }
        }
    }

    fn destination_send(
        &self,
        dest: &Option<Destination>,
        record: serde_json::Value,
    ) -> Vec<(String, NewMessage)> {
        match dest {
            None => vec![],
            Some(Destination::Queue(q)) => vec![(
                q.clone(),
                new_message(record.to_string(), serde_json::json!({})),
            )],
            Some(Destination::Function(f)) => vec![(
                async_queue(f),
                new_message(record.to_string(), serde_json::json!({"attempt": 0})),
            )],
        }
    }

    async fn run_async(&self, config: &FunctionEventConfig, message: Message) {
        let queue = async_queue(&config.function);
        let event = AsyncInvocation {
            id: message.id.clone(),
            body: message.body.clone(),
            attempt: message
                .attributes
                .get("attempt")
                .and_then(|a| a.as_u64())
                .unwrap_or(0) as u32,
            sent_ms: message.sent_ms,
            not_before_ms: 0,
        };
        match self.attempt(config, &event, message.receive_count).await {
            Decision::Complete(send) => self.finish(&queue, &message.receipt, send).await,
            Decision::Retry {
                delay,
                attempt,
                error,
            } => self.retry(&queue, &message, delay, &error, attempt).await,
            Decision::Throttled(backoff) => {
                self.retry(&queue, &message, backoff, "throttled", event.attempt)
                    .await
            }
        }
    }

    /// Runs one try of an async event on this node and decides what happens next; the caller
    /// carries the decision out on its queue. `deliveries` counts how often the event was
    /// handed out (it stretches the back-off while the function stays busy).
    pub async fn attempt(
        &self,
        config: &FunctionEventConfig,
        event: &AsyncInvocation,
        deliveries: u32,
    ) -> Decision {
        let attempt = event.attempt;
        let age = Duration::from_millis((queue_db::now_ms() - event.sent_ms).max(0) as u64);
        let fail = |condition: &'static str, response: Option<Bytes>, error: Option<String>| {
            let record = records::invocation_record(&records::Outcome {
                request_id: &event.id,
                function_arn: &config.function_arn,
                condition,
                invoke_count: attempt + 1,
                request_payload: event.body.as_bytes(),
                response: response.as_deref(),
                function_error: error.as_deref(),
            });
            self.destination_send(&config.on_failure, record)
        };
        if age > config.max_event_age {
            self.counters
                .dropped_too_old
                .fetch_add(1, Ordering::Relaxed);
            self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(function = %config.function, request_id = %event.id, "async event older than maximumEventAge dropped");
            return Decision::Complete(fail("EventAgeExceeded", None, None));
        }
        match self
            .invoker
            .invoke(&config.function, Bytes::from(event.body.clone()))
            .await
        {
            Invoked::NoSuchFunction => {
                tracing::warn!(function = %config.function, request_id = %event.id, "async event for a removed function dropped");
                Decision::Complete(vec![])
            }
            Invoked::Throttled => {
                self.counters
                    .async_throttled
                    .fetch_add(1, Ordering::Relaxed);
                // Back off while the function stays busy: 1 s, 2 s, 4 s ... up to a minute.
                Decision::Throttled(
                    Duration::from_secs(1 << deliveries.min(6)).min(Duration::from_secs(60)),
                )
            }
            Invoked::StartFailed(e) => self.after_error(config, event, None, e.to_string()),
            Invoked::Response(response) => {
                self.counters
                    .async_succeeded
                    .fetch_add(1, Ordering::Relaxed);
                let record = records::invocation_record(&records::Outcome {
                    request_id: &event.id,
                    function_arn: &config.function_arn,
                    condition: "Success",
                    invoke_count: attempt + 1,
                    request_payload: event.body.as_bytes(),
                    response: Some(&response),
                    function_error: None,
                });
                Decision::Complete(self.destination_send(&config.on_success, record))
            }
            Invoked::FunctionError { body, error_type } => {
                self.after_error(config, event, Some(body), error_type)
            }
        }
    }

    fn after_error(
        &self,
        config: &FunctionEventConfig,
        event: &AsyncInvocation,
        response: Option<Bytes>,
        error: String,
    ) -> Decision {
        let attempt = event.attempt;
        if attempt < config.max_retries {
            self.counters.async_retried.fetch_add(1, Ordering::Relaxed);
            return Decision::Retry {
                delay: self.settings.retry_base_delay * 2u32.pow(attempt),
                attempt: attempt + 1,
                error,
            };
        }
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let record = records::invocation_record(&records::Outcome {
            request_id: &event.id,
            function_arn: &config.function_arn,
            condition: "RetriesExhausted",
            invoke_count: attempt + 1,
            request_payload: event.body.as_bytes(),
            response: response.as_deref(),
            function_error: Some("Unhandled"),
        });
        tracing::warn!(function = %config.function, request_id = %event.id, error = %error, "async event failed after all retries");
        Decision::Complete(self.destination_send(&config.on_failure, record))
    }

    async fn retry(
        &self,
        queue: &str,
        message: &Message,
        delay: Duration,
        error: &str,
        attempt: u32,
    ) {
        let retry = Retry {
            delay_ms: delay.as_millis() as u64,
            error: Some(error.to_string()),
            attributes: Some(serde_json::json!({"attempt": attempt})),
        };
        if let Err(e) = self.queues.retry(queue, &message.receipt, retry).await {
            tracing::error!(error = %e, "cannot schedule a retry; the event will be redelivered after its visibility timeout");
        }
    }

    async fn finish(&self, queue: &str, receipt: &str, then_send: Vec<(String, NewMessage)>) {
        if let Err(e) = self.queues.complete(queue, receipt, then_send).await {
            tracing::error!(error = %e, "cannot complete an event; it will be redelivered");
        }
        self.wake.notify_one();
    }
}
