//! The dispatcher and per-function pools: acquire a warm instance or start one, cap concurrency,
//! queue and throttle, time out, recycle, scale to zero, keep provisioned instances warm.

mod launcher;
mod metrics;
mod pool;

pub use launcher::{BoxFuture, InstanceLauncher, Launcher, PoolInstance, Running};
pub use metrics::{FunctionMetrics, DURATION_BUCKETS_MS};
pub use pool::{AcquireError, FunctionPool, InvokeResult, PoolLimits, WebOutcome, WebResult};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Where this node stands among the nodes of its cluster. A function's `reservedConcurrency`
/// is split statically over them, so the nodes together never run more than it at once
/// without asking each other per invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// This node's position in the nodes sorted by URL.
    pub index: usize,
    /// How many nodes are up, this one included.
    pub nodes: usize,
}

impl Placement {
    /// A node on its own: every function gets all of its `reservedConcurrency`.
    pub const ALONE: Placement = Placement { index: 0, nodes: 1 };

    /// This node's part of `reserved`: an even split, the first nodes taking one more each
    /// for the remainder (so the parts add up to `reserved`; with fewer than there are
    /// nodes, the last nodes get none).
    pub fn share_of(&self, reserved: usize) -> usize {
        let nodes = self.nodes.max(1);
        reserved / nodes + usize::from(self.index < reserved % nodes)
    }
}

impl Default for Placement {
    fn default() -> Placement {
        Placement::ALONE
    }
}

/// All live function pools by function name. A deploy swaps a service's pools in one write, so
/// a request sees either the old version or the new one, never a mix.
#[derive(Default)]
pub struct Dispatcher {
    pools: RwLock<HashMap<String, Arc<FunctionPool>>>,
    metrics: RwLock<HashMap<String, Arc<FunctionMetrics>>>,
    placement: Mutex<Placement>,
}

impl Dispatcher {
    pub fn placement(&self) -> Placement {
        self.placement.lock().map(|p| *p).unwrap_or_default()
    }

    /// Records where this node stands in its cluster and resizes every pool to its share.
    pub fn set_placement(&self, placement: Placement) {
        if let Ok(mut current) = self.placement.lock() {
            *current = placement;
        }
        // After the store: a pool `swap` adds meanwhile is either fitted by it with this
        // placement or already in the list below.
        for pool in self.all() {
            self.fit(&pool);
        }
    }

    /// Sizes a pool to this node's share of its `reservedConcurrency` (pools of functions
    /// without one keep the node's default). Call it on a new pool before it runs anything.
    pub fn fit(&self, pool: &FunctionPool) {
        if let Some(reserved) = pool.reserved_concurrency() {
            pool.set_share(self.placement().share_of(reserved));
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<FunctionPool>> {
        self.pools.read().ok()?.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<FunctionPool>> {
        self.pools
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Metrics live per function name, across versions.
    pub fn metrics_for(&self, name: &str) -> Arc<FunctionMetrics> {
        if let Some(m) = self.metrics.read().ok().and_then(|m| m.get(name).cloned()) {
            return m;
        }
        match self.metrics.write() {
            Ok(mut m) => m.entry(name.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    pub fn metrics(&self) -> Vec<(String, Arc<FunctionMetrics>)> {
        let mut v: Vec<_> = self
            .metrics
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Atomically replaces the pools named in `remove` with `add`; retired pools finish their
    /// in-flight work and stop their idle instances.
    pub fn swap(&self, remove: &[String], add: Vec<Arc<FunctionPool>>) {
        let retired: Vec<Arc<FunctionPool>> = match self.pools.write() {
            Ok(mut pools) => {
                let mut old: Vec<_> = remove.iter().filter_map(|n| pools.remove(n)).collect();
                for pool in add {
                    // Again under the lock: the placement may have changed since the pool
                    // was made, and `set_placement` only sees pools already here.
                    self.fit(&pool);
                    if let Some(prev) = pools.insert(pool.name().to_string(), pool) {
                        old.push(prev);
                    }
                }
                old
            }
            Err(_) => Vec::new(),
        };
        for pool in retired {
            pool.retire();
        }
    }

    /// Stops idle instances past their idle time and tops up provisioned concurrency.
    pub async fn maintain(&self) {
        for pool in self.all() {
            pool.reap_idle();
            pool.ensure_provisioned().await;
        }
    }
}

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(p: &std::sync::Arc<crate::FunctionPool>) {
        is_send(p.invoke(bytes::Bytes::new(), None));
        is_send(p.http(
            String::new(),
            tusk_instance::Params::new(),
            bytes::Bytes::new(),
        ));
    }
}
