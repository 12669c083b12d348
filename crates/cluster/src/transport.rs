//! [`JetStreamTransport`]: async invocations in the `TUSK_ASYNC` work-queue stream.
//!
//! Every node pulls from one durable consumer per function, only as many events as it has
//! free slots for, and acks an event only after its outcome is stored: success and its
//! destination record published, or the retry published as a new message (attempt + 1,
//! not before its delay). A node that dies holding events never acks them; JetStream hands
//! them to another node once `AckWait` (the function's timeout + 10 s) has passed.

use crate::{js_err, Cluster, ClusterError, ASYNC_STREAM};
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use sha2::Digest;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tusk_events::queue_db::{now_ms, NewMessage, QueueError};
use tusk_events::{
    AsyncInvocation, AsyncTransport, BoxFuture, Decision, EventEngine, FunctionEventConfig,
};

const H_ID: &str = "Tusk-Request-Id";
const H_ATTEMPT: &str = "Tusk-Attempt";
const H_SENT: &str = "Tusk-Sent-Ms";
const H_NOT_BEFORE: &str = "Tusk-Not-Before-Ms";

/// Time an event may stay unacked beyond its function's timeout before another node gets it.
pub const ACK_GRACE: Duration = Duration::from_secs(10);
/// How long one pull waits on the server for events.
const FETCH_EXPIRES: Duration = Duration::from_secs(2);
/// How long the client waits for the next event of a pull before giving up on it.
const FETCH_WAIT: Duration = Duration::from_secs(4);
/// How soon a node with no room for a function's events looks again.
const NO_ROOM_WAIT: Duration = Duration::from_millis(100);

pub struct JetStreamTransport {
    cluster: Arc<Cluster>,
}

fn subject(function: &str) -> String {
    format!("tusk.async.{function}")
}

fn queue_err(e: ClusterError) -> QueueError {
    QueueError::cluster("", e)
}

fn header<T: std::str::FromStr>(message: &async_nats::Message, name: &str) -> Option<T> {
    message
        .headers
        .as_ref()?
        .get(name)
        .and_then(|v| v.as_str().parse().ok())
}

impl JetStreamTransport {
    pub fn new(cluster: Arc<Cluster>) -> JetStreamTransport {
        JetStreamTransport { cluster }
    }

    /// Publishes, retrying for a few seconds while the stream fails over (the id keeps a
    /// retry of an event that was stored after all from being stored twice).
    async fn send(
        &self,
        function: &str,
        event: AsyncInvocation,
        dedup_id: String,
    ) -> Result<bool, ClusterError> {
        let mut tries = 0;
        loop {
            match self.send_once(function, &event, &dedup_id).await {
                Ok(first) => return Ok(first),
                Err(e) if tries < 40 => {
                    tries += 1;
                    tracing::debug!(function, error = %e, "async publish failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        function: &str,
        event: &AsyncInvocation,
        dedup_id: &str,
    ) -> Result<bool, ClusterError> {
        let message = PublishMessage::build()
            .payload(event.body.clone().into_bytes().into())
            .message_id(dedup_id)
            .header(H_ID, event.id.as_str())
            .header(H_ATTEMPT, event.attempt.to_string().as_str())
            .header(H_SENT, event.sent_ms.to_string().as_str())
            .header(H_NOT_BEFORE, event.not_before_ms.to_string().as_str());
        let ack = self
            .cluster
            .js
            .send_publish(subject(function), message)
            .await
            .map_err(|e| {
                let what = match e.kind() {
                    PublishErrorKind::StreamNotFound => "the async stream is missing",
                    _ => "cannot publish an async event",
                };
                js_err(what)(e)
            })?
            .await
            .map_err(js_err("the async event was not stored"))?;
        Ok(!ack.duplicate)
    }

    async fn consumer(
        &self,
        function: &str,
        timeout: Duration,
    ) -> Result<Consumer<pull::Config>, ClusterError> {
        let stream = self
            .cluster
            .js
            .get_stream(ASYNC_STREAM)
            .await
            .map_err(js_err("cannot open the async stream"))?;
        let name = format!("async-{function}");
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject(function),
            ack_policy: AckPolicy::Explicit,
            ack_wait: timeout + ACK_GRACE,
            max_deliver: -1,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        // Re-creating a consumer drops the pulls other nodes have waiting on it: only create
        // (or update) it when it is missing or its ack wait no longer fits the function.
        if let Ok(mut existing) = stream.get_consumer::<pull::Config>(&name).await {
            if let Ok(info) = existing.info().await {
                if info.config.ack_wait == config.ack_wait {
                    return Ok(existing);
                }
            }
        }
        match stream.create_consumer(config).await {
            Ok(c) => Ok(c),
            // Another node created it in between: use it as it is.
            Err(first) => stream
                .get_consumer(&name)
                .await
                .map_err(|e| ClusterError::JetStream {
                    what: format!("cannot open the async consumer for {function}"),
                    message: format!("{first}; {e}"),
                }),
        }
    }

    /// Sends a destination record: `async:NAME` to that function (through the cluster),
    /// anything else to the node's queue of that name.
    async fn route(
        &self,
        events: &EventEngine,
        queue: &str,
        message: NewMessage,
    ) -> Result<(), ClusterError> {
        match queue.strip_prefix("async:") {
            Some(function) => {
                let event = AsyncInvocation {
                    id: message.id.clone(),
                    body: message.body,
                    attempt: 0,
                    sent_ms: now_ms(),
                    not_before_ms: 0,
                };
                self.send(function, event, message.id).await.map(|_| ())
            }
            None => {
                events
                    .queues()
                    .send(queue, vec![message])
                    .await
                    .map_err(|e| ClusterError::Io(e.to_string()))?;
                events.poke();
                Ok(())
            }
        }
    }

    async fn handle(
        &self,
        events: &EventEngine,
        config: &FunctionEventConfig,
        message: async_nats::jetstream::Message,
    ) {
        let now = now_ms();
        let event = AsyncInvocation {
            id: header(&message, H_ID).unwrap_or_default(),
            body: String::from_utf8_lossy(&message.payload).into_owned(),
            attempt: header(&message, H_ATTEMPT).unwrap_or(0),
            sent_ms: header(&message, H_SENT).unwrap_or(now),
            not_before_ms: header(&message, H_NOT_BEFORE).unwrap_or(0),
        };
        if event.not_before_ms > now {
            let wait = Duration::from_millis((event.not_before_ms - now) as u64);
            let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
            return;
        }
        let deliveries = message.info().map(|i| i.delivered as u32).unwrap_or(1);
        let outcome = match events.attempt(config, &event, deliveries).await {
            Decision::Complete(sends) => {
                let mut result = Ok(());
                for (queue, m) in sends {
                    if let Err(e) = self.route(events, &queue, m).await {
                        result = Err(e);
                        break;
                    }
                }
                result.map(|()| true)
            }
            Decision::Retry {
                delay,
                attempt,
                error,
            } => {
                tracing::info!(function = %config.function, request_id = %event.id, attempt, error = %error, "async event failed; retrying later");
                let dedup = format!("{}#{attempt}", event.id);
                let retry = AsyncInvocation {
                    attempt,
                    not_before_ms: now_ms() + delay.as_millis() as i64,
                    ..event.clone()
                };
                self.send(&config.function, retry, dedup)
                    .await
                    .map(|_| true)
            }
            Decision::Throttled(backoff) => {
                let _ = message.ack_with(AckKind::Nak(Some(backoff))).await;
                Ok(false)
            }
        };
        match outcome {
            Ok(true) => {
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(request_id = %event.id, error = %e, "cannot ack an async event; it may run again");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(request_id = %event.id, error = %e, "cannot store an async event's outcome; it will run again");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }

    async fn consume_loop(self: Arc<Self>, events: Arc<EventEngine>, function: String) {
        let limit = events.limit_for(&function);
        // Invocations of this function fetched here and not finished yet.
        let running = Arc::new(AtomicUsize::new(0));
        loop {
            let Some(config) = events.config(&function) else {
                // `configure` records the function just after starting this task.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let consumer = match self.consumer(&function, config.timeout).await {
                Ok(c) => {
                    tracing::debug!(function, "taking async events from the cluster");
                    c
                }
                Err(e) => {
                    tracing::warn!(function, error = %e, "async events paused");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                if events.draining() {
                    return;
                }
                // Take only as many events as this node can start now: within its share of
                // the function's instances (none when its share of reservedConcurrency is
                // 0, so the nodes together never run more than that), less the slots sync
                // calls hold and the events fetched that have not taken theirs yet.
                let (share, free) = events.slots(&function);
                let room = free.min(share.saturating_sub(running.load(Ordering::Acquire)));
                if room == 0 {
                    tokio::time::sleep(NO_ROOM_WAIT).await;
                    continue;
                }
                let Ok(first) = limit.clone().acquire_owned().await else {
                    return;
                };
                let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
                while permits.len() < room.min(64) {
                    match limit.clone().try_acquire_owned() {
                        Ok(p) => permits.push(p),
                        Err(_) => break,
                    }
                }
                tracing::trace!(function, slots = permits.len(), "fetching async events");
                let batch = consumer
                    .fetch()
                    .max_messages(permits.len())
                    .expires(FETCH_EXPIRES)
                    .messages()
                    .await;
                tracing::trace!(function, ok = batch.is_ok(), "pull sent");
                let mut batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(function, error = %e, "cannot fetch async events");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                };
                let mut failed = false;
                loop {
                    // A pull request the server forgot (its consumer leader died, or the
                    // consumer was re-created) never expires: bound the wait here too.
                    let message = match tokio::time::timeout(FETCH_WAIT, batch.next()).await {
                        Ok(Some(Ok(m))) => m,
                        Ok(None) => break,
                        Ok(Some(Err(e))) => {
                            tracing::debug!(function, error = %e, "async fetch ended");
                            failed = true;
                            break;
                        }
                        Err(_) => {
                            tracing::debug!(function, "async fetch got no answer");
                            break;
                        }
                    };
                    if events.draining() {
                        // The node is stopping: let another node have it now.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        continue;
                    }
                    tracing::trace!(function, "got an async event");
                    let permit = permits.pop();
                    let transport = self.clone();
                    let work = events.work();
                    let events = events.clone();
                    let config = config.clone();
                    let counted = Counted::new(&running);
                    tokio::spawn(async move {
                        transport.handle(&events, &config, message).await;
                        drop((permit, counted, work));
                    });
                }
                drop(permits);
                if failed {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

/// Counts one running event until dropped (also when its task panics).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncTransport for JetStreamTransport {
    fn publish<'a>(
        &'a self,
        function: &'a str,
        event: AsyncInvocation,
        dedup_id: String,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            self.send(function, event, dedup_id)
                .await
                .map_err(queue_err)
        })
    }

    fn consume(
        self: Arc<Self>,
        events: Arc<EventEngine>,
        function: String,
    ) -> BoxFuture<'static, ()> {
        Box::pin(self.consume_loop(events, function))
    }

    fn depth<'a>(&'a self, function: &'a str) -> BoxFuture<'a, Result<(u64, u64), QueueError>> {
        Box::pin(async move {
            let stream = self
                .cluster
                .js
                .get_stream(ASYNC_STREAM)
                .await
                .map_err(|e| QueueError::cluster("cannot open the async stream", e))?;
            let mut consumer = match stream
                .get_consumer::<pull::Config>(&format!("async-{function}"))
                .await
            {
                Ok(c) => c,
                // No node has taken this function's events yet: none are in flight.
                Err(_) => return Ok((0, 0)),
            };
            let info = consumer
                .info()
                .await
                .map_err(|e| QueueError::cluster("cannot read the async consumer", e))?;
            Ok((info.num_pending, info.num_ack_pending as u64))
        })
    }

    fn schedule_anchor<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<i64, QueueError>> {
        Box::pin(async move {
            // Schedule keys hold characters KV keys may not: use their digest.
            let kv_key = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..16]);
            let store = &self.cluster.schedules;
            if store
                .create(&kv_key, now_ms.to_string().into())
                .await
                .is_ok()
            {
                return Ok(now_ms);
            }
            let value = store
                .get(&kv_key)
                .await
                .map_err(|e| QueueError::cluster("cannot read a schedule anchor", e))?;
            value
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                .ok_or_else(|| QueueError::cluster_msg("a schedule anchor is missing"))
        })
    }
}
