//! Unit tests of the pool's decisions, on fake instances (no PHP): scaling from zero, reuse,
//! the concurrency cap, the wait queue and its 429s, parallel starts, shares, reaping,
//! retirement and replacing broken instances.

use super::*;

struct NoLogs;
impl LogSink for NoLogs {
    fn log(&self, _: &str, _: Option<&str>, _: tusk_store::LogStream, _: &str) {}
}

fn pool(reserved: Option<u32>, provisioned: u32) -> Arc<FunctionPool> {
    let spec = LaunchSpec {
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
    };
    let limits = PoolLimits {
        default_max_instances: 8,
        queue_limit: 10,
        queue_wait: Duration::from_millis(50),
        idle_timeout: Duration::from_secs(60),
    };
    Arc::new(FunctionPool::new(
        Arc::new(spec),
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
