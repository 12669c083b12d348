//! The events engine's [`tusk_events::Invoker`] over this node's pools: the one place that
//! knows both, so neither crate depends on the other. It only translates; every decision
//! (queueing, throttling, retries) stays in the pool and in events.

use bytes::Bytes;
use std::sync::Arc;
use tusk_events::{BoxFuture, Invoked, Invoker};
use tusk_pool::{AcquireError, Dispatcher};

pub struct PoolInvoker(pub Arc<Dispatcher>);

impl Invoker for PoolInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Invoked> {
        Box::pin(async move {
            let Some(pool) = self.0.get(function) else {
                return Invoked::NoSuchFunction;
            };
            match pool.invoke(payload, None).await {
                Err(AcquireError::Throttled) => Invoked::Throttled,
                Err(AcquireError::Start(e)) => Invoked::StartFailed(Box::new(e)),
                Ok(result) => match result.result {
                    Ok(response) => Invoked::Response(response),
                    Err((body, error_type)) => Invoked::FunctionError { body, error_type },
                },
            }
        })
    }

    fn max_concurrency(&self, function: &str) -> Option<usize> {
        self.0.get(function).map(|p| p.max_concurrency())
    }

    fn slots(&self, function: &str) -> Option<(usize, usize)> {
        self.0.get(function).map(|p| (p.share(), p.free_slots()))
    }
}
