use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the duration histogram's buckets.
pub const DURATION_BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 30000.0,
];

/// Counters for one function, rendered by the gateway as Prometheus text.
#[derive(Default)]
pub struct FunctionMetrics {
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    pub throttles: AtomicU64,
    pub timeouts: AtomicU64,
    pub cold_starts: AtomicU64,
    pub duration_count: AtomicU64,
    pub duration_sum_us: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    pub duration_buckets: [AtomicU64; DURATION_BUCKETS_MS.len() + 1],
}

impl FunctionMetrics {
    pub fn observe(&self, duration_ms: f64) {
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add((duration_ms * 1000.0) as u64, Ordering::Relaxed);
        let slot = DURATION_BUCKETS_MS
            .iter()
            .position(|b| duration_ms <= *b)
            .unwrap_or(DURATION_BUCKETS_MS.len());
        self.duration_buckets[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
