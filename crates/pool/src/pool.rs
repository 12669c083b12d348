use crate::metrics::FunctionMetrics;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tusk_instance::{
    FcgiFailure, Instance, Invocation, LaunchSpec, LogSink, Outcome, Params, RawResponse,
    StartError,
};

/// Node-wide knobs for every pool.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Instances per function when it sets no `reservedConcurrency`.
    pub default_max_instances: usize,
    /// Requests allowed to wait for an instance before new ones get 429.
    pub queue_limit: usize,
    /// How long a request waits for an instance before it gets 429.
    pub queue_wait: Duration,
    pub idle_timeout: Duration,
}

/// The instances of one function version.
pub struct FunctionPool {
    spec: Arc<LaunchSpec>,
    logs: Arc<dyn LogSink>,
    metrics: Arc<FunctionMetrics>,
    limits: PoolLimits,
    provisioned: usize,
    /// The configured most instances: `reservedConcurrency`, or the node's default.
    max: usize,
    /// Whether `max` came from `reservedConcurrency` (only those are shared over a cluster).
    reserved: bool,
    /// This node's part of `max` right now (see [`FunctionPool::set_share`]).
    share: AtomicUsize,
    /// Serializes resizes, so `share` and the permit count move together.
    resize: Mutex<()>,
    /// Permits still to take back after a shrink found too few of them free: slots that
    /// end are forgotten while this is above zero.
    debt: AtomicUsize,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    idle: Mutex<Vec<Instance>>,
    alive: AtomicUsize,
    /// Instances being started right now.
    starting: AtomicUsize,
    /// Woken when an instance goes idle or a start ends: waiters look again.
    freed: Notify,
    retired: AtomicBool,
}

/// How many instances of one function start at once. A burst on a cold function used to
/// start one instance per waiting request (32 PHP starts fighting for 2 cores); a few starts
/// at a time, with every waiter taking whichever instance frees up first, serve it sooner.
fn parallel_starts() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .max(2)
}

/// Result of one Runtime API invocation, ready for the Invoke API.
pub struct InvokeResult {
    pub request_id: String,
    /// `Ok(payload)` or `Err((error JSON, errorType))`.
    pub result: Result<Bytes, (Bytes, String)>,
    pub log_tail: String,
}

pub enum WebOutcome {
    Response(RawResponse),
    Timeout,
    Crashed(String),
}

pub struct WebResult {
    pub request_id: String,
    pub outcome: WebOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("too many concurrent requests")]
    Throttled,
    #[error(transparent)]
    Start(#[from] StartError),
}

/// One of the pool's instance slots. While the pool owes permits after a shrink, a slot
/// that ends pays one back (its permit is forgotten) instead of freeing it.
struct Slot {
    pool: Arc<FunctionPool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let owed = self
            .pool
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
        if owed.is_ok() {
            permit.forget();
        }
    }
}

struct Lease {
    pool: Arc<FunctionPool>,
    instance: Option<Instance>,
    cold: bool,
    _slot: Slot,
}

impl Lease {
    fn instance(&self) -> Option<&Instance> {
        self.instance.as_ref()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            self.pool.release(instance);
        }
    }
}

/// A place in a pool's wait queue, released on drop.
struct QueueSlot<'a> {
    waiting: &'a AtomicUsize,
    /// How many were waiting before this one.
    position: usize,
}

impl<'a> QueueSlot<'a> {
    fn take(waiting: &'a AtomicUsize) -> QueueSlot<'a> {
        let position = waiting.fetch_add(1, Ordering::AcqRel);
        QueueSlot { waiting, position }
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn error_body(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

impl FunctionPool {
    pub fn new(
        spec: Arc<LaunchSpec>,
        reserved_concurrency: Option<u32>,
        provisioned: u32,
        limits: PoolLimits,
        logs: Arc<dyn LogSink>,
        metrics: Arc<FunctionMetrics>,
    ) -> FunctionPool {
        let max = reserved_concurrency
            .map(|r| r as usize)
            .unwrap_or(limits.default_max_instances);
        FunctionPool {
            spec,
            logs,
            metrics,
            limits,
            provisioned: (provisioned as usize).min(max),
            max,
            reserved: reserved_concurrency.is_some(),
            share: AtomicUsize::new(max),
            resize: Mutex::new(()),
            debt: AtomicUsize::new(0),
            permits: Arc::new(Semaphore::new(max)),
            waiting: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            alive: AtomicUsize::new(0),
            starting: AtomicUsize::new(0),
            freed: Notify::new(),
            retired: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.function_name
    }

    pub fn spec(&self) -> &Arc<LaunchSpec> {
        &self.spec
    }

    pub fn metrics(&self) -> &Arc<FunctionMetrics> {
        &self.metrics
    }

    /// The configured most instances: `reservedConcurrency`, or the node's default. On a
    /// cluster node the pool may run fewer, see [`Self::share`].
    pub fn max_concurrency(&self) -> usize {
        self.max
    }

    /// `reservedConcurrency`, when the function sets it.
    pub fn reserved_concurrency(&self) -> Option<usize> {
        self.reserved.then_some(self.max)
    }

    /// Most instances this pool runs at once now: its share of `max_concurrency()`.
    pub fn share(&self) -> usize {
        self.share.load(Ordering::Acquire)
    }

    /// Instance slots free right now.
    pub fn free_slots(&self) -> usize {
        self.permits.available_permits()
    }

    /// True when every instance slot is taken: a new request would have to wait.
    pub fn saturated(&self) -> bool {
        self.free_slots() == 0
    }

    /// Changes how many instances the pool runs at once. Growing frees slots at once;
    /// shrinking takes back free slots now and busy ones as their requests end, so
    /// running requests are never cut off.
    pub fn set_share(&self, share: usize) {
        let Ok(_resizing) = self.resize.lock() else {
            return;
        };
        let current = self.share.load(Ordering::Acquire);
        if share > current {
            let grow = share - current;
            // Permits still owed from an earlier shrink are cancelled before adding any.
            let owed = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(grow))
                })
                .unwrap_or(0);
            self.permits.add_permits(grow - owed.min(grow));
        } else if share < current {
            let shrink = current - share;
            let taken = self.permits.forget_permits(shrink);
            self.debt.fetch_add(shrink - taken, Ordering::AcqRel);
        }
        self.share.store(share, Ordering::Release);
        if share != current {
            tracing::debug!(function = %self.name(), share, max = self.max, "instance share changed");
        }
        // Room to start an instance may have come or gone: waiters look again.
        self.freed.notify_waiters();
    }

    /// Provisioned instances kept warm: never more than the pool's share.
    fn provisioned(&self) -> usize {
        self.provisioned.min(self.share())
    }

    /// (idle, busy) instance counts.
    pub fn instance_counts(&self) -> (usize, usize) {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or(0);
        let alive = self.alive.load(Ordering::Relaxed);
        (idle, alive.saturating_sub(idle))
    }

    /// Takes an instance slot, waiting in the pool's queue when none is free.
    async fn slot(self: &Arc<Self>) -> Result<Slot, AcquireError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // The guard gives the queue slot back even when the caller goes away mid-wait.
                let slot = QueueSlot::take(&self.waiting);
                if slot.position >= self.limits.queue_limit {
                    return Err(AcquireError::Throttled);
                }
                let waited = tokio::time::timeout(
                    self.limits.queue_wait,
                    self.permits.clone().acquire_owned(),
                )
                .await;
                drop(slot);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => return Err(AcquireError::Throttled),
                }
            }
        };
        Ok(Slot {
            pool: self.clone(),
            permit: Some(permit),
        })
    }

    async fn acquire(self: &Arc<Self>) -> Result<Lease, AcquireError> {
        let permit = self.slot().await?;
        // Take the first instance that frees up, or the one this request started, whichever
        // comes first; a start this request no longer needs goes to the idle list.
        let mut own_start: Option<oneshot::Receiver<Result<Instance, StartError>>> = None;
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(instance) = self.pop_idle() {
                return Ok(self.lease(instance, permit));
            }
            if own_start.is_none() && self.reserve_start() {
                own_start = Some(self.spawn_start());
            }
            match own_start.as_mut() {
                Some(started) => tokio::select! {
                    result = started => {
                        return match result {
                            Ok(Ok(instance)) => Ok(self.lease(instance, permit)),
                            Ok(Err(e)) => Err(AcquireError::Start(e)),
                            Err(_) => Err(AcquireError::Start(StartError::Setup(
                                std::io::Error::other("the instance start was abandoned"),
                            ))),
                        };
                    }
                    _ = &mut notified => {}
                },
                // The short timeout is a safety net: every path that frees an instance or
                // room notifies, but a missed wake-up must not leave a request waiting.
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                }
            }
        }
    }

    fn lease(self: &Arc<Self>, instance: Instance, slot: Slot) -> Lease {
        Lease {
            pool: self.clone(),
            cold: instance.fresh(),
            instance: Some(instance),
            _slot: slot,
        }
    }

    /// Counts a start in if fewer than `parallel_starts()` run and the pool has room.
    fn reserve_start(&self) -> bool {
        let limit = parallel_starts();
        let share = self.share();
        self.starting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |starting| {
                let room = self.alive.load(Ordering::Acquire) + starting < share;
                (starting < limit && room).then_some(starting + 1)
            })
            .is_ok()
    }

    /// Starts an instance in its own task (a caller that goes away must not lose it); the
    /// result goes to the caller, or the instance to the idle list when nobody waits for it.
    fn spawn_start(self: &Arc<Self>) -> oneshot::Receiver<Result<Instance, StartError>> {
        let (tx, rx) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let result = pool.start_instance().await;
            pool.starting.fetch_sub(1, Ordering::AcqRel);
            if let Err(Ok(instance)) = tx.send(result) {
                pool.release(instance);
            }
            pool.freed.notify_waiters();
        });
        rx
    }

    /// Most recently used first: it is the warmest (caches, opcache).
    fn pop_idle(&self) -> Option<Instance> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(instance) = idle.pop() {
            if instance.is_alive() && !instance.exhausted() {
                return Some(instance);
            }
            self.alive.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    async fn start_instance(&self) -> Result<Instance, StartError> {
        let instance = Instance::start(self.spec.clone(), self.logs.clone()).await?;
        self.alive.fetch_add(1, Ordering::Relaxed);
        FunctionMetrics::inc(&self.metrics.cold_starts);
        Ok(instance)
    }

    fn release(&self, instance: Instance) {
        if self.retired.load(Ordering::Acquire) || !instance.is_alive() || instance.exhausted() {
            self.alive.fetch_sub(1, Ordering::Relaxed);
        } else {
            match self.idle.lock() {
                Ok(mut idle) => idle.push(instance),
                Err(_) => {
                    self.alive.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        // Either an idle instance or room for a new one: a waiter may go on.
        self.freed.notify_waiters();
    }

    /// Stops accepting idle instances and stops the idle ones (a newer version took over).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let drained: Vec<Instance> = self
            .idle
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default();
        self.alive.fetch_sub(drained.len(), Ordering::Relaxed);
    }

    pub fn reap_idle(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let before = idle.len();
        let keep = self.provisioned();
        let timeout = self.limits.idle_timeout;
        // Oldest first in the vector; reap from the front while above the provisioned floor.
        let mut i = 0;
        while i < idle.len() {
            let over_floor = idle.len() > keep;
            let expired = idle[i].idle_for() >= timeout;
            let dead = !idle[i].is_alive();
            if dead || (over_floor && expired) {
                idle.remove(i);
            } else {
                i += 1;
            }
        }
        let reaped = before - idle.len();
        if reaped > 0 {
            self.alive.fetch_sub(reaped, Ordering::Relaxed);
            tracing::debug!(function = %self.name(), reaped, "stopped idle instances");
        }
    }

    /// Starts instances until `provisionedConcurrency` are alive.
    pub async fn ensure_provisioned(&self) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        while self.alive.load(Ordering::Relaxed) < self.provisioned() {
            match self.start_instance().await {
                Ok(instance) => self.release(instance),
                Err(e) => {
                    tracing::warn!(function = %self.name(), error = %e, "cannot start a provisioned instance");
                    return;
                }
            }
        }
    }

    fn init_failure(&self, request_id: &str, e: StartError) -> InvokeResult {
        tracing::warn!(function = %self.name(), request_id, error = %e, "instance failed to start");
        FunctionMetrics::inc(&self.metrics.invocations);
        FunctionMetrics::inc(&self.metrics.errors);
        let (body, error_type) = match e {
            StartError::InitError { body } => {
                let t = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.get("errorType")
                            .and_then(|t| t.as_str())
                            .map(String::from)
                    })
                    .unwrap_or_else(|| "Runtime.InitError".into());
                (body, t)
            }
            StartError::Exited(info) => (
                error_body(
                    "Runtime.ExitError",
                    format!("RequestId: {request_id} Error: Runtime exited with error: {info}"),
                ),
                "Runtime.ExitError".to_string(),
            ),
            StartError::InitTimeout => (
                error_body(
                    "Runtime.InitTimeout",
                    format!("RequestId: {request_id} Error: {e}"),
                ),
                "Runtime.InitTimeout".to_string(),
            ),
            other => (
                error_body("Runtime.StartError", other.to_string()),
                "Runtime.StartError".to_string(),
            ),
        };
        let line = format!(
            "INIT_REPORT RequestId: {request_id}\tPhase: init\tStatus: error\tError Type: {error_type}"
        );
        self.logs.log(
            self.name(),
            Some(request_id),
            tusk_logs::LogStream::Platform,
            &line,
        );
        InvokeResult {
            request_id: request_id.to_string(),
            result: Err((body, error_type)),
            log_tail: line + "\n",
        }
    }

    /// Runs one event through a Runtime API instance. Waiting for an instance ends when the
    /// caller goes away; once an instance is leased the invocation runs in its own task, so a
    /// caller that disconnects never leaves an instance half-way through an event.
    pub async fn invoke(
        self: &Arc<Self>,
        payload: Bytes,
        client_context: Option<String>,
    ) -> Result<InvokeResult, AcquireError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        // One retry covers an instance that died while idle, before it took the event.
        for attempt in 0..2 {
            let lease = match self.acquire().await {
                Ok(l) => l,
                Err(AcquireError::Throttled) => {
                    FunctionMetrics::inc(&self.metrics.throttles);
                    return Err(AcquireError::Throttled);
                }
                Err(AcquireError::Start(e)) => return Ok(self.init_failure(&request_id, e)),
            };
            let pool = self.clone();
            let (id, payload, context) =
                (request_id.clone(), payload.clone(), client_context.clone());
            let task = tokio::spawn(async move {
                pool.run_event(lease, id, payload, context, attempt == 0)
                    .await
            });
            match task.await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => continue,
                Err(e) => {
                    return Ok(self.init_failure(
                        &request_id,
                        StartError::Setup(std::io::Error::other(e.to_string())),
                    ))
                }
            }
        }
        Ok(self.init_failure(&request_id, StartError::InitTimeout))
    }

    /// One attempt on a leased instance; `None` when the instance died before it took the
    /// event and `may_retry` allows another attempt.
    async fn run_event(
        self: Arc<Self>,
        mut lease: Lease,
        request_id: String,
        payload: Bytes,
        client_context: Option<String>,
        may_retry: bool,
    ) -> Option<InvokeResult> {
        let timeout = self.spec.timeout;
        let instance = lease.instance()?;
        let started = Instant::now();
        self.begin(instance, &request_id);
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            deadline_ms: now_ms() + timeout.as_millis() as u64,
            function_arn: self.spec.function_arn.clone(),
            trace_id: trace_id(&request_id),
            client_context,
        };
        let outcome = instance.invoke(invocation, timeout).await;
        if matches!(outcome, Outcome::NotDelivered) && may_retry {
            if let Some(dead) = lease.instance.take() {
                self.release(dead);
            }
            return None;
        }
        FunctionMetrics::inc(&self.metrics.invocations);
        let result = match outcome {
            Outcome::Success(body) => Ok(body),
            Outcome::FunctionError { body, error_type } => Err((body, error_type)),
            Outcome::Timeout => Err(self.timed_out(instance, &request_id)),
            Outcome::Exited(info) => Err(self.exited(instance, &request_id, &info.to_string())),
            Outcome::NotDelivered => Err(self.exited(
                instance,
                &request_id,
                "the runtime exited before taking the event",
            )),
        };
        if result.is_err() {
            FunctionMetrics::inc(&self.metrics.errors);
        }
        let log_tail = self.end(instance, &request_id, started, lease.cold).await;
        Some(InvokeResult {
            request_id,
            result,
            log_tail,
        })
    }

    /// Sends one HTTP request to a FastCGI (web) instance. As with [`Self::invoke`], the
    /// exchange runs in its own task: a FastCGI request cut off half-way would leave the
    /// worker's connection unusable.
    /// Runs one web request; `request_id` is the one PHP was given (`LAMBDA_REQUEST_ID`), so
    /// its log lines carry the same id.
    pub async fn http(
        self: &Arc<Self>,
        request_id: String,
        params: Params,
        body: Bytes,
    ) -> Result<WebResult, AcquireError> {
        let lease = match self.acquire().await {
            Ok(l) => l,
            Err(AcquireError::Throttled) => {
                FunctionMetrics::inc(&self.metrics.throttles);
                return Err(AcquireError::Throttled);
            }
            Err(AcquireError::Start(e)) => {
                let r = self.init_failure(&request_id, e);
                let message = r
                    .result
                    .err()
                    .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                return Ok(WebResult {
                    request_id,
                    outcome: WebOutcome::Crashed(message),
                });
            }
        };
        let pool = self.clone();
        let id = request_id.clone();
        match tokio::spawn(async move { pool.exchange(lease, id, params, body).await }).await {
            Ok(r) => Ok(r),
            Err(e) => Ok(WebResult {
                request_id,
                outcome: WebOutcome::Crashed(e.to_string()),
            }),
        }
    }

    async fn exchange(
        self: Arc<Self>,
        lease: Lease,
        request_id: String,
        params: Params,
        body: Bytes,
    ) -> WebResult {
        let Some(instance) = lease.instance() else {
            return WebResult {
                request_id,
                outcome: WebOutcome::Crashed("no instance".into()),
            };
        };
        FunctionMetrics::inc(&self.metrics.invocations);
        let started = Instant::now();
        self.begin(instance, &request_id);
        let outcome = match instance.fastcgi(&params, &body, self.spec.timeout).await {
            Ok(raw) => WebOutcome::Response(raw),
            Err(FcgiFailure::Timeout) => {
                self.timed_out(instance, &request_id);
                WebOutcome::Timeout
            }
            Err(other) => {
                let msg = other.to_string();
                self.exited(instance, &request_id, &msg);
                WebOutcome::Crashed(msg)
            }
        };
        if !matches!(outcome, WebOutcome::Response(_)) {
            FunctionMetrics::inc(&self.metrics.errors);
        }
        if let WebOutcome::Response(raw) = &outcome {
            for line in String::from_utf8_lossy(&raw.stderr).lines() {
                instance.output_line(tusk_logs::LogStream::Stderr, line);
            }
        }
        self.end(instance, &request_id, started, lease.cold).await;
        WebResult {
            request_id,
            outcome,
        }
    }

    fn begin(&self, instance: &Instance, request_id: &str) {
        instance.begin(request_id);
        instance.platform_line(&format!(
            "START RequestId: {request_id} Version: {}",
            self.spec.version
        ));
    }

    /// Writes END and REPORT and returns the invocation's log tail.
    async fn end(
        &self,
        instance: &Instance,
        request_id: &str,
        started: Instant,
        cold: bool,
    ) -> String {
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        instance.drain().await;
        instance.platform_line(&format!("END RequestId: {request_id}"));
        let mut report = format!(
            "REPORT RequestId: {request_id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            duration_ms.ceil().max(1.0) as u64,
            self.spec.memory_mb,
            instance.max_memory_used_mb(),
        );
        if cold {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                instance.init_duration.as_secs_f64() * 1000.0
            ));
        }
        instance.platform_line(&report);
        self.metrics.observe(duration_ms);
        instance.take_log_tail()
    }

    fn timed_out(&self, instance: &Instance, request_id: &str) -> (Bytes, String) {
        FunctionMetrics::inc(&self.metrics.timeouts);
        let msg = format!(
            "Task timed out after {:.2} seconds",
            self.spec.timeout.as_secs_f64()
        );
        instance.platform_line(&format!("{} {request_id} {msg}", iso_now()));
        (
            error_body(
                "Sandbox.Timedout",
                format!("RequestId: {request_id} Error: {msg}"),
            ),
            "Sandbox.Timedout".to_string(),
        )
    }

    fn exited(&self, instance: &Instance, request_id: &str, why: &str) -> (Bytes, String) {
        let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {why}");
        instance.platform_line(&msg);
        (
            error_body("Runtime.ExitError", msg),
            "Runtime.ExitError".to_string(),
        )
    }
}

fn trace_id(request_id: &str) -> String {
    let hex: String = request_id.chars().filter(|c| *c != '-').take(24).collect();
    format!("Root=1-{:08x}-{hex};Sampled=0", now_ms() / 1000)
}

fn iso_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLogs;
    impl LogSink for NoLogs {
        fn log(&self, _: &str, _: Option<&str>, _: tusk_logs::LogStream, _: &str) {}
    }

    fn pool(reserved: Option<u32>, provisioned: u32) -> Arc<FunctionPool> {
        let spec = LaunchSpec {
            function_name: format!("svc-dev-f{reserved:?}"),
            version: "1".into(),
            kind: tusk_manifest::RuntimeKind::PhpFunction,
            handler: "index.php".into(),
            code_dir: "/nonexistent".into(),
            memory_mb: 128,
            timeout: Duration::from_secs(1),
            environment: Default::default(),
            region: "us-east-1".into(),
            function_arn: "arn".into(),
            php_runtime_dir: "/nonexistent".into(),
            run_dir: "/nonexistent".into(),
            php_cli: "/nonexistent".into(),
            php_cgi: "/nonexistent".into(),
            max_invocations: 0,
            ephemeral_mb: 0,
            network: Default::default(),
            sandbox: Arc::new(tusk_sandbox::Sandbox::off()),
            volumes: Vec::new(),
        };
        let limits = PoolLimits {
            default_max_instances: 8,
            queue_limit: 10,
            queue_wait: Duration::from_millis(50),
            idle_timeout: Duration::from_secs(60),
        };
        Arc::new(FunctionPool::new(
            Arc::new(spec),
            reserved,
            provisioned,
            limits,
            Arc::new(NoLogs),
            Arc::default(),
        ))
    }

    async fn take(pool: &Arc<FunctionPool>, n: usize) -> Vec<Slot> {
        let mut slots = Vec::new();
        for _ in 0..n {
            slots.push(pool.slot().await.expect("a free slot"));
        }
        slots
    }

    #[tokio::test]
    async fn growing_frees_slots_at_once() {
        let pool = pool(Some(4), 0);
        assert_eq!((pool.max_concurrency(), pool.share()), (4, 4));
        pool.set_share(1);
        let held = take(&pool, 1).await;
        assert!(pool.saturated());
        assert!(matches!(pool.slot().await, Err(AcquireError::Throttled)));
        pool.set_share(3);
        assert_eq!((pool.share(), pool.free_slots()), (3, 2));
        // Configured max is unchanged: the share is what the node may run.
        assert_eq!(pool.max_concurrency(), 4);
        drop(held);
        assert_eq!(pool.free_slots(), 3);
    }

    #[tokio::test]
    async fn growing_wakes_a_waiting_request() {
        let pool = pool(Some(2), 0);
        pool.set_share(0);
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.slot().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        pool.set_share(1);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn shrinking_takes_busy_slots_back_as_they_end() {
        let pool = pool(Some(4), 0);
        let mut held = take(&pool, 3).await;
        assert_eq!(pool.free_slots(), 1);
        // One free slot goes now; two of the busy ones are owed.
        pool.set_share(1);
        assert_eq!((pool.share(), pool.free_slots()), (1, 0));
        assert_eq!(pool.debt.load(Ordering::Acquire), 2);
        held.pop();
        assert_eq!(
            (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
            (0, 1)
        );
        held.pop();
        assert_eq!(
            (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
            (0, 0)
        );
        // The debt is repaid: the last slot to end is free again, and only one.
        held.pop();
        assert_eq!(pool.free_slots(), 1);
        let again = take(&pool, 1).await;
        assert!(pool.saturated());
        drop(again);
        assert_eq!(pool.free_slots(), 1);
    }

    #[tokio::test]
    async fn growing_cancels_what_a_shrink_still_owes() {
        let pool = pool(Some(4), 0);
        let held = take(&pool, 4).await;
        pool.set_share(1);
        assert_eq!(pool.debt.load(Ordering::Acquire), 3);
        pool.set_share(3);
        assert_eq!(
            (pool.debt.load(Ordering::Acquire), pool.free_slots()),
            (1, 0)
        );
        drop(held);
        assert_eq!(
            (pool.debt.load(Ordering::Acquire), pool.free_slots()),
            (0, 3)
        );
        pool.set_share(0);
        assert_eq!(
            (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
            (0, 0)
        );
        assert!(pool.saturated());
    }

    #[tokio::test]
    async fn starts_and_provisioned_instances_follow_the_share() {
        let pool = pool(Some(4), 3);
        assert_eq!(pool.provisioned(), 3);
        pool.set_share(1);
        assert_eq!(pool.provisioned(), 1);
        assert!(pool.reserve_start());
        // One start in progress fills a share of one.
        assert!(!pool.reserve_start());
        pool.set_share(0);
        assert_eq!(pool.provisioned(), 0);
    }

    #[test]
    fn reserved_concurrency_is_split_over_the_nodes() {
        use crate::Placement;
        let shares = |reserved, nodes| -> Vec<usize> {
            (0..nodes)
                .map(|index| Placement { index, nodes }.share_of(reserved))
                .collect()
        };
        assert_eq!(shares(2, 3), vec![1, 1, 0]);
        assert_eq!(shares(3, 3), vec![1, 1, 1]);
        assert_eq!(shares(7, 3), vec![3, 2, 2]);
        assert_eq!(shares(1, 1), vec![1]);
        assert_eq!(shares(0, 2), vec![0, 0]);
        assert_eq!(Placement::ALONE.share_of(5), 5);
        for (reserved, nodes) in [(2, 3), (10, 4), (5, 5), (1, 7)] {
            assert_eq!(shares(reserved, nodes).iter().sum::<usize>(), reserved);
        }
    }

    #[test]
    fn the_dispatcher_fits_only_reserved_pools() {
        let dispatcher = crate::Dispatcher::default();
        let reserved = pool(Some(2), 0);
        let default = pool(None, 0);
        dispatcher.fit(&reserved);
        dispatcher.fit(&default);
        assert_eq!((reserved.share(), default.share()), (2, 8));
        dispatcher.set_placement(crate::Placement { index: 2, nodes: 3 });
        // Not in the dispatcher yet: a pool added later is fitted by `swap`.
        assert_eq!(reserved.share(), 2);
        dispatcher.swap(&[], vec![reserved.clone(), default.clone()]);
        assert_eq!((reserved.share(), default.share()), (0, 8));
        dispatcher.set_placement(crate::Placement { index: 0, nodes: 2 });
        assert_eq!((reserved.share(), default.share()), (1, 8));
    }
}
