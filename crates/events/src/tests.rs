//! Unit tests of the events engine's decisions with a fake [`Invoker`] (no pool, no PHP):
//! async retries and their delays, maximum event age, throttle back-off, destination
//! records, and SQS batches (partial failures, redrive, order).

use super::*;
use crate::queue_db::{now_ms, Message, QueueDb};
use bytes::Bytes;
use std::collections::VecDeque;

fn db(events: &EventEngine) -> &Queues {
    events.queues()
}

/// Answers invocations from a script, recording the payloads it was given.
#[derive(Default)]
struct FakeInvoker {
    answers: Mutex<VecDeque<Invoked>>,
    payloads: Mutex<Vec<String>>,
    /// The function was removed from this node.
    gone: AtomicBool,
}

impl FakeInvoker {
    fn answering(answers: Vec<Invoked>) -> Arc<FakeInvoker> {
        Arc::new(FakeInvoker {
            answers: Mutex::new(answers.into()),
            ..FakeInvoker::default()
        })
    }
    fn calls(&self) -> usize {
        self.payloads.lock().unwrap().len()
    }
}

impl Invoker for FakeInvoker {
    fn invoke<'a>(&'a self, _: &'a str, payload: Bytes) -> BoxFuture<'a, Invoked> {
        Box::pin(async move {
            if self.gone.load(Ordering::Acquire) {
                return Invoked::NoSuchFunction;
            }
            self.payloads
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&payload).into_owned());
            let next = self.answers.lock().unwrap().pop_front();
            next.unwrap_or_else(|| Invoked::Response(Bytes::from_static(b"null")))
        })
    }
    fn max_concurrency(&self, _: &str) -> Option<usize> {
        (!self.gone.load(Ordering::Acquire)).then_some(2)
    }
    fn slots(&self, _: &str) -> Option<(usize, usize)> {
        (!self.gone.load(Ordering::Acquire)).then_some((2, 2))
    }
}

fn failed() -> Invoked {
    Invoked::FunctionError {
        body: Bytes::from_static(br#"{"errorType":"Exception","errorMessage":"boom"}"#),
        error_type: "Exception".into(),
    }
}

async fn engine(
    invoker: Arc<FakeInvoker>,
    retry_base_delay: Duration,
) -> (Arc<EventEngine>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = QueueDb::open(&dir.path().join("events.db")).unwrap();
    let settings = EngineSettings {
        retry_base_delay,
        region: "us-east-1".into(),
    };
    let events = EventEngine::start(Queues::new(store), invoker, settings)
        .await
        .unwrap();
    (events, dir)
}

fn config(max_retries: u32) -> FunctionEventConfig {
    FunctionEventConfig {
        function: "svc-dev-f".into(),
        function_arn: "arn:aws:lambda:us-east-1:000000000000:function:svc-dev-f".into(),
        max_retries,
        max_event_age: Duration::from_secs(3600),
        timeout: Duration::from_secs(6),
        on_success: Some(Destination::Queue("done".into())),
        on_failure: Some(Destination::Queue("failed".into())),
        schedules: vec![],
        sqs: vec![],
    }
}

fn event(attempt: u32) -> AsyncInvocation {
    AsyncInvocation {
        id: "req-1".into(),
        body: r#"{"n":1}"#.into(),
        attempt,
        sent_ms: now_ms(),
        not_before_ms: 0,
    }
}

/// The one record a decision sends, as (queue, record JSON).
fn only_record(decision: Decision) -> (String, serde_json::Value) {
    let Decision::Complete(mut send) = decision else {
        panic!("expected Complete, got {decision:?}");
    };
    assert_eq!(send.len(), 1, "{send:?}");
    let (queue, message) = send.remove(0);
    (queue, serde_json::from_str(&message.body).unwrap())
}

#[tokio::test]
async fn a_failed_async_event_is_retried_with_doubling_delays_up_to_maximum_retry_attempts() {
    let invoker = FakeInvoker::answering(vec![failed(), failed(), failed()]);
    let (events, _dir) = engine(invoker.clone(), Duration::from_secs(60)).await;
    let config = config(2);
    let first = events.attempt(&config, &event(0), 1).await;
    assert!(
        matches!(first, Decision::Retry { delay, attempt: 1, .. } if delay == Duration::from_secs(60)),
        "{first:?}"
    );
    let second = events.attempt(&config, &event(1), 2).await;
    assert!(
        matches!(second, Decision::Retry { delay, attempt: 2, .. } if delay == Duration::from_secs(120)),
        "{second:?}"
    );
    let (queue, record) = only_record(events.attempt(&config, &event(2), 3).await);
    assert_eq!(queue, "failed");
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["requestPayload"]["n"], 1);
    assert_eq!(record["responsePayload"]["errorMessage"], "boom");
    assert_eq!(invoker.calls(), 3);
    assert_eq!(events.counters.async_retried.load(Ordering::Relaxed), 2);
    assert_eq!(events.counters.dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn no_retry_when_maximum_retry_attempts_is_zero() {
    let invoker = FakeInvoker::answering(vec![failed()]);
    let (events, _dir) = engine(invoker, Duration::from_secs(60)).await;
    let (queue, record) = only_record(events.attempt(&config(0), &event(0), 1).await);
    assert_eq!(queue, "failed");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
}

#[tokio::test]
async fn an_event_older_than_maximum_event_age_goes_to_on_failure_without_running() {
    let invoker = FakeInvoker::answering(vec![]);
    let (events, _dir) = engine(invoker.clone(), Duration::from_secs(60)).await;
    let old = AsyncInvocation {
        sent_ms: now_ms() - 3_601_000,
        ..event(1)
    };
    let (queue, record) = only_record(events.attempt(&config(2), &old, 1).await);
    assert_eq!(queue, "failed");
    assert_eq!(record["requestContext"]["condition"], "EventAgeExceeded");
    assert_eq!(invoker.calls(), 0);
    assert_eq!(events.counters.dropped_too_old.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_throttled_event_backs_off_longer_each_delivery_up_to_a_minute() {
    let throttles = (0..4).map(|_| Invoked::Throttled).collect();
    let invoker = FakeInvoker::answering(throttles);
    let (events, _dir) = engine(invoker, Duration::from_secs(60)).await;
    let mut backoffs = Vec::new();
    for deliveries in [0, 1, 3, 10] {
        match events.attempt(&config(2), &event(0), deliveries).await {
            Decision::Throttled(d) => backoffs.push(d.as_secs()),
            other => panic!("expected Throttled, got {other:?}"),
        }
    }
    assert_eq!(backoffs, vec![1, 2, 8, 60]);
    // A throttle is not a failure: no retry is counted.
    assert_eq!(events.counters.async_retried.load(Ordering::Relaxed), 0);
    assert_eq!(events.counters.async_throttled.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_success_sends_its_record_to_on_success() {
    let answer = Invoked::Response(Bytes::from_static(br#"{"ok":true}"#));
    let invoker = FakeInvoker::answering(vec![answer]);
    let (events, _dir) = engine(invoker, Duration::from_secs(60)).await;
    let (queue, record) = only_record(events.attempt(&config(2), &event(1), 1).await);
    assert_eq!(queue, "done");
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["responsePayload"]["ok"], true);
}

#[tokio::test]
async fn a_function_destination_gets_the_record_as_a_new_async_event() {
    let invoker = FakeInvoker::answering(vec![]);
    let (events, _dir) = engine(invoker, Duration::from_secs(60)).await;
    let config = FunctionEventConfig {
        on_success: Some(Destination::Function("svc-dev-audit".into())),
        ..config(0)
    };
    let Decision::Complete(send) = events.attempt(&config, &event(0), 1).await else {
        panic!("expected Complete");
    };
    assert_eq!(send[0].0, "async:svc-dev-audit");
    assert_eq!(send[0].1.attributes["attempt"], 0);
}

#[tokio::test]
async fn an_event_for_a_removed_function_is_dropped_without_records() {
    let invoker = FakeInvoker::answering(vec![]);
    invoker.gone.store(true, Ordering::Release);
    let (events, _dir) = engine(invoker, Duration::from_secs(60)).await;
    assert!(matches!(
        events.attempt(&config(2), &event(0), 1).await,
        Decision::Complete(send) if send.is_empty()
    ));
}

#[tokio::test]
async fn an_async_event_runs_again_after_its_failures_and_its_success_is_recorded() {
    let answer = Invoked::Response(Bytes::from_static(br#""third time""#));
    let invoker = FakeInvoker::answering(vec![failed(), failed(), answer]);
    let (events, _dir) = engine(invoker.clone(), Duration::from_millis(20)).await;
    db(&events)
        .create_queue(queue("done", 0, None))
        .await
        .unwrap();
    events.configure(config(2)).await.unwrap();
    let id = events
        .invoke_async("svc-dev-f", Bytes::from_static(br#"{"n":1}"#))
        .await
        .unwrap();
    let record = wait_for_one(&events, "done").await;
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["responsePayload"], "third time");
    assert_eq!(invoker.calls(), 3);
}

#[tokio::test]
async fn a_throttled_async_event_runs_again_as_the_same_attempt() {
    let answer = Invoked::Response(Bytes::from_static(b"1"));
    let invoker = FakeInvoker::answering(vec![Invoked::Throttled, answer]);
    let (events, _dir) = engine(invoker.clone(), Duration::from_millis(20)).await;
    db(&events)
        .create_queue(queue("done", 0, None))
        .await
        .unwrap();
    events.configure(config(0)).await.unwrap();
    events
        .invoke_async("svc-dev-f", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    // After the back-off (2 s on the first delivery), not dropped though retries are 0.
    let record = wait_for_one(&events, "done").await;
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(invoker.calls(), 2);
}

/// Waits (real time: the store's clock) for one message on `queue`.
async fn wait_for_one(events: &EventEngine, queue: &str) -> serde_json::Value {
    for _ in 0..400 {
        if let Some(m) = db(events).receive(queue, 1, 1000).await.unwrap().pop() {
            return serde_json::from_str(&m.body).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing arrived on {queue}");
}

// ---- SQS batches ----

fn queue(name: &str, max_receive_count: u32, dead_letter: Option<&str>) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        visibility_timeout_s: 30,
        max_receive_count,
        dead_letter: dead_letter.map(String::from),
        internal: false,
    }
}

fn mapping(report_batch_item_failures: bool) -> SqsMapping {
    SqsMapping {
        queue: "jobs".into(),
        batch_size: 10,
        batching_window: Duration::ZERO,
        report_batch_item_failures,
    }
}

/// An engine with a `jobs` queue (redriven to `jobs-dlq` after two receives) holding a, b, c.
async fn with_jobs(
    invoker: Arc<FakeInvoker>,
) -> (Arc<EventEngine>, tempfile::TempDir, Vec<String>) {
    let (events, dir) = engine(invoker, Duration::from_secs(60)).await;
    let store = db(&events);
    store
        .create_queue(queue("jobs-dlq", 0, None))
        .await
        .unwrap();
    store
        .create_queue(queue("jobs", 2, Some("jobs-dlq")))
        .await
        .unwrap();
    let sent: Vec<NewMessage> = ["a", "b", "c"]
        .iter()
        .map(|b| new_message(b.to_string(), serde_json::json!({})))
        .collect();
    let ids = sent.iter().map(|m| m.id.clone()).collect();
    store.send("jobs", sent).await.unwrap();
    (events, dir, ids)
}

/// Receives what is visible on `jobs` (visible again at once if not deleted).
async fn receive_jobs(events: &EventEngine) -> Vec<Message> {
    db(events).receive("jobs", 10, 0).await.unwrap()
}

fn bodies(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn a_batch_hands_the_messages_over_in_the_order_they_were_sent() {
    let invoker = FakeInvoker::answering(vec![]);
    let (events, _dir, _) = with_jobs(invoker.clone()).await;
    let batch = receive_jobs(&events).await;
    sqs_source::handle(&events, "svc-dev-f", &mapping(false), batch).await;
    let payload: serde_json::Value =
        serde_json::from_str(&invoker.payloads.lock().unwrap()[0]).unwrap();
    let order: Vec<&str> = payload["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["a", "b", "c"]);
    // Handled: all deleted.
    assert!(receive_jobs(&events).await.is_empty());
}

#[tokio::test]
async fn batch_item_failures_keep_only_the_failed_messages_then_redrive_them_to_the_dlq() {
    let invoker = FakeInvoker::answering(vec![]);
    let (events, _dir, ids) = with_jobs(invoker.clone()).await;
    let answer = serde_json::json!({"batchItemFailures": [{"itemIdentifier": ids[1]}]});
    invoker
        .answers
        .lock()
        .unwrap()
        .push_back(Invoked::Response(Bytes::from(answer.to_string())));
    invoker.answers.lock().unwrap().push_back(failed());
    sqs_source::handle(
        &events,
        "svc-dev-f",
        &mapping(true),
        receive_jobs(&events).await,
    )
    .await;
    let again = receive_jobs(&events).await;
    assert_eq!(bodies(&again), vec!["b"]);
    assert_eq!(again[0].receive_count, 2);
    // A failed batch leaves its messages; past maxReceiveCount (2) they go to the DLQ.
    sqs_source::handle(&events, "svc-dev-f", &mapping(true), again).await;
    assert!(receive_jobs(&events).await.is_empty());
    let dead = db(&events).receive("jobs-dlq", 10, 1000).await.unwrap();
    assert_eq!(bodies(&dead), vec!["b"]);
}

#[tokio::test]
async fn without_report_batch_item_failures_a_successful_batch_is_all_deleted() {
    let invoker = FakeInvoker::answering(vec![]);
    let (events, _dir, ids) = with_jobs(invoker.clone()).await;
    let answer = serde_json::json!({"batchItemFailures": [{"itemIdentifier": ids[1]}]});
    invoker
        .answers
        .lock()
        .unwrap()
        .push_back(Invoked::Response(Bytes::from(answer.to_string())));
    sqs_source::handle(
        &events,
        "svc-dev-f",
        &mapping(false),
        receive_jobs(&events).await,
    )
    .await;
    assert!(receive_jobs(&events).await.is_empty());
}

#[tokio::test]
async fn an_unreadable_batch_answer_fails_the_whole_batch() {
    let invoker = FakeInvoker::answering(vec![Invoked::Response(Bytes::from_static(
        br#"{"batchItemFailures": [{"itemIdentifier": "no-such-id"}]}"#,
    ))]);
    let (events, _dir, _) = with_jobs(invoker).await;
    sqs_source::handle(
        &events,
        "svc-dev-f",
        &mapping(true),
        receive_jobs(&events).await,
    )
    .await;
    assert_eq!(bodies(&receive_jobs(&events).await), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_throttled_batch_is_given_back_not_deleted() {
    let invoker = FakeInvoker::answering(vec![Invoked::Throttled]);
    let (events, _dir, _) = with_jobs(invoker).await;
    sqs_source::handle(
        &events,
        "svc-dev-f",
        &mapping(true),
        receive_jobs(&events).await,
    )
    .await;
    // Given back with a short delay (500 ms), then delivered again.
    assert!(receive_jobs(&events).await.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(bodies(&receive_jobs(&events).await), vec!["a", "b", "c"]);
}
