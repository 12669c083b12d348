//! [`QueueDb`]: the events engine's durable queues in SQLite (`DATA_DIR/events.db`: async
//! invocations, schedule anchors, user queues), owned by one writer thread that commits in
//! groups: every operation that arrives while a transaction is being written joins the next
//! one, so a burst of sends costs one fsync, and a send is acknowledged only after its commit.
//! Not the node's registry or logs (those are `tusk_store`'s).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

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
    #[error("cluster: {0}")]
    Cluster(String),
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

pub enum Op {
    CreateQueue(QueueConfig),
    DeleteQueue(String),
    Queues,
    /// One queue's settings (none when it does not exist).
    Queue(String),
    Send {
        queue: String,
        messages: Vec<NewMessage>,
    },
    Receive {
        queue: String,
        max: usize,
        visibility_ms: u64,
    },
    Delete {
        queue: String,
        receipt: String,
    },
    /// Make the message visible again after `delay_ms`, remembering why it failed.
    Retry {
        queue: String,
        receipt: String,
        delay_ms: u64,
        error: Option<String>,
        attributes: Option<serde_json::Value>,
    },
    /// Delete the message and send others, atomically (destinations, dead-letter moves).
    Complete {
        queue: String,
        receipt: String,
        then_send: Vec<(String, NewMessage)>,
    },
    Purge(String),
    Stats,
    /// At start-up: nothing is in flight on a single node, so make every internal message visible.
    ReleaseInternal,
    ScheduleState {
        key: String,
        anchor_ms: i64,
    },
    /// Record a tick (and the messages it sends) so it never fires twice.
    Fire {
        key: String,
        fire_ms: i64,
        missed: u64,
        send: Vec<(String, NewMessage)>,
    },
}

pub enum Reply {
    Done,
    Bool(bool),
    Ids(Vec<String>),
    Messages(Vec<Message>),
    Stats(Vec<QueueStats>),
    Queues(Vec<QueueConfig>),
    Schedule(ScheduleState),
}

type Job = (Op, oneshot::Sender<Result<Reply, QueueError>>);

/// seq, id, body, attributes, sent_ms, receive_count, last_error
type StoredRow = (i64, String, String, String, i64, u32, Option<String>);

/// Where user queues (`sqs` events, the SQS API, queue destinations) live when the node is one
/// of a cluster: the second implementation of the same operations. Internal queues (a single
/// node's async invocations) and schedule state always stay local.
pub trait SharedQueues: Send + Sync + 'static {
    fn run(&self, op: Op) -> crate::BoxFuture<'_, Result<Reply, QueueError>>;
}

/// Handle to the queue database; cheap to clone. In a cluster, user queues go to the
/// [`SharedQueues`] set with [`QueueDb::set_shared`] instead.
#[derive(Clone)]
pub struct QueueDb {
    tx: mpsc::UnboundedSender<Job>,
    shared: Arc<OnceLock<Arc<dyn SharedQueues>>>,
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
        Ok(QueueDb {
            tx,
            shared: Arc::new(OnceLock::new()),
        })
    }

    /// Keeps user queues in `shared` from now on (a cluster); call once, at start-up.
    pub fn set_shared(&self, shared: Arc<dyn SharedQueues>) {
        if self.shared.set(shared).is_err() {
            tracing::warn!("shared queues were already set");
        }
    }

    pub async fn run(&self, op: Op) -> Result<Reply, QueueError> {
        let Some(shared) = self.shared.get() else {
            return self.run_local(op).await;
        };
        let user = |q: &str| !is_internal(q);
        match op {
            Op::CreateQueue(ref c) if !c.internal => shared.run(op).await,
            Op::DeleteQueue(ref q) | Op::Purge(ref q) | Op::Queue(ref q) if user(q) => {
                shared.run(op).await
            }
            Op::Send { ref queue, .. }
            | Op::Receive { ref queue, .. }
            | Op::Delete { ref queue, .. }
            | Op::Retry { ref queue, .. }
                if user(queue) =>
            {
                shared.run(op).await
            }
            Op::Complete {
                queue,
                receipt,
                then_send,
            } if then_send.iter().any(|(q, _)| user(q)) => {
                // Not atomic across the two stores: the local part commits first, so a crash
                // in between loses the user-queue records, never the event's outcome twice.
                let (remote, local): (Vec<_>, Vec<_>) =
                    then_send.into_iter().partition(|(q, _)| user(q));
                let done = self
                    .run_local(Op::Complete {
                        queue,
                        receipt,
                        then_send: local,
                    })
                    .await?;
                if matches!(done, Reply::Bool(true)) {
                    for (queue, message) in remote {
                        shared
                            .run(Op::Send {
                                queue,
                                messages: vec![message],
                            })
                            .await?;
                    }
                }
                Ok(done)
            }
            Op::Queues | Op::Stats => {
                let stats = matches!(op, Op::Stats);
                let local = self.run_local(op).await?;
                let remote = shared
                    .run(if stats { Op::Stats } else { Op::Queues })
                    .await?;
                Ok(match (local, remote) {
                    (Reply::Queues(mut l), Reply::Queues(r)) => {
                        l.retain(|q| q.internal);
                        l.extend(r);
                        Reply::Queues(l)
                    }
                    (Reply::Stats(mut l), Reply::Stats(r)) => {
                        l.retain(|q| q.internal);
                        l.extend(r);
                        Reply::Stats(l)
                    }
                    (l, _) => l,
                })
            }
            op => self.run_local(op).await,
        }
    }

    async fn run_local(&self, op: Op) -> Result<Reply, QueueError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((op, reply)).map_err(|_| QueueError::Stopped)?;
        rx.await.map_err(|_| QueueError::Stopped)?
    }

    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, QueueError> {
        match self
            .run(Op::Send {
                queue: queue.into(),
                messages,
            })
            .await?
        {
            Reply::Ids(ids) => Ok(ids),
            _ => Ok(vec![]),
        }
    }

    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        match self
            .run(Op::Receive {
                queue: queue.into(),
                max,
                visibility_ms,
            })
            .await?
        {
            Reply::Messages(m) => Ok(m),
            _ => Ok(vec![]),
        }
    }

    pub async fn delete(&self, queue: &str, receipt: &str) -> Result<bool, QueueError> {
        match self
            .run(Op::Delete {
                queue: queue.into(),
                receipt: receipt.into(),
            })
            .await?
        {
            Reply::Bool(b) => Ok(b),
            _ => Ok(false),
        }
    }

    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        match self.run(Op::Stats).await? {
            Reply::Stats(s) => Ok(s),
            _ => Ok(vec![]),
        }
    }

    pub async fn queues(&self) -> Result<Vec<QueueConfig>, QueueError> {
        match self.run(Op::Queues).await? {
            Reply::Queues(q) => Ok(q),
            _ => Ok(vec![]),
        }
    }

    pub async fn queue(&self, name: &str) -> Result<Option<QueueConfig>, QueueError> {
        match self.run(Op::Queue(name.to_string())).await? {
            Reply::Queues(q) => Ok(q.into_iter().next()),
            _ => Ok(None),
        }
    }
}

fn writer(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch: Vec<Job> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        let committed = (|| -> Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            for (op, _) in batch.iter_mut() {
                // A savepoint per operation: one bad operation fails alone.
                let op = std::mem::replace(op, Op::Stats);
                let sp_result = {
                    tx.execute_batch("SAVEPOINT op")?;
                    let r = execute(&tx, op);
                    if r.is_ok() {
                        tx.execute_batch("RELEASE op")?;
                    } else {
                        tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                    }
                    r
                };
                results.push(sp_result);
            }
            tx.commit()
        })();
        match committed {
            Ok(()) => {
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue commit failed");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(QueueError::Invalid(format!(
                        "queue commit failed: {e}"
                    ))));
                }
            }
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

fn execute(tx: &Transaction<'_>, op: Op) -> Result<Reply, QueueError> {
    let now = now_ms();
    match op {
        Op::CreateQueue(config) => {
            let json =
                serde_json::to_string(&config).map_err(|e| QueueError::Invalid(e.to_string()))?;
            tx.execute(
                "INSERT INTO queues (name, config) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET config = excluded.config",
                params![config.name, json],
            )?;
            Ok(Reply::Done)
        }
        Op::DeleteQueue(name) => {
            let n = tx.execute("DELETE FROM queues WHERE name = ?1", params![name])?;
            tx.execute("DELETE FROM messages WHERE queue = ?1", params![name])?;
            Ok(Reply::Bool(n > 0))
        }
        Op::Queue(name) => match load_queue(tx, &name) {
            Ok(config) => Ok(Reply::Queues(vec![config])),
            Err(QueueError::NoSuchQueue(_)) => Ok(Reply::Queues(vec![])),
            Err(e) => Err(e),
        },
        Op::Queues => {
            let mut stmt = tx.prepare("SELECT config FROM queues ORDER BY name")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(c) = serde_json::from_str(&row?) {
                    out.push(c);
                }
            }
            Ok(Reply::Queues(out))
        }
        Op::Send { queue, messages } => {
            load_queue(tx, &queue)?;
            let mut ids = Vec::with_capacity(messages.len());
            for m in &messages {
                insert(tx, &queue, m, now)?;
                ids.push(m.id.clone());
            }
            Ok(Reply::Ids(ids))
        }
        Op::Receive {
            queue,
            max,
            visibility_ms,
        } => {
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
                    attributes: serde_json::from_str(&attributes)
                        .unwrap_or(serde_json::Value::Null),
                    sent_ms,
                    receive_count: count + 1,
                    receipt,
                    last_error,
                });
            }
            Ok(Reply::Messages(out))
        }
        Op::Delete { queue, receipt } => {
            let n = tx.execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )?;
            Ok(Reply::Bool(n > 0))
        }
        Op::Retry {
            queue,
            receipt,
            delay_ms,
            error,
            attributes,
        } => {
            let n = match attributes {
                Some(a) => tx.execute(
                    "UPDATE messages SET visible_ms = ?1, last_error = COALESCE(?2, last_error), attributes = ?3, receipt = NULL
                     WHERE queue = ?4 AND receipt = ?5",
                    params![now + delay_ms as i64, error, a.to_string(), queue, receipt],
                )?,
                None => tx.execute(
                    "UPDATE messages SET visible_ms = ?1, last_error = COALESCE(?2, last_error), receipt = NULL
                     WHERE queue = ?3 AND receipt = ?4",
                    params![now + delay_ms as i64, error, queue, receipt],
                )?,
            };
            Ok(Reply::Bool(n > 0))
        }
        Op::Complete {
            queue,
            receipt,
            then_send,
        } => {
            let n = tx.execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )?;
            if n > 0 {
                for (dest, m) in &then_send {
                    load_queue(tx, dest)?;
                    insert(tx, dest, m, now)?;
                }
            }
            Ok(Reply::Bool(n > 0))
        }
        Op::Purge(queue) => {
            load_queue(tx, &queue)?;
            tx.execute("DELETE FROM messages WHERE queue = ?1", params![queue])?;
            Ok(Reply::Done)
        }
        Op::Stats => {
            let mut stats = Vec::new();
            let configs: Vec<QueueConfig> = match execute(tx, Op::Queues)? {
                Reply::Queues(q) => q,
                _ => vec![],
            };
            for q in configs {
                let (visible, in_flight, delayed, oldest, retrying): (
                    i64,
                    i64,
                    i64,
                    Option<i64>,
                    i64,
                ) = tx.query_row(
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
            Ok(Reply::Stats(stats))
        }
        Op::ReleaseInternal => {
            tx.execute(
                "UPDATE messages SET visible_ms = MIN(visible_ms, ?1), receipt = NULL
                 WHERE receipt IS NOT NULL AND queue IN (SELECT name FROM queues WHERE json_extract(config, '$.internal'))",
                params![now],
            )?;
            Ok(Reply::Done)
        }
        Op::ScheduleState { key, anchor_ms } => {
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
            Ok(Reply::Schedule(state))
        }
        Op::Fire {
            key,
            fire_ms,
            missed,
            send,
        } => {
            let n = tx.execute(
                "UPDATE schedules SET last_fire_ms = ?1, missed = missed + ?2 WHERE key = ?3 AND last_fire_ms < ?1",
                params![fire_ms, missed as i64, key],
            )?;
            if n > 0 {
                for (queue, m) in &send {
                    insert(tx, queue, m, now)?;
                }
            }
            Ok(Reply::Bool(n > 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> NewMessage {
        NewMessage {
            id: uuid::Uuid::new_v4().to_string(),
            body: body.into(),
            attributes: serde_json::json!({}),
            delay_ms: 0,
            sent_ms: None,
        }
    }

    fn queue(name: &str, max_receive: u32, dlq: Option<&str>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            visibility_timeout_s: 30,
            max_receive_count: max_receive,
            dead_letter: dlq.map(String::from),
            internal: false,
        }
    }

    #[tokio::test]
    async fn send_receive_delete_and_visibility() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueDb::open(&dir.path().join("q.db")).unwrap();
        store
            .run(Op::CreateQueue(queue("jobs", 0, None)))
            .await
            .unwrap();
        store.send("jobs", vec![msg("a"), msg("b")]).await.unwrap();
        let got = store.receive("jobs", 10, 50).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(store.receive("jobs", 10, 50).await.unwrap().is_empty());
        assert!(store.delete("jobs", &got[0].receipt).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        let again = store.receive("jobs", 10, 50).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].body, "b");
        assert_eq!(again[0].receive_count, 2);
        // The old receipt no longer deletes.
        assert!(!store.delete("jobs", &got[1].receipt).await.unwrap());
        assert!(store.send("nope", vec![msg("x")]).await.is_err());
    }

    #[tokio::test]
    async fn redrive_to_dead_letter_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueDb::open(&dir.path().join("q.db")).unwrap();
        store
            .run(Op::CreateQueue(queue("dlq", 0, None)))
            .await
            .unwrap();
        store
            .run(Op::CreateQueue(queue("work", 2, Some("dlq"))))
            .await
            .unwrap();
        store.send("work", vec![msg("poison")]).await.unwrap();
        for _ in 0..2 {
            assert_eq!(store.receive("work", 1, 0).await.unwrap().len(), 1);
        }
        assert!(store.receive("work", 1, 0).await.unwrap().is_empty());
        let dead = store.receive("dlq", 1, 1000).await.unwrap();
        assert_eq!(dead[0].body, "poison");
    }

    #[tokio::test]
    async fn schedule_fires_once_per_tick() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueDb::open(&dir.path().join("q.db")).unwrap();
        store
            .run(Op::CreateQueue(queue("ticks", 0, None)))
            .await
            .unwrap();
        store
            .run(Op::ScheduleState {
                key: "f#0".into(),
                anchor_ms: 1000,
            })
            .await
            .unwrap();
        let fire = |at| Op::Fire {
            key: "f#0".into(),
            fire_ms: at,
            missed: 0,
            send: vec![("ticks".into(), msg("t"))],
        };
        assert!(matches!(
            store.run(fire(2000)).await.unwrap(),
            Reply::Bool(true)
        ));
        assert!(matches!(
            store.run(fire(2000)).await.unwrap(),
            Reply::Bool(false)
        ));
        assert_eq!(store.receive("ticks", 10, 1000).await.unwrap().len(), 1);
    }
}
