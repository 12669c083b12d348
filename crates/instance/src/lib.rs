//! Instances: one sandboxed process serving one function version, one invocation at a time.
//!
//! Two transports reach the process: the Lambda Runtime API ([`runtime_api`], for `php-8x`,
//! `php-8x-console` and `provided*`) and FastCGI (for `php-8x-fpm`, one `php-cgi` worker per
//! instance). Either way the one entry is [`Instance::run`]: a [`Work`] in, a [`Done`] out (an
//! instance asked for the other transport's work refuses it, typed, never panics); a FastCGI
//! answer comes back parsed ([`WebReply`]). [`process`] owns the OS process: spawning, log
//! capture, killing the whole tree.
//! Every instance runs inside its own [`tusk_sandbox::InstanceSandbox`] (namespaces, cgroup,
//! unprivileged uid), frozen while idle.

mod fcgi;
mod process;
pub mod runtime_api;

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tusk_logs::LogStream;
use tusk_manifest::RuntimeKind;
use tusk_sandbox::{InstanceConfig, InstanceSandbox, Sandbox};

pub use fcgi::{FcgiFailure, WebReply, MAX_WEB_RESPONSE_BYTES};
pub use process::ExitInfo;
pub use runtime_api::{Invocation, Outcome};
pub use tusk_fastcgi::{CgiResponse, FastCgiError, Params};

/// One piece of work for an instance: the one input of [`Instance::run`].
pub enum Work {
    /// An event for a Runtime API instance (`php-8x`, console, `provided*`).
    Event(Invocation),
    /// A FastCGI request for a `php-cgi` worker (`php-8x-fpm`).
    Web { params: Params, body: Bytes },
}

/// How a piece of work ended: the one output of [`Instance::run`].
pub enum Done {
    /// What became of an event.
    Event(Outcome),
    /// The worker's parsed answer to a FastCGI request, or why there is none.
    Web(Result<WebReply, FcgiFailure>),
    /// The instance speaks the other transport: nothing ran.
    Refused(WrongKind),
}

/// Work sent to an instance that speaks the other transport (a pool's instances are all of its
/// function's kind, so this is a bug above, reported rather than a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WrongKind {
    #[error("this instance speaks FastCGI, not the Runtime API")]
    NotRuntimeApi,
    #[error("this instance does not speak FastCGI")]
    NotFastCgi,
}

/// Init phase limit, as on Lambda.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Receives every log line an instance prints (and the platform lines the pool adds).
pub trait LogSink: Send + Sync + 'static {
    fn log(&self, function: &str, request_id: Option<&str>, stream: LogStream, line: &str);
}

/// What to run for one function version. Shared by all its instances.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub function_name: String,
    pub version: String,
    pub kind: RuntimeKind,
    pub handler: String,
    /// The unpacked package (the task root).
    pub code_dir: PathBuf,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub environment: BTreeMap<String, String>,
    pub region: String,
    pub function_arn: String,
    /// Directory holding Tusk's PHP runtime (`bootstrap.php`).
    pub php_runtime_dir: PathBuf,
    /// Where per-instance sockets live.
    pub run_dir: PathBuf,
    pub php_cli: PathBuf,
    pub php_cgi: PathBuf,
    /// Invocations before an instance is replaced; 0 = never.
    pub max_invocations: u32,
    /// Size of the instance's private `/tmp` (`ephemeralStorageSize`), MB.
    pub ephemeral_mb: u32,
    /// `network: none` gives the instance no network but its own Runtime API.
    pub network: tusk_sandbox::Network,
    /// The node's sandbox: how instances are isolated.
    pub sandbox: Arc<Sandbox>,
    /// Persistent volumes (`fileSystemConfig`), mounted read-write.
    pub volumes: Vec<tusk_sandbox::Volume>,
}

impl LaunchSpec {
    /// Where the instance sees its package (`/var/task` when sandboxed).
    pub fn task_root(&self) -> PathBuf {
        self.sandbox.task_root(&self.code_dir)
    }

    /// Where the instance sees Tusk's PHP runtime (`/opt` when sandboxed).
    pub fn runtime_root(&self) -> PathBuf {
        self.sandbox.runtime_dir(&self.php_runtime_dir)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the instance process `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot set up the instance: {0}")]
    Setup(std::io::Error),
    #[error("{0}")]
    Sandbox(#[from] tusk_sandbox::SandboxError),
    /// The runtime reported `/runtime/init/error`.
    #[error("the function failed to initialise")]
    InitError { body: Bytes },
    #[error("the function's runtime exited during init ({0})")]
    Exited(ExitInfo),
    #[error("the function did not finish initialising within {} s", INIT_TIMEOUT.as_secs())]
    InitTimeout,
}

enum Transport {
    RuntimeApi(runtime_api::RuntimeApi),
    FastCgi(fcgi::FcgiWorker),
}

/// A started instance. Dropping it kills its process tree.
pub struct Instance {
    pub id: String,
    spec: Arc<LaunchSpec>,
    sandbox: Arc<InstanceSandbox>,
    process: process::Process,
    transport: Transport,
    /// Time from spawn until the runtime asked for its first event.
    pub init_duration: Duration,
    invocations: std::sync::atomic::AtomicU32,
    last_used: std::sync::Mutex<Instant>,
}

impl Instance {
    pub async fn start(
        spec: Arc<LaunchSpec>,
        logs: Arc<dyn LogSink>,
    ) -> Result<Instance, StartError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let sandbox = Arc::new(prepare_sandbox(&spec, &id).await?);
        let (process, transport) = match spec.kind {
            RuntimeKind::PhpFpm => {
                let (worker, process) =
                    fcgi::FcgiWorker::spawn(&spec, &id, logs, sandbox.clone()).await?;
                (process, Transport::FastCgi(worker))
            }
            _ => {
                let (api, process) =
                    process::spawn_runtime(&spec, &id, logs, sandbox.clone()).await?;
                api.wait_ready(&process).await?;
                (process, Transport::RuntimeApi(api))
            }
        };
        sandbox.initialized();
        // Idle until the pool hands it work (provisioned instances may wait long).
        sandbox.pause();
        Ok(Instance {
            id,
            spec,
            sandbox,
            process,
            transport,
            init_duration: started.elapsed(),
            invocations: Default::default(),
            last_used: std::sync::Mutex::new(Instant::now()),
        })
    }

    pub fn spec(&self) -> &Arc<LaunchSpec> {
        &self.spec
    }

    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }

    /// True until the instance takes its first invocation (its REPORT carries Init Duration).
    pub fn fresh(&self) -> bool {
        self.invocations.load(std::sync::atomic::Ordering::Relaxed) == 0
    }

    /// True once the instance served its `max_invocations`.
    pub fn exhausted(&self) -> bool {
        let max = self.spec.max_invocations;
        max > 0 && self.invocations.load(std::sync::atomic::Ordering::Relaxed) >= max
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Peak memory of the instance in MB: its cgroup's peak (all its processes and its
    /// `/tmp`), or the main process's peak RSS without a memory cgroup. Either is one small
    /// read of a kernel file, fine on an async thread.
    pub fn max_memory_used_mb(&self) -> u64 {
        match self.sandbox.peak_memory_bytes() {
            Some(bytes) => bytes.div_ceil(1024 * 1024),
            None => self.process.peak_rss_kb().div_ceil(1024),
        }
    }

    /// Tags the log lines that follow with `request_id` and starts a fresh log tail; thaws the
    /// instance.
    pub fn begin(&self, request_id: &str) {
        self.sandbox.resume();
        self.invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.process.capture().begin(request_id);
    }

    /// Adds a platform line (START/END/REPORT) of the current invocation (see [`Self::begin`])
    /// to the log and to the invocation's tail.
    pub fn platform_line(&self, line: &str) {
        self.process.capture().platform(line);
    }

    /// Waits briefly for output still in the pipe, so it is logged with this invocation.
    pub async fn drain(&self) {
        self.process.drain().await;
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    /// A line the pool received for the current invocation (e.g. FastCGI stderr records).
    pub fn output_line(&self, stream: LogStream, line: &str) {
        self.process.capture().output(stream, line);
    }

    /// The invocation's log (last 4 KB), for `X-Amz-Log-Type: Tail`.
    pub fn take_log_tail(&self) -> String {
        self.process.capture().finish()
    }

    /// Runs one piece of work, at most `timeout`: an event through the Runtime API or a request
    /// through FastCGI, whichever this instance speaks. Work of the other kind is refused with
    /// [`Done::Refused`]; nothing runs then.
    pub async fn run(&self, work: Work, timeout: Duration) -> Done {
        match (&self.transport, work) {
            (Transport::RuntimeApi(api), Work::Event(invocation)) => {
                self.sandbox.resume();
                let request_id = invocation.request_id.clone();
                let outcome = api.invoke(invocation, &self.process, timeout).await;
                let outcome = match outcome {
                    Outcome::Timeout => {
                        self.process.kill();
                        Outcome::Timeout
                    }
                    Outcome::Exited(info) if self.sandbox.oom_killed() => {
                        self.out_of_memory(&request_id, &info)
                    }
                    other => other,
                };
                self.idle();
                Done::Event(outcome)
            }
            (Transport::FastCgi(worker), Work::Web { params, body }) => {
                self.sandbox.resume();
                let result = worker.request(&params, &body, &self.process, timeout).await;
                let result = match result {
                    Err(FcgiFailure::Exited(info)) if self.sandbox.oom_killed() => {
                        Err(FcgiFailure::Exited(ExitInfo::new(format!(
                            "Runtime.OutOfMemory: the instance ran out of its {} MB ({info})",
                            self.spec.memory_mb
                        ))))
                    }
                    other => other,
                };
                if result.is_err() {
                    self.process.kill();
                }
                self.idle();
                Done::Web(result)
            }
            (Transport::FastCgi(_), Work::Event(_)) => Done::Refused(WrongKind::NotRuntimeApi),
            (Transport::RuntimeApi(_), Work::Web { .. }) => Done::Refused(WrongKind::NotFastCgi),
        }
    }

    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes a live instance between invocations: no CPU for it or anything it left behind.
    fn idle(&self) {
        if self.is_alive() {
            self.sandbox.pause();
        }
    }

    /// Lambda's answer when the memory limit killed the runtime mid-invocation.
    fn out_of_memory(&self, request_id: &str, info: &ExitInfo) -> Outcome {
        let message = format!("RequestId: {request_id} Error: Runtime exited with error: {info}");
        self.platform_line(&message);
        let body = serde_json::json!({
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": message,
        });
        Outcome::FunctionError {
            body: Bytes::from(body.to_string()),
            error_type: "Runtime.OutOfMemory".into(),
        }
    }
}

/// Creates the instance's cgroup and sandbox plan (cgroupfs work: off the async threads).
async fn prepare_sandbox(spec: &Arc<LaunchSpec>, id: &str) -> Result<InstanceSandbox, StartError> {
    let sandboxed = spec.sandbox.level() != tusk_sandbox::Level::Off;
    let volumes = spec.volumes.clone();
    let (spec, id) = (spec.clone(), id.to_string());
    let prepare = move || {
        spec.sandbox.prepare(&InstanceConfig {
            id: &id,
            code_dir: &spec.code_dir,
            runtime_dir: &spec.php_runtime_dir,
            memory_mb: spec.memory_mb,
            tmp_mb: spec.ephemeral_mb,
            network: spec.network,
            volumes: &spec.volumes,
        })
    };
    if !sandboxed {
        link_volumes_unsandboxed(&volumes);
        return Ok(prepare()?);
    }
    tokio::task::spawn_blocking(prepare)
        .await
        .map_err(|e| StartError::Setup(std::io::Error::other(e.to_string())))?
        .map_err(StartError::from)
}

/// Without a sandbox there is no private mount namespace: point `localMountPath` at the
/// volume with a symlink when that path is free (and the node may create it), so apps that
/// hard-code `/mnt/NAME` still work. `TUSK_VOLUME_<NAME>` (set for every instance) names the
/// directory either way.
fn link_volumes_unsandboxed(volumes: &[tusk_sandbox::Volume]) {
    for v in volumes {
        let at = std::path::Path::new(&v.mount_path);
        if std::fs::read_link(at).is_ok_and(|t| t == v.host_dir) {
            continue;
        }
        let linked = at
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::os::unix::fs::symlink(&v.host_dir, at));
        if let Err(e) = linked {
            tracing::warn!(volume = %v.name, mount = %v.mount_path, error = %e,
                "sandbox off: cannot link the volume at its localMountPath; the app can use TUSK_VOLUME_* instead");
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.process.kill();
    }
}
