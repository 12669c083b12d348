//! Unit tests of the pool's decisions, on fake instances (no PHP): scaling from zero, reuse,
//! the concurrency cap, the wait queue and its 429s, parallel starts, shares, reaping,
//! retirement and replacing broken instances.

use super::*;

struct NoLogs;
impl LogSink for NoLogs {
    fn log(&self, _: &str, _: Option<&str>, _: tusk_logs::LogStream, _: &str) {}
}

fn spec(reserved: Option<u32>) -> LaunchSpec {
    LaunchSpec {
        function_name: format!("svc-dev-f{reserved:?}"),
        version: "1".into(),
        kind: tusk_manifest::RuntimeKind::PhpFunction,
        handler: "index.php".into(),
        code_dir: "/nonexistent".into(),
        memory_mb: 128,
        timeout: Duration::from_secs(1),
        environment: Default::default(),
        region: "us-east-1".into(),
        function_arn: "arn".into(),
        php_runtime_dir: "/nonexistent".into(),
        run_dir: "/nonexistent".into(),
        php_cli: "/nonexistent".into(),
        php_cgi: "/nonexistent".into(),
        max_invocations: 0,
        ephemeral_mb: 0,
        network: Default::default(),
        sandbox: Arc::new(tusk_sandbox::Sandbox::off()),
        volumes: Vec::new(),
    }
}

fn limits() -> PoolLimits {
    PoolLimits {
        default_max_instances: 8,
        queue_limit: 10,
        queue_wait: Duration::from_millis(50),
        idle_timeout: Duration::from_secs(60),
    }
}

fn pool(reserved: Option<u32>, provisioned: u32) -> Arc<FunctionPool> {
    let limits = limits();
    Arc::new(FunctionPool::new(
        Arc::new(spec(reserved)),
        reserved,
        provisioned,
        limits,
        Arc::new(NoLogs),
        Arc::default(),
    ))
}

async fn take(pool: &Arc<FunctionPool>, n: usize) -> Vec<Slot> {
    let mut slots = Vec::new();
    for _ in 0..n {
        slots.push(pool.slot().await.expect("a free slot"));
    }
    slots
}

#[tokio::test]
async fn growing_frees_slots_at_once() {
    let pool = pool(Some(4), 0);
    assert_eq!((pool.max_concurrency(), pool.share()), (4, 4));
    pool.set_share(1);
    let held = take(&pool, 1).await;
    assert!(pool.saturated());
    assert!(matches!(pool.slot().await, Err(AcquireError::Throttled)));
    pool.set_share(3);
    assert_eq!((pool.share(), pool.free_slots()), (3, 2));
    // Configured max is unchanged: the share is what the node may run.
    assert_eq!(pool.max_concurrency(), 4);
    drop(held);
    assert_eq!(pool.free_slots(), 3);
}

#[tokio::test]
async fn growing_wakes_a_waiting_request() {
    let pool = pool(Some(2), 0);
    pool.set_share(0);
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.slot().await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    pool.set_share(1);
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn shrinking_takes_busy_slots_back_as_they_end() {
    let pool = pool(Some(4), 0);
    let mut held = take(&pool, 3).await;
    assert_eq!(pool.free_slots(), 1);
    // One free slot goes now; two of the busy ones are owed.
    pool.set_share(1);
    assert_eq!((pool.share(), pool.free_slots()), (1, 0));
    assert_eq!(pool.debt.load(Ordering::Acquire), 2);
    held.pop();
    assert_eq!(
        (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
        (0, 1)
    );
    held.pop();
    assert_eq!(
        (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
        (0, 0)
    );
    // The debt is repaid: the last slot to end is free again, and only one.
    held.pop();
    assert_eq!(pool.free_slots(), 1);
    let again = take(&pool, 1).await;
    assert!(pool.saturated());
    drop(again);
    assert_eq!(pool.free_slots(), 1);
}

#[tokio::test]
async fn growing_cancels_what_a_shrink_still_owes() {
    let pool = pool(Some(4), 0);
    let held = take(&pool, 4).await;
    pool.set_share(1);
    assert_eq!(pool.debt.load(Ordering::Acquire), 3);
    pool.set_share(3);
    assert_eq!(
        (pool.debt.load(Ordering::Acquire), pool.free_slots()),
        (1, 0)
    );
    drop(held);
    assert_eq!(
        (pool.debt.load(Ordering::Acquire), pool.free_slots()),
        (0, 3)
    );
    pool.set_share(0);
    assert_eq!(
        (pool.free_slots(), pool.debt.load(Ordering::Acquire)),
        (0, 0)
    );
    assert!(pool.saturated());
}

#[tokio::test]
async fn starts_and_provisioned_instances_follow_the_share() {
    let pool = pool(Some(4), 3);
    assert_eq!(pool.provisioned(), 3);
    pool.set_share(1);
    assert_eq!(pool.provisioned(), 1);
    assert!(pool.reserve_start());
    // One start in progress fills a share of one.
    assert!(!pool.reserve_start());
    pool.set_share(0);
    assert_eq!(pool.provisioned(), 0);
}

#[test]
fn reserved_concurrency_is_split_over_the_nodes() {
    use crate::Placement;
    let shares = |reserved, nodes| -> Vec<usize> {
        (0..nodes)
            .map(|index| Placement { index, nodes }.share_of(reserved))
            .collect()
    };
    assert_eq!(shares(2, 3), vec![1, 1, 0]);
    assert_eq!(shares(3, 3), vec![1, 1, 1]);
    assert_eq!(shares(7, 3), vec![3, 2, 2]);
    assert_eq!(shares(1, 1), vec![1]);
    assert_eq!(shares(0, 2), vec![0, 0]);
    assert_eq!(Placement::ALONE.share_of(5), 5);
    for (reserved, nodes) in [(2, 3), (10, 4), (5, 5), (1, 7)] {
        assert_eq!(shares(reserved, nodes).iter().sum::<usize>(), reserved);
    }
}

#[test]
fn the_dispatcher_fits_only_reserved_pools() {
    let dispatcher = crate::Dispatcher::default();
    let reserved = pool(Some(2), 0);
    let default = pool(None, 0);
    dispatcher.fit(&reserved);
    dispatcher.fit(&default);
    assert_eq!((reserved.share(), default.share()), (2, 8));
    dispatcher.set_placement(crate::Placement { index: 2, nodes: 3 });
    // Not in the dispatcher yet: a pool added later is fitted by `swap`.
    assert_eq!(reserved.share(), 2);
    dispatcher.swap(&[], vec![reserved.clone(), default.clone()]);
    assert_eq!((reserved.share(), default.share()), (0, 8));
    dispatcher.set_placement(crate::Placement { index: 0, nodes: 2 });
    assert_eq!((reserved.share(), default.share()), (1, 8));
}

use bytes::Bytes;
use fake::{FakeLauncher, Fakes};

mod fake;

fn fake_pool_with(
    reserved: Option<u32>,
    provisioned: u32,
    limits: PoolLimits,
) -> (Arc<FunctionPool>, Arc<Fakes>) {
    let fakes = Arc::new(Fakes::default());
    let pool = FunctionPool::with_launcher(
        Arc::new(spec(reserved)),
        reserved,
        provisioned,
        limits,
        Arc::new(NoLogs),
        Arc::default(),
        Arc::new(FakeLauncher(fakes.clone())),
    );
    (Arc::new(pool), fakes)
}

fn fake_pool(reserved: Option<u32>) -> (Arc<FunctionPool>, Arc<Fakes>) {
    fake_pool_with(reserved, 0, limits())
}

/// Runs `payload` and returns the number of the instance that answered.
async fn run(pool: &Arc<FunctionPool>, payload: &'static str) -> Result<usize, String> {
    match pool.invoke(Bytes::from(payload), None).await {
        Ok(InvokeResult {
            result: Ok(body), ..
        }) => Ok(String::from_utf8_lossy(&body).parse().unwrap()),
        Ok(InvokeResult {
            result: Err((_, error_type)),
            ..
        }) => Err(error_type),
        Err(e) => Err(e.to_string()),
    }
}

fn spawn_run(
    pool: &Arc<FunctionPool>,
    payload: &'static str,
) -> tokio::task::JoinHandle<Result<usize, String>> {
    let pool = pool.clone();
    tokio::spawn(async move { run(&pool, payload).await })
}

const THROTTLED: &str = "too many concurrent requests";

#[tokio::test(start_paused = true)]
async fn the_first_request_starts_an_instance_from_zero() {
    let (pool, fakes) = fake_pool(None);
    assert_eq!(pool.instance_counts(), (0, 0));
    assert_eq!(run(&pool, "ok").await, Ok(0));
    assert_eq!(fakes.starts(), 1);
    assert_eq!(pool.instance_counts(), (1, 0));
    assert_eq!(pool.metrics().cold_starts.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_instance_is_reused_instead_of_starting_another() {
    let (pool, fakes) = fake_pool(None);
    for _ in 0..3 {
        assert_eq!(run(&pool, "ok").await, Ok(0));
    }
    assert_eq!(fakes.starts(), 1);
    assert_eq!(fakes.instance(0).served.load(Ordering::Acquire), 3);
}

#[tokio::test(start_paused = true)]
async fn never_more_instances_run_at_once_than_the_reserved_concurrency() {
    let limits = PoolLimits {
        queue_wait: Duration::from_secs(10),
        ..limits()
    };
    let (pool, fakes) = fake_pool_with(Some(2), 0, limits);
    let runs: Vec<_> = (0..6).map(|_| spawn_run(&pool, "sleep:100")).collect();
    for r in runs {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(fakes.most_running.load(Ordering::Acquire), 2);
    assert_eq!(fakes.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_wait_queue_throttles_new_requests_at_once() {
    let limits = PoolLimits {
        queue_limit: 1,
        queue_wait: Duration::from_secs(10),
        ..limits()
    };
    let (pool, _) = fake_pool_with(Some(1), 0, limits);
    let busy = spawn_run(&pool, "sleep:1000");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let queued = spawn_run(&pool, "ok");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = tokio::time::Instant::now();
    assert_eq!(run(&pool, "ok").await, Err(THROTTLED.into()));
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(pool.metrics().throttles.load(Ordering::Relaxed), 1);
    // The queued one is served once the busy instance frees up.
    assert_eq!(busy.await.unwrap(), Ok(0));
    assert_eq!(queued.await.unwrap(), Ok(0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_throttled_after_the_queue_wait() {
    let (pool, _) = fake_pool(Some(1));
    let busy = spawn_run(&pool, "sleep:1000");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = tokio::time::Instant::now();
    assert_eq!(run(&pool, "ok").await, Err(THROTTLED.into()));
    // limits().queue_wait
    assert_eq!(before.elapsed(), Duration::from_millis(50));
    assert_eq!(busy.await.unwrap(), Ok(0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_whichever_instance_frees_first() {
    let limits = PoolLimits {
        queue_wait: Duration::from_secs(30),
        ..limits()
    };
    let (pool, fakes) = fake_pool_with(Some(2), 0, limits);
    let busy = spawn_run(&pool, "sleep:100");
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The next start is slow: the waiter must not sit it out while instance 0 frees up.
    *fakes.start_delay.lock().unwrap() = Duration::from_secs(5);
    let before = tokio::time::Instant::now();
    assert_eq!(run(&pool, "ok").await, Ok(0));
    assert!(before.elapsed() < Duration::from_secs(1));
    assert_eq!(busy.await.unwrap(), Ok(0));
    // The start nobody waits for any more ends in the idle list.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(fakes.starts(), 2);
    assert_eq!(pool.instance_counts(), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn at_most_twice_the_cores_start_at_once() {
    let burst = parallel_starts() * 2 + 3;
    let limits = PoolLimits {
        default_max_instances: burst,
        queue_limit: burst,
        queue_wait: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
    };
    let (pool, fakes) = fake_pool_with(None, 0, limits);
    *fakes.start_delay.lock().unwrap() = Duration::from_secs(1);
    let runs: Vec<_> = (0..burst).map(|_| spawn_run(&pool, "sleep:10")).collect();
    for r in runs {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(
        fakes.most_starting.load(Ordering::Acquire),
        parallel_starts()
    );
}

#[tokio::test(start_paused = true)]
async fn a_share_of_zero_throttles_and_growing_it_serves_again() {
    let (pool, _) = fake_pool(Some(2));
    pool.set_share(0);
    assert_eq!(run(&pool, "ok").await, Err(THROTTLED.into()));
    pool.set_share(1);
    assert_eq!(run(&pool, "ok").await, Ok(0));
}

#[tokio::test(start_paused = true)]
async fn shrinking_the_share_lets_running_requests_finish_and_caps_new_ones() {
    let limits = PoolLimits {
        queue_wait: Duration::from_secs(30),
        ..limits()
    };
    let (pool, fakes) = fake_pool_with(Some(3), 0, limits);
    let runs: Vec<_> = (0..3).map(|_| spawn_run(&pool, "sleep:100")).collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fakes.running.load(Ordering::Acquire), 3);
    pool.set_share(1);
    for r in runs {
        assert!(r.await.unwrap().is_ok(), "a running request was cut off");
    }
    fakes.most_running.store(0, Ordering::Release);
    let runs: Vec<_> = (0..4).map(|_| spawn_run(&pool, "sleep:100")).collect();
    for r in runs {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(fakes.most_running.load(Ordering::Acquire), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_instances_are_reaped_after_the_idle_timeout_down_to_the_provisioned_floor() {
    let limits = PoolLimits {
        queue_wait: Duration::from_secs(30),
        ..limits()
    };
    let (pool, fakes) = fake_pool_with(Some(3), 1, limits);
    let runs: Vec<_> = (0..3).map(|_| spawn_run(&pool, "sleep:100")).collect();
    for r in runs {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(pool.instance_counts(), (3, 0));
    tokio::time::sleep(Duration::from_secs(59)).await;
    pool.reap_idle();
    assert_eq!(
        pool.instance_counts(),
        (3, 0),
        "reaped before the idle timeout"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    pool.reap_idle();
    assert_eq!(pool.instance_counts(), (1, 0));
    let alive = (0..3)
        .filter(|n| fakes.instance(*n).alive.load(Ordering::Acquire))
        .count();
    assert_eq!(alive, 1, "reaped instances are stopped");
}

#[tokio::test(start_paused = true)]
async fn provisioned_instances_are_started_ahead_of_requests() {
    let (pool, fakes) = fake_pool_with(Some(4), 2, limits());
    pool.ensure_provisioned().await;
    assert_eq!((fakes.starts(), pool.instance_counts()), (2, (2, 0)));
    assert_eq!(run(&pool, "ok").await.map(|_| fakes.starts()), Ok(2));
}

#[tokio::test(start_paused = true)]
async fn a_deploy_retires_the_old_pool_and_stops_its_instances() {
    let dispatcher = crate::Dispatcher::default();
    let (old, old_fakes) = fake_pool(None);
    dispatcher.swap(&[], vec![old.clone()]);
    assert_eq!(run(&old, "ok").await, Ok(0));
    let in_flight = spawn_run(&old, "sleep:100");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (new, _) = fake_pool(None);
    dispatcher.swap(&[old.name().to_string()], vec![new.clone()]);
    assert!(Arc::ptr_eq(&dispatcher.get(old.name()).unwrap(), &new));
    // The in-flight request finishes on the old version; its instance is not kept.
    assert_eq!(in_flight.await.unwrap(), Ok(0));
    assert_eq!(old.instance_counts(), (0, 0));
    assert!(!old_fakes.instance(0).alive.load(Ordering::Acquire));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_instance_is_replaced_by_a_fresh_one() {
    let (pool, fakes) = fake_pool(None);
    assert_eq!(run(&pool, "hang").await, Err("Sandbox.Timedout".into()));
    assert_eq!(pool.metrics().timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(pool.instance_counts(), (0, 0));
    assert_eq!(run(&pool, "ok").await, Ok(1));
    assert_eq!(fakes.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_died_while_idle_is_replaced() {
    let (pool, fakes) = fake_pool(None);
    assert_eq!(run(&pool, "ok").await, Ok(0));
    fakes.instance(0).alive.store(false, Ordering::Release);
    assert_eq!(run(&pool, "ok").await, Ok(1));
    assert_eq!(pool.instance_counts(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_event_the_dead_instance_never_took_is_retried_on_a_fresh_one() {
    let (pool, fakes) = fake_pool(None);
    assert_eq!(run(&pool, "ok").await, Ok(0));
    fakes
        .instance(0)
        .dies_before_next
        .store(true, Ordering::Release);
    assert_eq!(run(&pool, "ok").await, Ok(1));
    assert_eq!(pool.metrics().invocations.load(Ordering::Relaxed), 2);
    assert_eq!(pool.metrics().errors.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_answers_with_an_init_error_and_the_next_request_tries_again() {
    let (pool, fakes) = fake_pool(None);
    fakes.fail_starts.store(true, Ordering::Release);
    assert_eq!(run(&pool, "ok").await, Err("Runtime.InitTimeout".into()));
    assert_eq!(pool.instance_counts(), (0, 0));
    fakes.fail_starts.store(false, Ordering::Release);
    assert_eq!(run(&pool, "ok").await, Ok(0));
}

/// Sends one web request; the instance's number, or how it failed.
async fn web(pool: &Arc<FunctionPool>, body: &'static str) -> Result<usize, String> {
    let result = pool
        .http(
            "req".into(),
            tusk_instance::Params::new(),
            Bytes::from(body),
        )
        .await
        .map_err(|e| e.to_string())?;
    match result.outcome {
        WebOutcome::Response(cgi) => Ok(String::from_utf8_lossy(&cgi.body).parse().unwrap()),
        WebOutcome::BadResponse(e) => Err(e.to_string()),
        WebOutcome::Timeout => Err("timeout".into()),
        WebOutcome::Crashed(why) => Err(why),
    }
}

#[tokio::test(start_paused = true)]
async fn web_requests_reuse_a_worker_and_a_timed_out_worker_is_replaced() {
    let (pool, fakes) = fake_pool(None);
    assert_eq!(web(&pool, "ok").await, Ok(0));
    assert_eq!(web(&pool, "ok").await, Ok(0));
    assert_eq!(web(&pool, "hang").await, Err("timeout".into()));
    assert_eq!(pool.metrics().timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(web(&pool, "ok").await, Ok(1));
    assert_eq!(fakes.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_web_request_that_cannot_start_a_worker_is_answered_as_a_crash() {
    let (pool, fakes) = fake_pool(None);
    fakes.fail_starts.store(true, Ordering::Release);
    let why = web(&pool, "ok").await.unwrap_err();
    assert!(why.contains("Runtime.InitTimeout"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn work_an_instance_refuses_is_answered_as_a_crash_not_a_panic() {
    let (pool, _fakes) = fake_pool(None);
    let why = web(&pool, "wrong-kind").await.unwrap_err();
    assert!(why.contains("does not speak FastCGI"), "{why}");
    assert_eq!(pool.metrics().errors.load(Ordering::Relaxed), 1);
    assert_eq!(web(&pool, "ok").await, Ok(0));
}
