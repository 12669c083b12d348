//! Events that are never lost: async invocations (retries, maximum age, destinations),
//! schedules that fire once per tick, and durable queues feeding `sqs` events.
//!
//! Everything durable goes through [`queue_db::QueueDb`]; an event is acknowledged only after
//! its commit, and removed only in the same commit that records where its outcome went.

mod invoker;
pub mod queue_db;
pub mod queues;
pub mod records;
mod schedules;
mod sqs_source;

use bytes::Bytes;
use queue_db::{Message, NewMessage, QueueConfig, QueueError, Retry};
use queues::Queues;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

pub use invoker::{Invoked, Invoker};

/// Lambda's limit on an async (Event) payload.
pub const MAX_ASYNC_PAYLOAD: usize = 256 * 1024;
/// SQS's limit on a message.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Node-wide settings.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Delay before the first retry of a failed async invocation; the second waits twice as
    /// long (Lambda: about 1 and 2 minutes).
    pub retry_base_delay: Duration,
    pub region: String,
}

/// Where an async invocation's record goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Destination {
    Function(String),
    Queue(String),
}

/// An `sqs` event: a queue feeding a function.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsMapping {
    pub queue: String,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// Stable identity across deploys (function, index, expression).
    pub key: String,
    pub rule: String,
    pub schedule: tusk_schedule::Schedule,
    pub input: Option<serde_json::Value>,
}

/// What the events engine needs to know about one function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionEvents {
    pub function: String,
    pub function_arn: String,
    pub max_retries: u32,
    pub max_event_age: Duration,
    pub timeout: Duration,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
    pub schedules: Vec<ScheduleSpec>,
    pub sqs: Vec<SqsMapping>,
}

/// Counters for `/_tusk/metrics` and `tusk events`.
#[derive(Default, Serialize)]
pub struct EventCounters {
    pub async_accepted: AtomicU64,
    pub async_succeeded: AtomicU64,
    pub async_retried: AtomicU64,
    pub async_throttled: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped_too_old: AtomicU64,
    pub schedule_fired: AtomicU64,
    pub schedule_missed: AtomicU64,
    pub sqs_batches: AtomicU64,
}

/// A boxed future, so [`AsyncTransport`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One async invocation as it travels between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncEvent {
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

/// What to do with an async event after one try (see [`Events::attempt`]).
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
        event: AsyncEvent,
        dedup_id: String,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;
    /// Takes `function`'s events (shared with every other node) and runs them through
    /// [`Events::attempt`] until the task is aborted.
    fn consume(self: Arc<Self>, events: Arc<Events>, function: String) -> BoxFuture<'static, ()>;
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

struct FunctionState {
    config: FunctionEvents,
    tasks: Vec<JoinHandle<()>>,
}

pub struct Events {
    store: Queues,
    invoker: Arc<dyn Invoker>,
    settings: EventSettings,
    functions: RwLock<HashMap<String, FunctionState>>,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    wake: Notify,
    transport: OnceLock<Arc<dyn AsyncTransport>>,
    /// Set when the node stops: take no new events or messages, finish those held.
    draining: AtomicBool,
    /// Events and message batches being run right now (see [`Events::work`]).
    working: AtomicUsize,
    work_done: Notify,
    pub counters: EventCounters,
}

/// Counts one event or message batch as being run until dropped.
pub struct WorkGuard {
    events: Arc<Events>,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if self.events.working.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.events.work_done.notify_waiters();
        }
    }
}

pub fn async_queue(function: &str) -> String {
    // ':' never appears in user queue names, so internal queues cannot clash with them.
    format!("async:{function}")
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn new_message(body: String, attributes: serde_json::Value) -> NewMessage {
    NewMessage {
        id: fresh_id(),
        body,
        attributes,
        delay_ms: 0,
        sent_ms: None,
    }
}

impl Events {
    pub async fn start(
        store: Queues,
        invoker: Arc<dyn Invoker>,
        settings: EventSettings,
    ) -> Result<Arc<Events>, QueueError> {
        // A single node restarting owns everything that was in flight: deliver it again.
        store.release_internal().await?;
        let events = Arc::new(Events {
            store,
            invoker,
            settings,
            functions: RwLock::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            transport: OnceLock::new(),
            draining: AtomicBool::new(false),
            working: AtomicUsize::new(0),
            work_done: Notify::new(),
            counters: EventCounters::default(),
        });
        tokio::spawn(events.clone().dispatch_loop());
        Ok(events)
    }

    /// Sends async invocations (and schedule ticks) through `transport` from now on; call once,
    /// before any function is configured.
    pub fn set_transport(&self, transport: Arc<dyn AsyncTransport>) {
        if self.transport.set(transport).is_err() {
            tracing::warn!("the async transport was already set");
        }
    }

    /// Marks an event or message batch as being run, for [`Events::drain`].
    pub fn work(self: &Arc<Self>) -> WorkGuard {
        self.working.fetch_add(1, Ordering::AcqRel);
        WorkGuard {
            events: self.clone(),
        }
    }

    /// True once the node is stopping: pollers take nothing new.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops taking events and queue messages (the node is stopping); those being run go on.
    pub fn stop_taking(&self) {
        self.draining.store(true, Ordering::Release);
        self.poke();
    }

    /// Stops taking new work and waits up to `timeout` for what is running to finish.
    /// Returns how many were still running when it gave up.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.stop_taking();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.work_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let running = self.working.load(Ordering::Acquire);
            if running == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return self.working.load(Ordering::Acquire);
            }
        }
    }

    pub fn transport(&self) -> Option<&Arc<dyn AsyncTransport>> {
        self.transport.get()
    }

    /// The node's queues (the router that knows which live in the cluster).
    pub fn queues(&self) -> &Queues {
        &self.store
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// Installs (or replaces) a function's event configuration and (re)starts its schedules
    /// and queue pollers.
    pub async fn configure(self: &Arc<Self>, config: FunctionEvents) -> Result<(), QueueError> {
        self.store
            .create_queue(QueueConfig {
                name: async_queue(&config.function),
                visibility_timeout_s: config.timeout.as_secs() as u32 + 30,
                max_receive_count: 0,
                dead_letter: None,
                internal: true,
            })
            .await?;
        let mut tasks = Vec::new();
        for s in &config.schedules {
            tasks.push(tokio::spawn(schedules::run(
                self.clone(),
                config.function.clone(),
                s.clone(),
            )));
        }
        if let Some(transport) = self.transport.get() {
            tasks.push(tokio::spawn(
                transport
                    .clone()
                    .consume(self.clone(), config.function.clone()),
            ));
        }
        for m in &config.sqs {
            // A few pollers per mapping so one slow batch does not hold the queue.
            for _ in 0..m.batch_size.clamp(1, 4) {
                tasks.push(tokio::spawn(sqs_source::run(
                    self.clone(),
                    config.function.clone(),
                    m.clone(),
                )));
            }
        }
        let old = match self.functions.write() {
            Ok(mut f) => f.insert(config.function.clone(), FunctionState { config, tasks }),
            Err(_) => None,
        };
        if let Some(old) = old {
            old.tasks.iter().for_each(JoinHandle::abort);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Stops a removed function's schedules and pollers. Its pending async events stay stored
    /// and are reported when dispatched.
    pub fn unconfigure(&self, function: &str) {
        let old = self
            .functions
            .write()
            .ok()
            .and_then(|mut f| f.remove(function));
        if let Some(old) = old {
            old.tasks.iter().for_each(JoinHandle::abort);
        }
    }

    pub fn config(&self, function: &str) -> Option<FunctionEvents> {
        self.functions
            .read()
            .ok()?
            .get(function)
            .map(|s| s.config.clone())
    }

    /// Accepts an async (`Event`) invocation; returns its request id once it is durably stored.
    pub async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<String, QueueError> {
        let body = String::from_utf8(payload.to_vec())
            .map_err(|_| QueueError::Invalid("the payload must be UTF-8 JSON".into()))?;
        let message = new_message(body, serde_json::json!({"attempt": 0}));
        let id = message.id.clone();
        match self.transport.get() {
            Some(transport) => {
                let event = AsyncEvent {
                    id: id.clone(),
                    body: message.body,
                    attempt: 0,
                    sent_ms: queue_db::now_ms(),
                    not_before_ms: 0,
                };
                transport.publish(function, event, id.clone()).await?;
            }
            None => {
                self.store
                    .send(&async_queue(function), vec![message])
                    .await?;
            }
        }
        self.counters.async_accepted.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(id)
    }

    /// Wakes the dispatcher (after a send to a queue a poller may wait on).
    pub fn poke(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// How many of `function`'s async events this node runs at once.
    pub fn limit_for(&self, function: &str) -> Arc<Semaphore> {
        let permits = self.invoker.max_concurrency(function).unwrap_or(1);
        let mut map = match self.in_flight.lock() {
            Ok(m) => m,
            Err(e) => e.into_inner(),
        };
        map.entry(function.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }

    /// `(share, free)`: how many instances of `function` this node runs at once now (its
    /// share of `reservedConcurrency` in a cluster) and how many slots are free; `(0, 0)`
    /// when it has no pool here.
    pub fn slots(&self, function: &str) -> (usize, usize) {
        self.invoker.slots(function).unwrap_or((0, 0))
    }

    async fn dispatch_loop(self: Arc<Self>) {
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
                    .store
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

    async fn run_async(&self, config: &FunctionEvents, message: Message) {
        let queue = async_queue(&config.function);
        let event = AsyncEvent {
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
        config: &FunctionEvents,
        event: &AsyncEvent,
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
        config: &FunctionEvents,
        event: &AsyncEvent,
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
        if let Err(e) = self.store.retry(queue, &message.receipt, retry).await {
            tracing::error!(error = %e, "cannot schedule a retry; the event will be redelivered after its visibility timeout");
        }
    }

    async fn finish(&self, queue: &str, receipt: &str, then_send: Vec<(String, NewMessage)>) {
        if let Err(e) = self.store.complete(queue, receipt, then_send).await {
            tracing::error!(error = %e, "cannot complete an event; it will be redelivered");
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
