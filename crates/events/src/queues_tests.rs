//! Unit tests of the [`Queues`] router with a fake [`SharedQueues`]: which operations go to
//! the cluster, which stay in the node's SQLite, and how the two halves are combined.

use super::*;
use std::sync::Mutex;

/// Records every call and answers as an empty, healthy cluster would.
#[derive(Default)]
struct FakeShared {
    calls: Mutex<Vec<String>>,
}

impl FakeShared {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, Result<T, QueueError>> {
    Box::pin(async move { Ok(value) })
}

impl SharedQueues for FakeShared {
    fn create_queue(&self, config: QueueConfig) -> BoxFuture<'_, Result<(), QueueError>> {
        self.record(format!("create_queue {}", config.name));
        ready(())
    }
    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        self.record(format!("delete_queue {name}"));
        ready(true)
    }
    fn queue<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<QueueConfig>, QueueError>> {
        self.record(format!("queue {name}"));
        ready(Some(user_queue(name)))
    }
    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueConfig>, QueueError>> {
        self.record("queues".into());
        ready(vec![user_queue("shared-jobs")])
    }
    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>> {
        self.record("stats".into());
        ready(vec![QueueStats {
            name: "shared-jobs".into(),
            ..QueueStats::default()
        }])
    }
    fn send<'a>(
        &'a self,
        queue: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<String>, QueueError>> {
        self.record(format!("send {queue} {}", messages.len()));
        ready(messages.into_iter().map(|m| m.id).collect())
    }
    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        visibility_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Message>, QueueError>> {
        self.record(format!("receive {queue} {max} {visibility_ms}"));
        ready(vec![])
    }
    fn delete<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        self.record(format!("delete {queue} {receipt}"));
        ready(true)
    }
    fn change_visibility<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
        delay_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        self.record(format!("change_visibility {queue} {receipt} {delay_ms}"));
        ready(true)
    }
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        self.record(format!("purge {queue}"));
        ready(())
    }
}

fn user_queue(name: &str) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        visibility_timeout_s: 30,
        max_receive_count: 0,
        dead_letter: None,
        internal: false,
    }
}

fn internal_queue(name: &str) -> QueueConfig {
    QueueConfig {
        internal: true,
        ..user_queue(name)
    }
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        body: body.into(),
        attributes: serde_json::json!({}),
        delay_ms: 0,
        sent_ms: None,
    }
}

/// A router over a fresh SQLite database, with the fake cluster when `clustered`.
fn router(clustered: bool) -> (Queues, Arc<FakeShared>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let local = QueueDb::open(&dir.path().join("events.db")).unwrap();
    let queues = Queues::new(local);
    let shared = Arc::new(FakeShared::default());
    if clustered {
        queues.set_shared(shared.clone());
    }
    (queues, shared, dir)
}

#[tokio::test]
async fn a_single_node_keeps_user_queues_in_sqlite() {
    let (queues, shared, _dir) = router(false);
    queues.create_queue(user_queue("jobs")).await.unwrap();
    queues.send("jobs", vec![message("a")]).await.unwrap();
    let got = queues.receive("jobs", 10, 1000).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(queues.delete("jobs", &got[0].receipt).await.unwrap());
    queues.purge("jobs").await.unwrap();
    assert!(queues.delete_queue("jobs").await.unwrap());
    assert!(queues.queue("jobs").await.unwrap().is_none());
    assert!(shared.calls().is_empty());
}

#[tokio::test]
async fn a_cluster_node_sends_user_queue_operations_to_the_shared_queues() {
    let (queues, shared, dir) = router(true);
    queues.create_queue(user_queue("jobs")).await.unwrap();
    queues.send("jobs", vec![message("a")]).await.unwrap();
    queues.receive("jobs", 5, 2000).await.unwrap();
    queues.delete("jobs", "r1").await.unwrap();
    queues.change_visibility("jobs", "r2", 3000).await.unwrap();
    let retry = Retry {
        delay_ms: 500,
        error: Some("throttled".into()),
        attributes: None,
    };
    queues.retry("jobs", "r3", retry).await.unwrap();
    queues.queue("jobs").await.unwrap();
    queues.purge("jobs").await.unwrap();
    queues.delete_queue("jobs").await.unwrap();
    assert_eq!(
        shared.calls(),
        [
            "create_queue jobs",
            "send jobs 1",
            "receive jobs 5 2000",
            "delete jobs r1",
            "change_visibility jobs r2 3000",
            "change_visibility jobs r3 500",
            "queue jobs",
            "purge jobs",
            "delete_queue jobs",
        ]
    );
    // Nothing of the user queue reached the node's own database.
    let local = QueueDb::open(&dir.path().join("events.db")).unwrap();
    assert!(local.queues().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cluster_node_keeps_internal_queues_and_schedules_local() {
    let (queues, shared, _dir) = router(true);
    queues
        .create_queue(internal_queue("async:svc-dev-f"))
        .await
        .unwrap();
    queues
        .send("async:svc-dev-f", vec![message("e")])
        .await
        .unwrap();
    let got = queues.receive("async:svc-dev-f", 10, 1000).await.unwrap();
    assert_eq!(got.len(), 1);
    let retry = Retry {
        delay_ms: 0,
        error: Some("boom".into()),
        attributes: Some(serde_json::json!({"attempt": 1})),
    };
    assert!(queues
        .retry("async:svc-dev-f", &got[0].receipt, retry)
        .await
        .unwrap());
    let again = queues.receive("async:svc-dev-f", 10, 1000).await.unwrap();
    assert_eq!(again[0].last_error.as_deref(), Some("boom"));
    assert_eq!(again[0].attributes["attempt"], 1);
    queues.release_internal().await.unwrap();
    let state = queues.schedule_state("f#0", 1000).await.unwrap();
    assert_eq!(state.anchor_ms, 1000);
    assert!(queues.fire("f#0", 2000, 0, vec![]).await.unwrap());
    assert!(shared.calls().is_empty());
}

#[tokio::test]
async fn completing_an_event_sends_user_queue_records_to_the_cluster_after_the_local_commit() {
    let (queues, shared, _dir) = router(true);
    queues
        .create_queue(internal_queue("async:f"))
        .await
        .unwrap();
    queues
        .create_queue(internal_queue("async:g"))
        .await
        .unwrap();
    queues.send("async:f", vec![message("e")]).await.unwrap();
    let got = queues.receive("async:f", 1, 1000).await.unwrap();
    let then_send = vec![
        ("async:g".to_string(), message("to a function")),
        ("done".to_string(), message("to a queue")),
    ];
    assert!(queues
        .complete("async:f", &got[0].receipt, then_send)
        .await
        .unwrap());
    // The function destination stayed local, the queue destination went to the cluster.
    assert_eq!(queues.receive("async:g", 10, 1000).await.unwrap().len(), 1);
    assert_eq!(shared.calls(), ["send done 1"]);
    // A stale receipt completes nothing and sends nothing.
    let stale = vec![("done".to_string(), message("again"))];
    assert!(!queues
        .complete("async:f", &got[0].receipt, stale)
        .await
        .unwrap());
    assert_eq!(shared.calls(), ["send done 1"]);
}

#[tokio::test]
async fn listings_combine_local_internal_queues_with_shared_user_queues() {
    let (queues, _shared, dir) = router(true);
    // A user queue left in SQLite from before the node joined a cluster is not listed.
    let local = QueueDb::open(&dir.path().join("events.db")).unwrap();
    local.create_queue(user_queue("stale")).await.unwrap();
    queues
        .create_queue(internal_queue("async:f"))
        .await
        .unwrap();
    let names: Vec<String> = queues
        .queues()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["async:f", "shared-jobs"]);
    let stats: Vec<String> = queues
        .stats()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(stats, ["async:f", "shared-jobs"]);
}
