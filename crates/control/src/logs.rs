//! Function logs: instances write lines into a bounded channel; one writer thread batches them
//! into the log store. Retention is the log store's own (SQLite's pruning task, JetStream's
//! stream limits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tusk_instance::LogSink;
use tusk_store::{LogStore, LogStream, NewLogLine};

const CHANNEL_CAPACITY: usize = 200_000;
const BATCH: usize = 2_000;
/// How long the writer keeps collecting after the first line of a batch. Every batch is one
/// fsync'd SQLite transaction: under load, committing whatever is there at once means a
/// commit for every few invocations (START/END/REPORT lines), a large share of the node's CPU
/// per request. A few milliseconds later the same commit carries hundreds of lines; `tusk logs`
/// readers see lines that much later.
const COALESCE: Duration = Duration::from_millis(5);

pub struct NodeLogs {
    tx: mpsc::Sender<NewLogLine>,
    dropped: AtomicU64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LogSink for NodeLogs {
    fn log(&self, function: &str, request_id: Option<&str>, stream: LogStream, line: &str) {
        let entry = NewLogLine {
            function: function.to_string(),
            ts_ms: now_ms(),
            request_id: request_id.map(str::to_string),
            stream,
            line: line.to_string(),
        };
        // A function printing faster than the disk takes it loses lines, not the node.
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl NodeLogs {
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread.
pub fn start(store: Arc<dyn LogStore>) -> Arc<NodeLogs> {
    let (tx, mut rx) = mpsc::channel::<NewLogLine>(CHANNEL_CAPACITY);
    std::thread::Builder::new()
        .name("tusk-log-writer".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                let deadline = Instant::now() + COALESCE;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(l) => batch.push(l),
                        Err(mpsc::error::TryRecvError::Empty) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(Duration::from_millis(1)));
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                    }
                }
                if let Err(e) = store.append_logs(&batch) {
                    tracing::warn!(error = %e, lines = batch.len(), "cannot store log lines");
                }
                batch.clear();
            }
        })
        .ok();
    Arc::new(NodeLogs {
        tx,
        dropped: AtomicU64::new(0),
    })
}
