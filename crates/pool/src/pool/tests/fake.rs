//! Fake instances for the pool's unit tests: they start, answer, sleep, hang and die on
//! command, and count how many start and run at once, all on tokio's (paused) clock.

use crate::launcher::{BoxFuture, Launcher, PoolInstance, Running};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tusk_instance::{
    Done, FcgiFailure, Invocation, LaunchSpec, Outcome, StartError, WebReply, Work, WrongKind,
};

/// What the test sees of the fake instances and their launcher.
#[derive(Default)]
pub(super) struct Fakes {
    /// Every instance started, in start order.
    pub(super) started: Mutex<Vec<Arc<FakeState>>>,
    /// How long the next starts take.
    pub(super) start_delay: Mutex<Duration>,
    pub(super) fail_starts: AtomicBool,
    pub(super) starting: AtomicUsize,
    pub(super) most_starting: AtomicUsize,
    pub(super) running: AtomicUsize,
    pub(super) most_running: AtomicUsize,
}

impl Fakes {
    pub(super) fn starts(&self) -> usize {
        self.started.lock().unwrap().len()
    }
    pub(super) fn instance(&self, n: usize) -> Arc<FakeState> {
        self.started.lock().unwrap()[n].clone()
    }
}

/// One fake instance's state, kept by the test after the pool dropped the instance.
pub(super) struct FakeState {
    pub(super) id: usize,
    pub(super) alive: AtomicBool,
    /// The next invocation finds the process gone before it took the event.
    pub(super) dies_before_next: AtomicBool,
    pub(super) served: AtomicU32,
    pub(super) last_used: Mutex<tokio::time::Instant>,
}

struct FakeInstance {
    state: Arc<FakeState>,
    fakes: Arc<Fakes>,
}

impl Drop for FakeInstance {
    // As a real instance: dropping it kills it.
    fn drop(&mut self) {
        self.state.alive.store(false, Ordering::Release);
    }
}

pub(super) struct FakeLauncher(pub(super) Arc<Fakes>);

fn bump_max(max: &AtomicUsize, now: usize) {
    max.fetch_max(now, Ordering::AcqRel);
}

impl Launcher for FakeLauncher {
    fn launch(&self, _: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Running, StartError>> {
        let fakes = self.0.clone();
        Box::pin(async move {
            let now = fakes.starting.fetch_add(1, Ordering::AcqRel) + 1;
            bump_max(&fakes.most_starting, now);
            let delay = *fakes.start_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            fakes.starting.fetch_sub(1, Ordering::AcqRel);
            if fakes.fail_starts.load(Ordering::Acquire) {
                return Err(StartError::InitTimeout);
            }
            let mut started = fakes.started.lock().unwrap();
            let state = Arc::new(FakeState {
                id: started.len(),
                alive: AtomicBool::new(true),
                dies_before_next: AtomicBool::new(false),
                served: AtomicU32::new(0),
                last_used: Mutex::new(tokio::time::Instant::now()),
            });
            started.push(state.clone());
            drop(started);
            Ok(Box::new(FakeInstance {
                state,
                fakes: fakes.clone(),
            }) as Running)
        })
    }
}

impl PoolInstance for FakeInstance {
    fn is_alive(&self) -> bool {
        self.state.alive.load(Ordering::Acquire)
    }
    fn fresh(&self) -> bool {
        self.state.served.load(Ordering::Acquire) == 0
    }
    fn exhausted(&self) -> bool {
        false
    }
    fn idle_for(&self) -> Duration {
        self.state.last_used.lock().unwrap().elapsed()
    }
    fn init_duration(&self) -> Duration {
        Duration::from_millis(5)
    }
    fn max_memory_used_mb(&self) -> u64 {
        1
    }
    fn begin(&self, _: &str) {
        self.state.served.fetch_add(1, Ordering::AcqRel);
    }
    fn platform_line(&self, _: &str) {}
    fn output_line(&self, _: tusk_logs::LogStream, _: &str) {}
    fn drain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            *self.state.last_used.lock().unwrap() = tokio::time::Instant::now();
        })
    }
    fn take_log_tail(&self) -> String {
        String::new()
    }
    /// Runs either kind of work (a fake speaks both transports), except a web request whose
    /// body is `wrong-kind`, refused as a Runtime API instance would.
    fn run(&self, work: Work, timeout: Duration) -> BoxFuture<'_, Done> {
        Box::pin(async move {
            match work {
                Work::Event(invocation) => Done::Event(self.event(invocation, timeout).await),
                Work::Web { body, .. } if body.as_ref() == b"wrong-kind" => {
                    Done::Refused(WrongKind::NotFastCgi)
                }
                Work::Web { body, .. } => Done::Web(self.web(&body, timeout).await),
            }
        })
    }
}

impl FakeInstance {
    /// The payload says what to do: `sleep:MS`, `hang` (past the timeout), else answer at once.
    /// The answer is the instance's number.
    async fn event(&self, invocation: Invocation, timeout: Duration) -> Outcome {
        if self.state.dies_before_next.swap(false, Ordering::AcqRel) {
            self.state.alive.store(false, Ordering::Release);
            return Outcome::NotDelivered;
        }
        let now = self.fakes.running.fetch_add(1, Ordering::AcqRel) + 1;
        bump_max(&self.fakes.most_running, now);
        let command = String::from_utf8_lossy(&invocation.payload).into_owned();
        let outcome = if command == "hang" {
            tokio::time::sleep(timeout).await;
            // A real instance kills its process tree on a timeout.
            self.state.alive.store(false, Ordering::Release);
            Outcome::Timeout
        } else {
            if let Some(ms) = command.strip_prefix("sleep:") {
                let ms = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Outcome::Success(Bytes::from(self.state.id.to_string()))
        };
        self.fakes.running.fetch_sub(1, Ordering::AcqRel);
        outcome
    }
    /// The body says what to do, as for [`Self::event`]; the response body is the instance's
    /// number.
    async fn web(&self, body: &Bytes, timeout: Duration) -> Result<WebReply, FcgiFailure> {
        if body.as_ref() == b"hang" {
            tokio::time::sleep(timeout).await;
            self.state.alive.store(false, Ordering::Release);
            return Err(FcgiFailure::Timeout);
        }
        Ok(WebReply {
            response: Ok(tusk_instance::CgiResponse {
                status: 200,
                headers: Vec::new(),
                body: Bytes::from(self.state.id.to_string()),
            }),
            stderr: Bytes::new(),
        })
    }
}
