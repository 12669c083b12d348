//! Unit tests of the SQLite queues: visibility, receipts, redrive, schedule ticks.

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
    store.create_queue(queue("jobs", 0, None)).await.unwrap();
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
    store.create_queue(queue("dlq", 0, None)).await.unwrap();
    store
        .create_queue(queue("work", 2, Some("dlq")))
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
    store.create_queue(queue("ticks", 0, None)).await.unwrap();
    store.schedule_state("f#0", 1000).await.unwrap();
    let fire = |at| store.fire("f#0", at, 0, vec![("ticks".into(), msg("t"))]);
    assert!(fire(2000).await.unwrap());
    assert!(!fire(2000).await.unwrap());
    assert_eq!(store.receive("ticks", 10, 1000).await.unwrap().len(), 1);
}
