//! [`JetStreamQueues`]: user queues (`sqs` events, the SQS API, `tusk queue`, queue
//! destinations) shared by every node of a cluster.
//!
//! - a queue's settings: KV bucket `tusk-queues`, one key per queue;
//! - its messages: work-queue stream `TUSK_QUEUES`, subject `tusk.queue.NAME`, read through
//!   one durable pull consumer per queue (`queue-NAME`) whose `AckWait` is the queue's
//!   visibility timeout, shared by every node;
//! - a receipt handle is the message's JetStream ack subject, so any node can delete it or
//!   change its visibility (`-NAK` with a delay keeps it pending until then);
//! - a message received more than `maxReceiveCount` times is published to the dead-letter
//!   queue, then acked.
//!
//! A node that dies holding messages never acks them: JetStream hands them to another node
//! when their visibility timeout ends, as SQS does.

use crate::{js_err, Cluster, ClusterError, QUEUES_BUCKET, QUEUES_STREAM};
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tusk_events::queue_db::{now_ms, Message, NewMessage, QueueConfig, QueueError, QueueStats};
use tusk_events::queues::SharedQueues;
use tusk_events::BoxFuture;

/// How long a delete or visibility change waits for JetStream's answer.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a send keeps retrying while the stream fails over.
const PUBLISH_RETRIES: u32 = 40;

/// A message as stored in the stream: what SQS keeps besides the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    id: String,
    body: String,
    #[serde(default)]
    attributes: serde_json::Value,
    sent_ms: i64,
    /// `DelaySeconds`: not handed out before this time.
    #[serde(default)]
    not_before_ms: i64,
}

pub struct JetStreamQueues {
    cluster: Arc<Cluster>,
    /// Queue settings as last seen in the bucket (kept current by a watch).
    configs: RwLock<HashMap<String, QueueConfig>>,
    consumers: Mutex<HashMap<String, Consumer<pull::Config>>>,
}

fn subject(queue: &str) -> String {
    format!("tusk.queue.{queue}")
}

fn consumer_name(queue: &str) -> String {
    format!("queue-{queue}")
}

fn cluster_err(e: ClusterError) -> QueueError {
    QueueError::cluster("", e)
}

fn err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError::cluster(what, e)
}

/// A receipt must be an ack subject of this queue's consumer: anything else could ack
/// another stream's messages.
fn valid_receipt(queue: &str, receipt: &str) -> bool {
    let consumer = consumer_name(queue);
    receipt.starts_with("$JS.ACK.")
        && receipt
            .split('.')
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == QUEUES_STREAM && w[1] == consumer)
}

impl JetStreamQueues {
    /// Opens the shared queues and starts following their settings.
    pub fn start(cluster: Arc<Cluster>) -> Arc<JetStreamQueues> {
        let queues = Arc::new(JetStreamQueues {
            cluster,
            configs: RwLock::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(queues.clone().follow());
        queues
    }

    fn bucket(&self) -> &kv::Store {
        &self.cluster.queues
    }

    /// Keeps `configs` in step with the bucket, so a queue deleted on another node stops
    /// taking messages here.
    async fn follow(self: Arc<Self>) {
        loop {
            match self.bucket().watch_all().await {
                Ok(mut watch) => {
                    while let Some(entry) = watch.next().await {
                        let Ok(entry) = entry else { break };
                        let mut configs = match self.configs.write() {
                            Ok(c) => c,
                            Err(e) => e.into_inner(),
                        };
                        match entry.operation {
                            kv::Operation::Put => {
                                if let Ok(config) = serde_json::from_slice(&entry.value) {
                                    configs.insert(entry.key, config);
                                }
                            }
                            _ => {
                                configs.remove(&entry.key);
                                if let Ok(mut c) = self.consumers.lock() {
                                    c.remove(&entry.key);
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot follow the queue settings"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn config(&self, queue: &str) -> Result<QueueConfig, QueueError> {
        let cached = self.configs.read().ok().and_then(|c| c.get(queue).cloned());
        if let Some(config) = cached {
            return Ok(config);
        }
        // Created on another node a moment ago: the watch may not have it yet.
        let value = self
            .bucket()
            .get(queue)
            .await
            .map_err(err("cannot read a queue's settings"))?
            .ok_or_else(|| QueueError::NoSuchQueue(queue.to_string()))?;
        let config: QueueConfig =
            serde_json::from_slice(&value).map_err(err("corrupt queue settings"))?;
        if let Ok(mut c) = self.configs.write() {
            c.insert(queue.to_string(), config.clone());
        }
        Ok(config)
    }

    async fn stream(&self) -> Result<stream::Stream, QueueError> {
        self.cluster
            .js
            .get_stream(QUEUES_STREAM)
            .await
            .map_err(err("cannot open the queue stream"))
    }

    /// The queue's consumer, created (or its visibility timeout updated) when needed.
    async fn consumer(&self, config: &QueueConfig) -> Result<Consumer<pull::Config>, QueueError> {
        let cached = self
            .consumers
            .lock()
            .ok()
            .and_then(|c| c.get(&config.name).cloned());
        if let Some(consumer) = cached {
            return Ok(consumer);
        }
        let stream = self.stream().await?;
        let name = consumer_name(&config.name);
        let wanted = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject(&config.name),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(u64::from(config.visibility_timeout_s.max(1))),
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let existing = match stream.get_consumer::<pull::Config>(&name).await {
            Ok(mut c) => match c.info().await {
                Ok(info) if info.config.ack_wait == wanted.ack_wait => Some(c),
                _ => None,
            },
            Err(_) => None,
        };
        let consumer = match existing {
            Some(c) => c,
            None => match stream.create_consumer(wanted).await {
                Ok(c) => c,
                // Another node created it in between.
                Err(first) => stream.get_consumer(&name).await.map_err(|e| {
                    QueueError::cluster(
                        format!(
                            "cannot open the consumer of queue {} ({first})",
                            config.name
                        ),
                        e,
                    )
                })?,
            },
        };
        if let Ok(mut c) = self.consumers.lock() {
            c.insert(config.name.clone(), consumer.clone());
        }
        Ok(consumer)
    }

    /// Publishes and waits until JetStream stored it, retrying for a few seconds while the
    /// stream fails over (the message id keeps a retried publish from being stored twice).
    async fn publish(
        &self,
        queue: &str,
        envelope: &Envelope,
        msg_id: &str,
    ) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(envelope).map_err(err("cannot encode a message"))?;
        let mut tries = 0;
        loop {
            let message = PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(msg_id);
            let stored = async {
                self.cluster
                    .js
                    .send_publish(subject(queue), message)
                    .await
                    .map_err(js_err("cannot publish a queue message"))?
                    .await
                    .map_err(js_err("the queue message was not stored"))
            }
            .await;
            match stored {
                Ok(_) => return Ok(()),
                Err(e) if tries < PUBLISH_RETRIES => {
                    tries += 1;
                    tracing::debug!(queue, error = %e, "queue publish failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(cluster_err(e)),
            }
        }
    }

    /// Sends `+ACK` / `-NAK ...` to a receipt and waits for JetStream to take it.
    async fn answer(&self, receipt: &str, payload: String) -> Result<bool, QueueError> {
        let request = self
            .cluster
            .client
            .request(receipt.to_string(), payload.into());
        match tokio::time::timeout(ACK_TIMEOUT, request).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(false),
            Ok(Err(e)) => Err(QueueError::cluster("cannot reach the queue", e)),
            Err(_) => Err(QueueError::cluster_msg(
                "the queue did not answer in time; try again",
            )),
        }
    }

    async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, QueueError> {
        self.config(queue).await?;
        let now = now_ms();
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            let envelope = Envelope {
                id: m.id.clone(),
                body: m.body,
                attributes: m.attributes,
                sent_ms: m.sent_ms.unwrap_or(now),
                not_before_ms: if m.delay_ms > 0 {
                    now + m.delay_ms as i64
                } else {
                    0
                },
            };
            self.publish(queue, &envelope, &m.id).await?;
            ids.push(m.id);
        }
        Ok(ids)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        let config = self.config(queue).await?;
        let consumer = self.consumer(&config).await?;
        let mut batch = match consumer.fetch().max_messages(max.max(1)).messages().await {
            Ok(b) => b,
            Err(e) => {
                // The consumer may have gone with its queue: look again next time.
                if let Ok(mut c) = self.consumers.lock() {
                    c.remove(queue);
                }
                return Err(QueueError::cluster(
                    format!("cannot receive from queue {queue}"),
                    e,
                ));
            }
        };
        let now = now_ms();
        let mut out = Vec::new();
        while let Ok(Some(next)) = tokio::time::timeout(ACK_TIMEOUT, batch.next()).await {
            let Ok(message) = next else { break };
            let Some(receipt) = message.reply.as_ref().map(|r| r.to_string()) else {
                continue;
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) else {
                tracing::warn!(queue, "dropping an unreadable queue message");
                let _ = self.answer(&receipt, "+TERM".into()).await;
                continue;
            };
            let delivered = message
                .info()
                .map(|i| i.delivered.max(1) as u32)
                .unwrap_or(1);
            if envelope.not_before_ms > now {
                // DelaySeconds: hand it out when it is due.
                let wait = Duration::from_millis((envelope.not_before_ms - now) as u64);
                let _ = self.answer(&receipt, nak(wait)).await;
                continue;
            }
            // The delay's hand-back above counted as a delivery.
            let receive_count = if envelope.not_before_ms > 0 && delivered > 1 {
                delivered - 1
            } else {
                delivered
            };
            if config.max_receive_count > 0 && receive_count > config.max_receive_count {
                if let Some(dlq) = &config.dead_letter {
                    let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                    let moved = Envelope {
                        not_before_ms: 0,
                        ..envelope.clone()
                    };
                    self.publish(dlq, &moved, &format!("{}.dlq.{seq}", envelope.id))
                        .await?;
                    self.answer(&receipt, "+ACK".into()).await?;
                    continue;
                }
            }
            if visibility_ms != u64::from(config.visibility_timeout_s.max(1)) * 1000 {
                // A visibility timeout other than the queue's: keep it pending that long.
                let _ = self
                    .answer(&receipt, nak(Duration::from_millis(visibility_ms)))
                    .await;
            }
            out.push(Message {
                queue: queue.to_string(),
                id: envelope.id,
                body: envelope.body,
                attributes: envelope.attributes,
                sent_ms: envelope.sent_ms,
                receive_count,
                receipt,
                last_error: None,
            });
        }
        Ok(out)
    }

    async fn queues(&self) -> Result<Vec<QueueConfig>, QueueError> {
        // The bucket's subjects, from a plain stream-info request: listing keys would need a
        // consumer, which waits out a failover.
        let prefix = format!("$KV.{QUEUES_BUCKET}.");
        let stream = self
            .cluster
            .js
            .get_stream(format!("KV_{QUEUES_BUCKET}"))
            .await
            .map_err(err("cannot list queues"))?;
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(err("cannot list queues"))?;
        let mut names = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(err("cannot list queues"))?;
            if let Some(name) = subject.strip_prefix(&prefix) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // Deleted queues keep a subject (their delete marker) and are skipped here.
            match self.config(&name).await {
                Ok(config) => out.push(config),
                Err(QueueError::NoSuchQueue(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let stream = self.stream().await?;
        let now = now_ms();
        let mut out = Vec::new();
        for config in self.queues().await? {
            let mut stats = QueueStats {
                name: config.name.clone(),
                internal: false,
                dead_letter: config.dead_letter.clone(),
                ..Default::default()
            };
            if let Ok(mut consumer) = self.consumer(&config).await {
                if let Ok(info) = consumer.info().await {
                    stats.visible = info.num_pending;
                    stats.in_flight = info.num_ack_pending as u64;
                    stats.retrying = info.num_redelivered as u64;
                }
            }
            // The stream drops acked messages: its first one on the subject is the oldest.
            if let Ok(first) = stream
                .get_first_raw_message_by_subject(subject(&config.name), 1)
                .await
            {
                if let Ok(envelope) = serde_json::from_slice::<Envelope>(&first.payload) {
                    stats.oldest_age_ms = (now - envelope.sent_ms).max(0) as u64;
                }
            }
            out.push(stats);
        }
        Ok(out)
    }

    async fn create_queue(&self, config: QueueConfig) -> Result<(), QueueError> {
        let value = serde_json::to_vec(&config).map_err(err("cannot encode a queue"))?;
        self.bucket()
            .put(&config.name, value.into())
            .await
            .map_err(err("cannot store a queue's settings"))?;
        if let Ok(mut c) = self.configs.write() {
            c.insert(config.name.clone(), config.clone());
        }
        if let Ok(mut c) = self.consumers.lock() {
            c.remove(&config.name);
        }
        self.consumer(&config).await?;
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        let existed = self.config(name).await.is_ok();
        self.bucket()
            .delete(name)
            .await
            .map_err(err("cannot delete a queue"))?;
        if let Ok(mut c) = self.configs.write() {
            c.remove(name);
        }
        if let Ok(mut c) = self.consumers.lock() {
            c.remove(name);
        }
        let stream = self.stream().await?;
        let _ = stream.delete_consumer(&consumer_name(name)).await;
        stream
            .purge()
            .filter(subject(name))
            .await
            .map_err(err("cannot drop a deleted queue's messages"))?;
        Ok(existed)
    }

    async fn queue(&self, name: &str) -> Result<Option<QueueConfig>, QueueError> {
        match self.config(name).await {
            Ok(config) => Ok(Some(config)),
            Err(QueueError::NoSuchQueue(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<bool, QueueError> {
        if !valid_receipt(queue, receipt) {
            return Ok(false);
        }
        self.answer(receipt, "+ACK".into()).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        delay_ms: u64,
    ) -> Result<bool, QueueError> {
        if !valid_receipt(queue, receipt) {
            return Ok(false);
        }
        let payload = if delay_ms == 0 {
            "-NAK".to_string()
        } else {
            nak(Duration::from_millis(delay_ms))
        };
        self.answer(receipt, payload).await
    }

    async fn purge(&self, queue: &str) -> Result<(), QueueError> {
        self.config(queue).await?;
        self.stream()
            .await?
            .purge()
            .filter(subject(queue))
            .await
            .map_err(err("cannot purge the queue"))?;
        Ok(())
    }
}

fn nak(delay: Duration) -> String {
    format!("-NAK {{\"delay\":{}}}", delay.as_nanos())
}

impl SharedQueues for JetStreamQueues {
    fn create_queue(&self, config: QueueConfig) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(JetStreamQueues::create_queue(self, config))
    }
    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(JetStreamQueues::delete_queue(self, name))
    }
    fn queue<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<QueueConfig>, QueueError>> {
        Box::pin(JetStreamQueues::queue(self, name))
    }
    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueConfig>, QueueError>> {
        Box::pin(JetStreamQueues::queues(self))
    }
    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>> {
        Box::pin(JetStreamQueues::stats(self))
    }
    fn send<'a>(
        &'a self,
        queue: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<String>, QueueError>> {
        Box::pin(JetStreamQueues::send(self, queue, messages))
    }
    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        visibility_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Message>, QueueError>> {
        Box::pin(JetStreamQueues::receive(self, queue, max, visibility_ms))
    }
    fn delete<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(JetStreamQueues::delete(self, queue, receipt))
    }
    fn change_visibility<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
        delay_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(JetStreamQueues::change_visibility(
            self, queue, receipt, delay_ms,
        ))
    }
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(JetStreamQueues::purge(self, queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_must_belong_to_the_queue() {
        let good = "$JS.ACK.TUSK_QUEUES.queue-jobs.1.42.7.1732000000000000000.0";
        assert!(valid_receipt("jobs", good));
        assert!(!valid_receipt("other", good));
        assert!(!valid_receipt(
            "jobs",
            "$JS.ACK.TUSK_ASYNC.async-f.1.42.7.1732000000000000000.0"
        ));
        assert!(!valid_receipt("jobs", "queue-jobs"));
        // The newer ack subject format carries a domain and an account hash first.
        assert!(valid_receipt(
            "jobs",
            "$JS.ACK._.ACCHASH.TUSK_QUEUES.queue-jobs.1.42.7.1732000000000000000.0.token"
        ));
    }
}
