//! What the events engine needs from a function: run one payload through it and learn how
//! many instances it may run here. The node implements it over its pools; tests implement it
//! with fakes, so retries, throttling and redrive are tested without PHP.
//!
//! It must never grow transport details (HTTP, FastCGI, wire formats): events only hand
//! JSON payloads to functions and read their JSON answers.

use crate::BoxFuture;
use bytes::Bytes;

/// The outcome of one synchronous invocation, as far as events care.
#[derive(Debug)]
pub enum Invoked {
    /// The function returned this payload.
    Response(Bytes),
    /// The function (or its runtime) failed: the error JSON and its `errorType`.
    FunctionError { body: Bytes, error_type: String },
    /// No instance was free and the wait queue was full or timed out: not a failure of the
    /// function, the event is tried again later as the same attempt.
    Throttled,
    /// No instance could be started.
    StartFailed(Box<dyn std::error::Error + Send + Sync>),
    /// The function has no pool on this node (it was removed).
    NoSuchFunction,
}

/// Runs functions for the events engine (async invocations, schedules, queues).
pub trait Invoker: Send + Sync + 'static {
    /// Runs `payload` through `function` once and waits for the outcome.
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Invoked>;
    /// The function's configured most instances (`reservedConcurrency` or the node's
    /// default); `None` when it has no pool here.
    fn max_concurrency(&self, function: &str) -> Option<usize>;
    /// `(share, free)`: how many instances of `function` this node runs at once now (its
    /// share of `reservedConcurrency` in a cluster) and how many slots are free; `None` when
    /// it has no pool here.
    fn slots(&self, function: &str) -> Option<(usize, usize)>;
}
