//! [`Queues`]: the one place that decides where a queue operation runs. Internal queues
//! (`async:FUNCTION`, a node's own async invocations) and schedule state always stay in the
//! node's [`QueueDb`]; user queues (`sqs` events, the SQS API, `tusk queue`, queue
//! destinations) go to the [`SharedQueues`] when the node is one of a cluster, to the
//! [`QueueDb`] otherwise. Callers never make that choice themselves.
//!
//! Never holds queue logic of its own: ordering, visibility and redrive belong to the two
//! implementations.

use crate::queue_db::{
    is_internal, Message, NewMessage, QueueConfig, QueueDb, QueueError, QueueStats, Retry,
    ScheduleState,
};
use crate::BoxFuture;
use std::sync::{Arc, OnceLock};

/// The user-queue operations as a cluster implements them (NATS JetStream in `tusk_cluster`):
/// the second implementation of [`QueueDb`]'s user-facing half.
pub trait SharedQueues: Send + Sync + 'static {
    /// Creates a queue, or replaces its settings.
    fn create_queue(&self, config: QueueConfig) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Deletes a queue and its messages; false when there was no such queue.
    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, QueueError>>;
    /// One queue's settings (none when it does not exist).
    fn queue<'a>(&'a self, name: &'a str)
        -> BoxFuture<'a, Result<Option<QueueConfig>, QueueError>>;
    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueConfig>, QueueError>>;
    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>>;
    /// Stores `messages`; returns their ids once stored.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<String>, QueueError>>;
    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        visibility_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Message>, QueueError>>;
    /// Deletes a received message; false when the receipt is not (or no longer) valid.
    fn delete<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;
    /// Makes a received message visible again after `delay_ms`.
    fn change_visibility<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
        delay_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;
    /// Drops every message of a queue.
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), QueueError>>;
}

/// The node's queues: its [`QueueDb`] and, in a cluster, the [`SharedQueues`] that hold user
/// queues. Cheap to clone.
#[derive(Clone)]
pub struct Queues {
    local: QueueDb,
    shared: Arc<OnceLock<Arc<dyn SharedQueues>>>,
}

impl Queues {
    /// Every queue in `local` until [`Queues::set_shared`] is called.
    pub fn new(local: QueueDb) -> Queues {
        Queues {
            local,
            shared: Arc::new(OnceLock::new()),
        }
    }

    /// Keeps user queues in `shared` from now on (a cluster); call once, at start-up.
    pub fn set_shared(&self, shared: Arc<dyn SharedQueues>) {
        if self.shared.set(shared).is_err() {
            tracing::warn!("shared queues were already set");
        }
    }

    /// The shared queues when `queue` lives there: a user queue on a node of a cluster.
    fn shared_for(&self, queue: &str) -> Option<&Arc<dyn SharedQueues>> {
        if is_internal(queue) {
            return None;
        }
        self.shared.get()
    }

    /// Creates a queue, or replaces its settings (internal ones always here).
    pub async fn create_queue(&self, config: QueueConfig) -> Result<(), QueueError> {
        match self.shared.get() {
            Some(shared) if !config.internal => shared.create_queue(config).await,
            _ => self.local.create_queue(config).await,
        }
    }

    /// Deletes a queue and its messages; false when there was no such queue.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        match self.shared_for(name) {
            Some(shared) => shared.delete_queue(name).await,
            None => self.local.delete_queue(name).await,
        }
    }

    /// One queue's settings (none when it does not exist).
    pub async fn queue(&self, name: &str) -> Result<Option<QueueConfig>, QueueError> {
        match self.shared_for(name) {
            Some(shared) => shared.queue(name).await,
            None => self.local.queue(name).await,
        }
    }

    /// Every queue: the node's internal ones, and the user queues wherever they live.
    pub async fn queues(&self) -> Result<Vec<QueueConfig>, QueueError> {
        let mut local = self.local.queues().await?;
        let Some(shared) = self.shared.get() else {
            return Ok(local);
        };
        let remote = shared.queues().await?;
        local.retain(|q| q.internal);
        local.extend(remote);
        Ok(local)
    }

    /// Every queue's depth, as [`Queues::queues`] lists them.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let mut local = self.local.stats().await?;
        let Some(shared) = self.shared.get() else {
            return Ok(local);
        };
        let remote = shared.stats().await?;
        local.retain(|q| q.internal);
        local.extend(remote);
        Ok(local)
    }

    /// Stores `messages`; returns their ids once durable.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, QueueError> {
        match self.shared_for(queue) {
            Some(shared) => shared.send(queue, messages).await,
            None => self.local.send(queue, messages).await,
        }
    }

    /// Hands out up to `max` visible messages, hidden for `visibility_ms`.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        match self.shared_for(queue) {
            Some(shared) => shared.receive(queue, max, visibility_ms).await,
            None => self.local.receive(queue, max, visibility_ms).await,
        }
    }

    /// Deletes a received message; false when the receipt is not (or no longer) valid.
    pub async fn delete(&self, queue: &str, receipt: &str) -> Result<bool, QueueError> {
        match self.shared_for(queue) {
            Some(shared) => shared.delete(queue, receipt).await,
            None => self.local.delete(queue, receipt).await,
        }
    }

    /// Puts a received message back after `retry.delay_ms`. Shared queues keep neither the
    /// error nor new attributes: only the delay applies there.
    pub async fn retry(
        &self,
        queue: &str,
        receipt: &str,
        retry: Retry,
    ) -> Result<bool, QueueError> {
        match self.shared_for(queue) {
            Some(shared) => {
                shared
                    .change_visibility(queue, receipt, retry.delay_ms)
                    .await
            }
            None => self.local.retry(queue, receipt, retry).await,
        }
    }

    /// SQS's ChangeMessageVisibility: visible again after `delay_ms`.
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        delay_ms: u64,
    ) -> Result<bool, QueueError> {
        let retry = Retry {
            delay_ms,
            ..Retry::default()
        };
        self.retry(queue, receipt, retry).await
    }

    /// Finishes a message of an internal queue: deletes it and sends `then_send` (its
    /// destinations), atomically when they are all local. False, sending nothing, when the
    /// receipt is unknown.
    pub async fn complete(
        &self,
        queue: &str,
        receipt: &str,
        then_send: Vec<(String, NewMessage)>,
    ) -> Result<bool, QueueError> {
        let Some(shared) = self.shared.get() else {
            return self.local.complete(queue, receipt, then_send).await;
        };
        // Not atomic across the two stores: the local part commits first, so a crash in
        // between loses the user-queue records, never the event's outcome twice.
        let (remote, local): (Vec<_>, Vec<_>) =
            then_send.into_iter().partition(|(q, _)| !is_internal(q));
        let done = self.local.complete(queue, receipt, local).await?;
        if done {
            for (queue, message) in remote {
                shared.send(&queue, vec![message]).await?;
            }
        }
        Ok(done)
    }

    /// Drops every message of a queue.
    pub async fn purge(&self, queue: &str) -> Result<(), QueueError> {
        match self.shared_for(queue) {
            Some(shared) => shared.purge(queue).await,
            None => self.local.purge(queue).await,
        }
    }

    /// At start-up: make this node's internal messages visible again (always local).
    pub async fn release_internal(&self) -> Result<(), QueueError> {
        self.local.release_internal().await
    }

    /// A schedule's state on this node (always local; a cluster anchors schedules through
    /// the async transport).
    pub async fn schedule_state(
        &self,
        key: &str,
        anchor_ms: i64,
    ) -> Result<ScheduleState, QueueError> {
        self.local.schedule_state(key, anchor_ms).await
    }

    /// Records a schedule tick and the internal messages it sends (always local).
    pub async fn fire(
        &self,
        key: &str,
        fire_ms: i64,
        missed: u64,
        send: Vec<(String, NewMessage)>,
    ) -> Result<bool, QueueError> {
        self.local.fire(key, fire_ms, missed, send).await
    }
}

#[cfg(test)]
#[path = "queues_tests.rs"]
mod tests;
