//! One function version's instances: lease an idle one or start one (scale from zero, at most
//! its share of instances and a few starts at once), queue callers when all are busy and
//! throttle them when the queue is full or they waited too long, take instances back after
//! use, reap idle ones, keep provisioned ones warm, and stop them all on retirement.
//!
//! It decides *when* instances start, serve and stop, never *how*: starting one is the
//! [`Launcher`]'s job, running work on one is in [`run`]. It must never block an async
//! thread, cut a running request off when it shrinks, or hand one instance to two callers.

mod run;

pub use run::{InvokeResult, WebOutcome, WebResult};

use crate::launcher::{InstanceLauncher, Launcher, Running};
use crate::metrics::FunctionMetrics;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tusk_instance::{LaunchSpec, LogSink, StartError};

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
    launcher: Arc<dyn Launcher>,
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
    idle: Mutex<Vec<Running>>,
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
    instance: Option<Running>,
    cold: bool,
    _slot: Slot,
}

impl Lease {
    fn instance(&self) -> Option<&Running> {
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

impl FunctionPool {
    pub fn new(
        spec: Arc<LaunchSpec>,
        reserved_concurrency: Option<u32>,
        provisioned: u32,
        limits: PoolLimits,
        logs: Arc<dyn LogSink>,
        metrics: Arc<FunctionMetrics>,
    ) -> FunctionPool {
        let launcher = Arc::new(InstanceLauncher { logs: logs.clone() });
        FunctionPool::with_launcher(
            spec,
            reserved_concurrency,
            provisioned,
            limits,
            logs,
            metrics,
            launcher,
        )
    }

    /// A pool whose instances `launcher` starts (the node's starts real ones; tests, fakes).
    pub fn with_launcher(
        spec: Arc<LaunchSpec>,
        reserved_concurrency: Option<u32>,
        provisioned: u32,
        limits: PoolLimits,
        logs: Arc<dyn LogSink>,
        metrics: Arc<FunctionMetrics>,
        launcher: Arc<dyn Launcher>,
    ) -> FunctionPool {
        let max = reserved_concurrency
            .map(|r| r as usize)
            .unwrap_or(limits.default_max_instances);
        FunctionPool {
            spec,
            launcher,
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
        let mut own_start: Option<oneshot::Receiver<Result<Running, StartError>>> = None;
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

    fn lease(self: &Arc<Self>, instance: Running, slot: Slot) -> Lease {
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
    fn spawn_start(self: &Arc<Self>) -> oneshot::Receiver<Result<Running, StartError>> {
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
    fn pop_idle(&self) -> Option<Running> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(instance) = idle.pop() {
            if instance.is_alive() && !instance.exhausted() {
                return Some(instance);
            }
            self.alive.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    async fn start_instance(&self) -> Result<Running, StartError> {
        let instance = self.launcher.launch(self.spec.clone()).await?;
        self.alive.fetch_add(1, Ordering::Relaxed);
        FunctionMetrics::inc(&self.metrics.cold_starts);
        Ok(instance)
    }

    fn release(&self, instance: Running) {
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
        let drained: Vec<Running> = self
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
}

#[cfg(test)]
mod tests;
