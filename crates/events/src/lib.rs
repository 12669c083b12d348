//! Events that are never lost: async invocations (retries, maximum age, destinations),
//! schedules that fire once per tick, and durable queues feeding `sqs` events.
//!
//! This file holds the engine itself ([`EventEngine`]: per-function configuration, the tasks it
//! starts, draining at shutdown) and the configuration types; each kind of work has its own
//! module: `async_invocations` (accept, dispatch, attempt, retry, destinations), `schedules`,
//! `sqs_source`; [`queues::Queues`] decides where a queue lives, [`queue_db::QueueDb`] is the
//! node's SQLite. Everything durable is acknowledged only after its commit, and removed only in
//! the same commit that records where its outcome went.

mod async_invocations;
mod invoker;
pub mod queue_db;
pub mod queues;
pub mod records;
mod schedules;
mod sqs_source;

use queue_db::{NewMessage, QueueConfig, QueueError};
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

pub use async_invocations::{AsyncInvocation, AsyncTransport, Decision};
pub use invoker::{Invoked, Invoker};

/// Lambda's limit on an async (Event) payload.
pub const MAX_ASYNC_PAYLOAD: usize = 256 * 1024;
/// SQS's limit on a message.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Node-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
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
pub struct FunctionEventConfig {
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

struct FunctionState {
    config: FunctionEventConfig,
    tasks: Vec<JoinHandle<()>>,
}

/// The events engine: one per node. Runs every function's async invocations, schedules and
/// `sqs` pollers, and tracks the work in progress so a stopping node can drain it.
pub struct EventEngine {
    queues: Queues,
    invoker: Arc<dyn Invoker>,
    settings: EngineSettings,
    functions: RwLock<HashMap<String, FunctionState>>,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    wake: Notify,
    transport: OnceLock<Arc<dyn AsyncTransport>>,
    /// Set when the node stops: take no new events or messages, finish those held.
    draining: AtomicBool,
    /// Async invocations and message batches being run right now (see [`EventEngine::work`]).
    working: AtomicUsize,
    work_done: Notify,
    pub counters: EventCounters,
}

/// Counts one async invocation or message batch as being run until dropped.
pub struct WorkGuard {
    engine: Arc<EventEngine>,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if self.engine.working.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.engine.work_done.notify_waiters();
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

impl EventEngine {
    pub async fn start(
        queues: Queues,
        invoker: Arc<dyn Invoker>,
        settings: EngineSettings,
    ) -> Result<Arc<EventEngine>, QueueError> {
        // A single node restarting owns everything that was in flight: deliver it again.
        queues.release_internal().await?;
        let events = Arc::new(EventEngine {
            queues,
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

    /// Marks an event or message batch as being run, for [`EventEngine::drain`].
    pub fn work(self: &Arc<Self>) -> WorkGuard {
        self.working.fetch_add(1, Ordering::AcqRel);
        WorkGuard {
            engine: self.clone(),
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
        &self.queues
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Installs (or replaces) a function's event configuration and (re)starts its schedules
    /// and queue pollers.
    pub async fn configure(
        self: &Arc<Self>,
        config: FunctionEventConfig,
    ) -> Result<(), QueueError> {
        self.queues
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

    pub fn config(&self, function: &str) -> Option<FunctionEventConfig> {
        self.functions
            .read()
            .ok()?
            .get(function)
            .map(|s| s.config.clone())
    }

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
}

#[cfg(test)]
mod tests;
