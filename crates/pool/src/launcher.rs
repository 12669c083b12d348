//! The seam below the pool: how it starts an instance and the few things it asks of one.
//! The node's [`InstanceLauncher`] starts real, sandboxed processes ([`tusk_instance`]); the
//! pool's unit tests start fakes, so its decisions (scaling, queueing, reuse, reaping) are
//! tested without PHP.
//!
//! It must never make decisions of its own: when to start, reuse or stop an instance is the
//! pool's; how to run one is the instance's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tusk_instance::{Done, Instance, LaunchSpec, LogSink, StartError, Work};
use tusk_logs::LogStream;

/// A boxed future, so the traits below stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts the instances of a pool.
pub trait Launcher: Send + Sync + 'static {
    /// Starts one instance of `spec`, ready for its first invocation (initialised, frozen).
    fn launch(&self, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Running, StartError>>;
}

/// A started instance as the pool holds it. Dropping it stops the instance.
pub type Running = Box<dyn PoolInstance>;

/// What the pool asks of a started instance.
pub trait PoolInstance: Send + Sync + 'static {
    fn is_alive(&self) -> bool;
    /// True until the instance takes its first invocation.
    fn fresh(&self) -> bool;
    /// True once the instance served its `max_invocations`.
    fn exhausted(&self) -> bool;
    fn idle_for(&self) -> Duration;
    /// Time from spawn until the runtime was ready (REPORT's Init Duration).
    fn init_duration(&self) -> Duration;
    fn max_memory_used_mb(&self) -> u64;
    /// Tags the log lines that follow with `request_id`; thaws the instance.
    fn begin(&self, request_id: &str);
    fn platform_line(&self, line: &str);
    fn output_line(&self, stream: LogStream, line: &str);
    /// Waits briefly for output still in the pipe.
    fn drain(&self) -> BoxFuture<'_, ()>;
    fn take_log_tail(&self) -> String;
    /// One piece of work (an event or a FastCGI request), at most `timeout`.
    fn run(&self, work: Work, timeout: Duration) -> BoxFuture<'_, Done>;
}

/// Starts real instances: processes in their sandboxes, logging to `logs`.
pub struct InstanceLauncher {
    pub logs: Arc<dyn LogSink>,
}

impl Launcher for InstanceLauncher {
    fn launch(&self, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Running, StartError>> {
        let logs = self.logs.clone();
        Box::pin(async move {
            let instance = Instance::start(spec, logs).await?;
            Ok(Box::new(instance) as Running)
        })
    }
}

impl PoolInstance for Instance {
    fn is_alive(&self) -> bool {
        Instance::is_alive(self)
    }
    fn fresh(&self) -> bool {
        Instance::fresh(self)
    }
    fn exhausted(&self) -> bool {
        Instance::exhausted(self)
    }
    fn idle_for(&self) -> Duration {
        Instance::idle_for(self)
    }
    fn init_duration(&self) -> Duration {
        self.init_duration
    }
    fn max_memory_used_mb(&self) -> u64 {
        Instance::max_memory_used_mb(self)
    }
    fn begin(&self, request_id: &str) {
        Instance::begin(self, request_id)
    }
    fn platform_line(&self, line: &str) {
        Instance::platform_line(self, line)
    }
    fn output_line(&self, stream: LogStream, line: &str) {
        Instance::output_line(self, stream, line)
    }
    fn drain(&self) -> BoxFuture<'_, ()> {
        Box::pin(Instance::drain(self))
    }
    fn take_log_tail(&self) -> String {
        Instance::take_log_tail(self)
    }
    fn run(&self, work: Work, timeout: Duration) -> BoxFuture<'_, Done> {
        Box::pin(Instance::run(self, work, timeout))
    }
}
