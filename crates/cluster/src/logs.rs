//! [`JetStreamLogStore`]: function logs of a cluster in stream `TUSK_LOGS`
//! (`tusk.logs.FUNCTION`), written by every node and read by `tusk logs` on any node.
//!
//! There is no pruning here: the stream's `max_age` (the node's `--log-retention-hours`, set
//! where the stream is created in [`crate::Cluster::connect`]) makes JetStream drop old lines.

use crate::{block_on, js_err, Cluster, ClusterError, LOGS_STREAM};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::DirectGetErrorKind;
use std::sync::Arc;
use std::time::Duration;
use tusk_store::{LogLine, LogStore, NewLogLine, StoreError};

pub struct JetStreamLogStore {
    cluster: Arc<Cluster>,
    runtime: tokio::runtime::Handle,
    /// Unique per process: with `log_seq` it names every log line (de-duplication of retries).
    node_id: String,
    log_seq: std::sync::atomic::AtomicU64,
}

impl JetStreamLogStore {
    pub fn new(cluster: Arc<Cluster>, runtime: tokio::runtime::Handle) -> JetStreamLogStore {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        JetStreamLogStore {
            cluster,
            runtime,
            node_id: format!("{:x}-{}", started, std::process::id()),
            log_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Publishes a batch of lines, retrying the ones not stored (e.g. while the stream elects
    /// a new leader after a NATS server died) for up to a minute. Every line carries an id, so
    /// a retry of a line that was stored after all is dropped by JetStream.
    async fn publish_logs(&self, lines: &[NewLogLine]) -> Result<(), ClusterError> {
        let mut pending: Vec<(String, &NewLogLine)> =
            lines.iter().map(|l| (self.next_log_id(), l)).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut acks = Vec::with_capacity(pending.len());
            let mut last_error = None;
            for (id, line) in &pending {
                let payload =
                    serde_json::to_vec(line).map_err(|e| ClusterError::Io(e.to_string()))?;
                let message = PublishMessage::build()
                    .payload(payload.into())
                    .message_id(id.as_str());
                let ack = self
                    .cluster
                    .js
                    .send_publish(format!("tusk.logs.{}", line.function), message)
                    .await;
                acks.push(ack);
            }
            let mut failed = Vec::new();
            for ((id, line), ack) in pending.into_iter().zip(acks) {
                let stored = match ack {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = stored {
                    last_error = Some(e);
                    failed.push((id, line));
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::JetStream {
                    what: format!("{} log lines were not stored", failed.len()),
                    message: last_error.unwrap_or_default(),
                });
            }
            pending = failed;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn next_log_id(&self) -> String {
        let n = self
            .log_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.node_id)
    }

    /// [`Self::read_logs_once`], tried again while the cluster fails over.
    async fn read_logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, ClusterError> {
        let mut tries = 0;
        loop {
            match self
                .read_logs_once(function, since_ms, after_id, limit)
                .await
            {
                Ok(lines) => return Ok(lines),
                Err(e) if tries < 4 => {
                    tries += 1;
                    tracing::debug!(function, error = %e, "cannot read logs; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads with JetStream's direct get (served by any replica), one line per request, so
    /// reading needs no consumer: nats-server 2.9 may place an ephemeral consumer on a peer
    /// that is down, and then the read times out.
    async fn read_logs_once(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, ClusterError> {
        let mut stream = self
            .cluster
            .js
            .get_stream(LOGS_STREAM)
            .await
            .map_err(js_err("cannot open the log stream"))?;
        let state = stream
            .info()
            .await
            .map_err(js_err("cannot open the log stream"))?
            .state
            .clone();
        let mut out = Vec::new();
        if state.messages == 0 || limit == 0 {
            return Ok(out);
        }
        let mut next = if after_id > 0 {
            after_id as u64 + 1
        } else {
            self.first_at_or_after(&stream, state.first_sequence, state.last_sequence, since_ms)
                .await
        };
        let subject = format!("tusk.logs.{function}");
        while out.len() < limit && next <= state.last_sequence {
            let message = match stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(js_err("cannot read the log stream")(e)),
            };
            next = message.sequence + 1;
            if let Ok(line) = serde_json::from_slice::<NewLogLine>(&message.payload) {
                if line.ts_ms >= since_ms {
                    LogLine {
                        id: message.sequence as i64,
                        ts_ms: line.ts_ms,
                        request_id: line.request_id,
                        stream: line.stream,
                        line: line.line,
                    }
                    .push_expanded(&mut out);
                }
            }
        }
        Ok(out)
    }

    /// The first sequence stored at or after `since_ms` (a binary search over the stream).
    async fn first_at_or_after(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        first: u64,
        last: u64,
        since_ms: i64,
    ) -> u64 {
        if since_ms <= 0 {
            return first;
        }
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at_ms = match stream.direct_get(mid).await {
                Ok(m) => (m.time.unix_timestamp_nanos() / 1_000_000) as i64,
                // A gap (or a hiccup): scanning from lower down is always correct.
                Err(_) => return lo,
            };
            if at_ms < since_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl LogStore for JetStreamLogStore {
    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        block_on(
            &self.runtime,
            "cannot publish log lines",
            self.publish_logs(lines),
        )
    }

    fn logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        block_on(
            &self.runtime,
            "cannot read logs",
            self.read_logs(function, since_ms, after_id, limit),
        )
    }
}
