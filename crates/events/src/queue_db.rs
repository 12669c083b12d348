//! [`QueueDb`]: the events engine's durable queues in SQLite (`DATA_DIR/events.db`: async
//! invocations, schedule anchors, user queues), owned by one writer thread that commits in
//! groups: every operation that arrives while a transaction is being written joins the next
//! one, so a burst of sends costs one fsync, and a send is acknowledged only after its commit.
//! Not the node's registry or logs (those are `tusk_store`'s), and never a cluster's queues
//! (the [`crate::queues::Queues`] router sends those elsewhere).
//!
//! Over 600 lines on purpose: every operation's SQL sits next to the schema it relies on.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Boxed error kept as the source of a [`QueueError::Cluster`], so its type survives the crate
/// boundary (the cluster's `ClusterError`, a NATS error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("queue {0} does not exist")]
    NoSuchQueue(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the queue store has stopped")]
    Stopped,
    /// A shared (cluster) queue or the async transport failed: what was being done, and the
    /// cluster's own error when there is one.
    #[error("cluster: {}", join_context(.context, .source))]
    Cluster {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl QueueError {
    /// A cluster failure while doing `context`, caused by `source`.
    pub fn cluster(context: impl Into<String>, source: impl Into<BoxError>) -> QueueError {
        QueueError::Cluster {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A cluster failure with no underlying error (a timeout, a missing record).
    pub fn cluster_msg(context: impl Into<String>) -> QueueError {
        QueueError::Cluster {
            context: context.into(),
            source: None,
        }
    }
}

/// "context: source", leaving out whichever part is empty.
fn join_context(context: &str, source: &Option<BoxError>) -> String {
    match source {
        Some(s) if context.is_empty() => s.to_string(),
        Some(s) => format!("{context}: {s}"),
        None => context.to_string(),
    }
}

/// A queue's settings (SQS attributes Tusk honours).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    pub visibility_timeout_s: u32,
    /// Receives after which a message moves to `dead_letter`; 0 = never.
    pub max_receive_count: u32,
    pub dead_letter: Option<String>,
    /// Internal queues (async invocations) are not visible through the SQS API.
    pub internal: bool,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub body: String,
    /// JSON object: SQS message attributes, or Tusk's bookkeeping for async events.
    pub attributes: serde_json::Value,
    pub delay_ms: u64,
    /// When the event was first accepted (keeps its age across retries and moves).
    pub sent_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub queue: String,
    pub id: String,
    pub body: String,
    pub attributes: serde_json::Value,
    pub sent_ms: i64,
    pub receive_count: u32,
    pub receipt: String,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct QueueStats {
    pub name: String,
    pub internal: bool,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub oldest_age_ms: u64,
    /// Messages that failed at least once and wait for another try.
    pub retrying: u64,
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleState {
    pub key: String,
    pub anchor_ms: i64,
    pub last_fire_ms: i64,
    pub missed: u64,
}

/// How a message that failed goes back on its queue (see [`QueueDb::retry`]).
#[derive(Debug, Clone, Default)]
pub struct Retry {
    /// Visible again after this long.
    pub delay_ms: u64,
    /// Why it failed (kept when none is given).
    pub error: Option<String>,
    /// Replaces the message's attributes (an async event's next attempt number).
    pub attributes: Option<serde_json::Value>,
}

/// One operation for the writer thread: run inside the batch's transaction, answered once the
/// batch commits (or fails to).
trait Job: Send {
    /// Runs the operation; true when it succeeded (its savepoint is kept).
    fn execute(&mut self, tx: &Transaction<'_>) -> bool;
    /// Sends the result, or `commit_error` when the batch did not commit.
    fn answer(self: Box<Self>, commit_error: Option<&rusqlite::Error>);
}

type Operation<T> = Box<dyn FnOnce(&Transaction<'_>) -> Result<T, QueueError> + Send>;

struct Pending<T> {
    operation: Option<Operation<T>>,
    result: Option<Result<T, QueueError>>,
    reply: oneshot::Sender<Result<T, QueueError>>,
}

impl<T: Send + 'static> Job for Pending<T> {
    fn execute(&mut self, tx: &Transaction<'_>) -> bool {
        let result = match self.operation.take() {
            Some(operation) => operation(tx),
            None => Err(QueueError::Invalid("a queue operation ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, commit_error: Option<&rusqlite::Error>) {
        let result = match (commit_error, self.result) {
            (Some(e), _) => Err(QueueError::Invalid(format!("queue commit failed: {e}"))),
            (None, Some(result)) => result,
            (None, None) => Err(QueueError::Stopped),
        };
        let _ = self.reply.send(result);
    }
}

/// seq, id, body, attributes, sent_ms, receive_count, last_error
type StoredRow = (i64, String, String, String, i64, u32, Option<String>);

/// Handle to the node's own queue database; cheap to clone. Knows nothing of clusters: the
/// [`crate::queues::Queues`] router decides what goes here.
#[derive(Clone)]
pub struct QueueDb {
    tx: mpsc::UnboundedSender<Box<dyn Job>>,
}

/// Internal queues carry a `:` (`async:FUNCTION`), which user queue names cannot.
pub fn is_internal(queue: &str) -> bool {
    queue.contains(':')
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_ms, seq);
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
CREATE TABLE IF NOT EXISTS schedules (
    key TEXT PRIMARY KEY,
    anchor_ms INTEGER NOT NULL,
    last_fire_ms INTEGER NOT NULL,
    missed INTEGER NOT NULL DEFAULT 0
);
";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl QueueDb {
    pub fn open(path: &Path) -> Result<QueueDb, QueueError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("tusk-queue-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| QueueError::Invalid(format!("cannot start the queue writer: {e}")))?;
        Ok(QueueDb { tx })
    }

    /// Hands `operation` to the writer thread and waits for its commit.
    async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Transaction<'_>) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let (reply, rx) = oneshot::channel();
        let job = Pending {
            operation: Some(Box::new(operation) as Operation<T>),
            result: None,
            reply,
        };
        self.tx
            .send(Box::new(job))
            .map_err(|_| QueueError::Stopped)?;
        rx.await.map_err(|_| QueueError::Stopped)?
    }

    /// Creates a queue, or replaces its settings.
    pub async fn create_queue(&self, config: QueueConfig) -> Result<(), QueueError> {
        self.run(move |tx| create_queue(tx, &config)).await
    }

    /// Deletes a queue and its messages; false when there was no such queue.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        let name = name.to_string();
        self.run(move |tx| {
            let n = tx.execute("DELETE FROM queues WHERE name = ?1", params![name])?;
            tx.execute("DELETE FROM messages WHERE queue = ?1", params![name])?;
            Ok(n > 0)
        })
        .await
    }

    /// One queue's settings (none when it does not exist).
    pub async fn queue(&self, name: &str) -> Result<Option<QueueConfig>, QueueError> {
        let name = name.to_string();
        self.run(move |tx| match load_queue(tx, &name) {
            Ok(config) => Ok(Some(config)),
            Err(QueueError::NoSuchQueue(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    pub async fn queues(&self) -> Result<Vec<QueueConfig>, QueueError> {
        self.run(queues).await
    }

    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        self.run(stats).await
    }

    /// Stores `messages`; returns their ids once committed.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, QueueError> {
        let queue = queue.to_string();
        self.run(move |tx| {
            load_queue(tx, &queue)?;
            let now = now_ms();
            let mut ids = Vec::with_capacity(messages.len());
            for m in &messages {
                insert(tx, &queue, m, now)?;
                ids.push(m.id.clone());
            }
            Ok(ids)
        })
        .await
    }

    /// Hands out up to `max` visible messages, hidden for `visibility_ms`; messages past the
    /// queue's `max_receive_count` move to its dead-letter queue instead.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        let queue = queue.to_string();
        self.run(move |tx| receive(tx, queue, max, visibility_ms))
            .await
    }

    /// Deletes a received message; false when the receipt is unknown (or stale).
    pub async fn delete(&self, queue: &str, receipt: &str) -> Result<bool, QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.run(move |tx| {
            let n = tx.execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Makes a received message visible again after `retry.delay_ms`, remembering why it failed.
    pub async fn retry(
        &self,
        queue: &str,
        receipt: &str,
        retry: Retry,
    ) -> Result<bool, QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.run(move |tx| {
            let visible = now_ms() + retry.delay_ms as i64;
            let n = match retry.attributes {
                Some(a) => tx.execute(
                    "UPDATE messages SET visible_ms = ?1, last_error = COALESCE(?2, last_error), attributes = ?3, receipt = NULL
                     WHERE queue = ?4 AND receipt = ?5",
                    params![visible, retry.error, a.to_string(), queue, receipt],
                )?,
                None => tx.execute(
                    "UPDATE messages SET visible_ms = ?1, last_error = COALESCE(?2, last_error), receipt = NULL
                     WHERE queue = ?3 AND receipt = ?4",
                    params![visible, retry.error, queue, receipt],
                )?,
            };
            Ok(n > 0)
        })
        .await
    }

    /// Deletes a received message and sends others, atomically (destinations, dead-letter
    /// moves); false, sending nothing, when the receipt is unknown.
    pub async fn complete(
        &self,
        queue: &str,
        receipt: &str,
        then_send: Vec<(String, NewMessage)>,
    ) -> Result<bool, QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.run(move |tx| {
            let n = tx.execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )?;
            if n > 0 {
                let now = now_ms();
                for (dest, m) in &then_send {
                    load_queue(tx, dest)?;
                    insert(tx, dest, m, now)?;
                }
            }
            Ok(n > 0)
        })
        .await
    }

    /// Drops every message of a queue.
    pub async fn purge(&self, queue: &str) -> Result<(), QueueError> {
        let queue = queue.to_string();
        self.run(move |tx| {
            load_queue(tx, &queue)?;
            tx.execute("DELETE FROM messages WHERE queue = ?1", params![queue])?;
            Ok(())
        })
        .await
    }

    /// At start-up: nothing is in flight on a single node, so make every internal message
    /// visible.
    pub async fn release_internal(&self) -> Result<(), QueueError> {
        self.run(|tx| {
            tx.execute(
                "UPDATE messages SET visible_ms = MIN(visible_ms, ?1), receipt = NULL
                 WHERE receipt IS NOT NULL AND queue IN (SELECT name FROM queues WHERE json_extract(config, '$.internal'))",
                params![now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// A schedule's state, created with `anchor_ms` (as its anchor and last tick) if new.
    pub async fn schedule_state(
        &self,
        key: &str,
        anchor_ms: i64,
    ) -> Result<ScheduleState, QueueError> {
        let key = key.to_string();
        self.run(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO schedules (key, anchor_ms, last_fire_ms) VALUES (?1, ?2, ?2)",
                params![key, anchor_ms],
            )?;
            let state = tx.query_row(
                "SELECT anchor_ms, last_fire_ms, missed FROM schedules WHERE key = ?1",
                params![key],
                |r| {
                    Ok(ScheduleState {
                        key: key.clone(),
                        anchor_ms: r.get(0)?,
                        last_fire_ms: r.get(1)?,
                        missed: r.get::<_, i64>(2)? as u64,
                    })
                },
            )?;
            Ok(state)
        })
        .await
    }

    /// Records a tick (and the messages it sends) so it never fires twice; false when this
    /// tick (or a later one) was already recorded.
    pub async fn fire(
        &self,
        key: &str,
        fire_ms: i64,
        missed: u64,
        send: Vec<(String, NewMessage)>,
    ) -> Result<bool, QueueError> {
        let key = key.to_string();
        self.run(move |tx| {
            let n = tx.execute(
                "UPDATE schedules SET last_fire_ms = ?1, missed = missed + ?2 WHERE key = ?3 AND last_fire_ms < ?1",
                params![fire_ms, missed as i64, key],
            )?;
            if n > 0 {
                let now = now_ms();
                for (queue, m) in &send {
                    insert(tx, queue, m, now)?;
                }
            }
            Ok(n > 0)
        })
        .await
    }
}

fn writer(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = (|| -> Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            for job in batch.iter_mut() {
                // A savepoint per operation: one bad operation fails alone.
                tx.execute_batch("SAVEPOINT op")?;
                if job.execute(&tx) {
                    tx.execute_batch("RELEASE op")?;
                } else {
                    tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                }
            }
            tx.commit()
        })();
        if let Err(e) = &committed {
            tracing::error!(error = %e, "queue commit failed");
        }
        for job in batch.drain(..) {
            job.answer(committed.as_ref().err());
        }
    }
}

fn load_queue(tx: &Transaction<'_>, name: &str) -> Result<QueueConfig, QueueError> {
    let config: Option<String> = tx
        .query_row(
            "SELECT config FROM queues WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    let config = config.ok_or_else(|| QueueError::NoSuchQueue(name.to_string()))?;
    serde_json::from_str(&config)
        .map_err(|e| QueueError::Invalid(format!("corrupt queue config: {e}")))
}

fn insert(tx: &Transaction<'_>, queue: &str, m: &NewMessage, now: i64) -> Result<(), QueueError> {
    tx.execute(
        "INSERT INTO messages (queue, id, body, attributes, sent_ms, visible_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![queue, m.id, m.body, m.attributes.to_string(), m.sent_ms.unwrap_or(now), now + m.delay_ms as i64],
    )?;
    Ok(())
}

fn create_queue(tx: &Transaction<'_>, config: &QueueConfig) -> Result<(), QueueError> {
    let json = serde_json::to_string(config).map_err(|e| QueueError::Invalid(e.to_string()))?;
    tx.execute(
        "INSERT INTO queues (name, config) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET config = excluded.config",
        params![config.name, json],
    )?;
    Ok(())
}

fn queues(tx: &Transaction<'_>) -> Result<Vec<QueueConfig>, QueueError> {
    let mut stmt = tx.prepare("SELECT config FROM queues ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(c) = serde_json::from_str(&row?) {
            out.push(c);
        }
    }
    Ok(out)
}

fn receive(
    tx: &Transaction<'_>,
    queue: String,
    max: usize,
    visibility_ms: u64,
) -> Result<Vec<Message>, QueueError> {
    let now = now_ms();
    let config = load_queue(tx, &queue)?;
    let mut out = Vec::new();
    let rows: Vec<StoredRow> = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, id, body, attributes, sent_ms, receive_count, last_error FROM messages
             WHERE queue = ?1 AND visible_ms <= ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![queue, now, max as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (seq, id, body, attributes, sent_ms, count, last_error) in rows {
        // Past maxReceiveCount: to the dead-letter queue instead of another delivery.
        if config.max_receive_count > 0 && count >= config.max_receive_count {
            if let Some(dlq) = &config.dead_letter {
                tx.execute(
                    "UPDATE messages SET queue = ?1, visible_ms = ?2, receive_count = 0, receipt = NULL WHERE seq = ?3",
                    params![dlq, now, seq],
                )?;
                continue;
            }
        }
        let receipt = uuid::Uuid::new_v4().simple().to_string();
        tx.execute(
            "UPDATE messages SET receipt = ?1, receive_count = receive_count + 1, visible_ms = ?2 WHERE seq = ?3",
            params![receipt, now + visibility_ms as i64, seq],
        )?;
        out.push(Message {
            queue: queue.clone(),
            id,
            body,
            attributes: serde_json::from_str(&attributes).unwrap_or(serde_json::Value::Null),
            sent_ms,
            receive_count: count + 1,
            receipt,
            last_error,
        });
    }
    Ok(out)
}

fn stats(tx: &Transaction<'_>) -> Result<Vec<QueueStats>, QueueError> {
    let now = now_ms();
    let mut stats = Vec::new();
    for q in queues(tx)? {
        let (visible, in_flight, delayed, oldest, retrying): (i64, i64, i64, Option<i64>, i64) = tx
            .query_row(
                "SELECT
                    COALESCE(SUM(visible_ms <= ?2), 0),
                    COALESCE(SUM(visible_ms > ?2 AND receipt IS NOT NULL), 0),
                    COALESCE(SUM(visible_ms > ?2 AND receipt IS NULL), 0),
                    MIN(sent_ms),
                    COALESCE(SUM(last_error IS NOT NULL), 0)
                 FROM messages WHERE queue = ?1",
                params![q.name, now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        stats.push(QueueStats {
            name: q.name.clone(),
            internal: q.internal,
            visible: visible as u64,
            in_flight: in_flight as u64,
            delayed: delayed as u64,
            oldest_age_ms: oldest.map(|o| (now - o).max(0) as u64).unwrap_or(0),
            retrying: retrying as u64,
            dead_letter: q.dead_letter.clone(),
        });
    }
    Ok(stats)
}

#[cfg(test)]
#[path = "queue_db_tests.rs"]
mod tests;
