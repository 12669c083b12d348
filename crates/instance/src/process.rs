//! The OS side of an instance: spawn inside its sandbox with a clean environment in its own
//! process group, capture stdout+stderr line by line, notice the exit, kill the whole tree.

use crate::runtime_api::RuntimeApi;
use crate::{LaunchSpec, LogSink, StartError};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tusk_logs::LogStream;
use tusk_manifest::RuntimeKind;
use tusk_sandbox::{InstanceSandbox, SandboxError};

/// The last 4 KB of an invocation's log is what `X-Amz-Log-Type: Tail` returns.
const TAIL_BYTES: usize = 4096;
/// Longer lines are split so one runaway print cannot hold megabytes in memory.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ExitInfo(String);

impl ExitInfo {
    pub(crate) fn new(s: String) -> Self {
        ExitInfo(s)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which request a line belongs to, and the current invocation's log tail.
pub(crate) struct Capture {
    function: String,
    sink: Arc<dyn LogSink>,
    state: Mutex<CaptureState>,
}

#[derive(Default)]
struct CaptureState {
    request_id: Option<String>,
    tail: String,
    /// Platform lines (START, END, REPORT …) not yet handed to the sink: consecutive ones go
    /// out as one multi-line record, so a request that prints nothing costs one stored row
    /// instead of three (log writes were a fifth of the node's CPU under load).
    pending: String,
}

impl CaptureState {
    fn take_pending(&mut self) -> Option<(String, Option<String>)> {
        if self.pending.is_empty() {
            return None;
        }
        Some((std::mem::take(&mut self.pending), self.request_id.clone()))
    }
}

impl Capture {
    pub(crate) fn begin(&self, request_id: &str) {
        let flushed = self.state.lock().ok().and_then(|mut s| {
            let flushed = s.take_pending();
            s.request_id = Some(request_id.to_string());
            s.tail.clear();
            flushed
        });
        self.flush(flushed);
    }

    /// Platform lines belong to the invocation [`Self::begin`] started.
    pub(crate) fn platform(&self, line: &str) {
        if let Ok(mut s) = self.state.lock() {
            push_tail(&mut s.tail, line);
            if !s.pending.is_empty() {
                s.pending.push('\n');
            }
            s.pending.push_str(line);
        }
    }

    pub(crate) fn finish(&self) -> String {
        let (tail, flushed) = match self.state.lock() {
            Ok(mut s) => (std::mem::take(&mut s.tail), s.take_pending()),
            Err(_) => (String::new(), None),
        };
        self.flush(flushed);
        tail
    }

    fn flush(&self, pending: Option<(String, Option<String>)>) {
        if let Some((lines, request_id)) = pending {
            self.sink.log(
                &self.function,
                request_id.as_deref(),
                LogStream::Platform,
                &lines,
            );
        }
    }

    fn line(&self, line: &str) {
        self.output(LogStream::Stdout, line);
    }

    pub(crate) fn output(&self, stream: LogStream, line: &str) {
        let (request_id, flushed) = match self.state.lock() {
            Ok(mut s) => {
                push_tail(&mut s.tail, line);
                (s.request_id.clone(), s.take_pending())
            }
            Err(_) => (None, None),
        };
        // Platform lines logged before this output go out first, keeping the order.
        self.flush(flushed);
        self.sink
            .log(&self.function, request_id.as_deref(), stream, line);
    }
}

fn push_tail(tail: &mut String, line: &str) {
    tail.push_str(line);
    tail.push('\n');
    if tail.len() > 2 * TAIL_BYTES {
        let mut cut = tail.len() - TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail.drain(..cut);
    }
}

pub(crate) struct Process {
    pid: i32,
    sandbox: Arc<InstanceSandbox>,
    exit: watch::Receiver<Option<ExitInfo>>,
    capture: Arc<Capture>,
    log_fd: RawFd,
    reader_busy: Arc<AtomicBool>,
    /// Set by [`Process::kill`]: the exit is only observed a moment later, and an instance
    /// killed after a timeout must not be handed out again in between.
    killed: AtomicBool,
}

impl Process {
    pub(crate) fn capture(&self) -> &Capture {
        &self.capture
    }

    pub(crate) fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// False once the process exited or was told to die.
    pub(crate) fn is_alive(&self) -> bool {
        !self.killed.load(Ordering::Acquire) && self.exit.borrow().is_none()
    }

    /// Resolves when the main process has exited.
    pub(crate) async fn exited(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        loop {
            if let Some(info) = rx.borrow_and_update().clone() {
                return info;
            }
            if rx.changed().await.is_err() {
                return ExitInfo::new("instance monitor stopped".into());
            }
        }
    }

    /// Kills the instance's whole tree: its process group, and everything in its cgroup
    /// (frozen processes included). In a PID namespace the main process is its init, and the
    /// kernel kills the rest when it dies.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        // SAFETY: kill(2) with a negative pid signals the process group we created with
        // process_group(0); it touches no memory. A stale group id is harmless (ESRCH).
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        self.sandbox.kill_all();
    }

    /// Peak RSS of the main process (VmHWM), in KB; 0 when it is gone. procfs reads are served
    /// from kernel memory and never block on I/O, so this is fine on an async thread.
    pub(crate) fn peak_rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Output the function printed before answering may still sit in the pipe; wait (briefly)
    /// until the reader has taken it, so it lands in this invocation's log and tail.
    pub(crate) async fn drain(&self) {
        for _ in 0..50 {
            if pending_bytes(self.log_fd) == 0 && !self.reader_busy.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
}

impl Drop for Process {
    /// A process nobody holds any more (e.g. a start that failed half-way) must not linger.
    fn drop(&mut self) {
        self.kill();
    }
}

fn pending_bytes(fd: RawFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local.
    // The fd belongs to the log pipe, open while the reader task lives; if it was closed the
    // call fails with EBADF and we report 0.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        n
    }
}

/// The environment every instance gets: Lambda's variables plus the function's own. Tusk's
/// own environment never reaches an instance.
pub(crate) fn base_env(spec: &LaunchSpec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TZ".into(), ":UTC".into()),
        ("HOME".into(), "/tmp".into()),
        (
            "LAMBDA_TASK_ROOT".into(),
            spec.task_root().display().to_string(),
        ),
        (
            "LAMBDA_RUNTIME_DIR".into(),
            spec.runtime_root().display().to_string(),
        ),
        ("_HANDLER".into(), spec.handler.clone()),
        (
            "AWS_LAMBDA_FUNCTION_NAME".into(),
            spec.function_name.clone(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), spec.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            spec.memory_mb.to_string(),
        ),
        ("AWS_REGION".into(), spec.region.clone()),
        ("AWS_DEFAULT_REGION".into(), spec.region.clone()),
        ("AWS_EXECUTION_ENV".into(), "Tusk".into()),
        (
            "TUSK_MAX_INVOCATIONS".into(),
            spec.max_invocations.to_string(),
        ),
        // Bref's convention: `php/conf.d/*.ini` in the package override php.ini per function
        // (and enable opt-in extensions), after the node's copy of the distribution's conf.d.
        ("PHP_INI_SCAN_DIR".into(), ini_scan_dir(spec)),
    ];
    env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// The node's copy of the distribution's conf.d for this SAPI (written at node start without
/// the opt-in extensions), then the package's own `php/conf.d`. A leading ':' (PHP's own
/// scan directory) when the node made no copy.
fn ini_scan_dir(spec: &LaunchSpec) -> String {
    let sapi = if spec.kind == RuntimeKind::PhpFpm {
        "cgi"
    } else {
        "cli"
    };
    let package = format!("{}/php/conf.d", spec.task_root().display());
    if spec.php_runtime_dir.join("conf.d").join(sapi).is_dir() {
        format!("{}/conf.d/{sapi}:{package}", spec.runtime_root().display())
    } else {
        format!(":{package}")
    }
}

/// Lambda's per-execution-environment variables: the log stream names the instance, which
/// is the way to tell instances apart (inside a PID namespace every runtime is PID 1).
pub(crate) fn instance_env(spec: &LaunchSpec, id: &str) -> [(String, String); 2] {
    let today = time::OffsetDateTime::now_utc();
    [
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", spec.function_name),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!(
                "{:04}/{:02}/{:02}/[{}]{id}",
                today.year(),
                u8::from(today.month()),
                today.day(),
                spec.version
            ),
        ),
    ]
}

/// Starts a Runtime API client (Tusk's PHP runtime, or the package's `bootstrap`) and its
/// Runtime API listener, bound inside the instance's network namespace.
pub(crate) async fn spawn_runtime(
    spec: &Arc<LaunchSpec>,
    id: &str,
    sink: Arc<dyn LogSink>,
    sandbox: Arc<InstanceSandbox>,
) -> Result<(RuntimeApi, Process), StartError> {
    let program = match spec.kind {
        RuntimeKind::Provided => spec.task_root().join("bootstrap"),
        _ => spec.php_cli.clone(),
    };
    let bind = || {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    let for_build = spec.clone();
    let path = program.clone();
    let id = id.to_string();
    let build = move |api: &std::net::TcpListener| {
        let spec = for_build;
        let mut cmd = tokio::process::Command::new(&path);
        if spec.kind != RuntimeKind::Provided {
            cmd.args(php_cli_flags());
            cmd.arg(spec.runtime_root().join("bootstrap.php"));
        }
        cmd.env_clear()
            .envs(base_env(&spec))
            .envs(instance_env(&spec, &id))
            .env("AWS_LAMBDA_RUNTIME_API", api.local_addr()?.to_string());
        if spec.kind == RuntimeKind::PhpConsole {
            cmd.env("TUSK_RUNTIME_MODE", "console");
        }
        cmd.current_dir(&spec.code_dir).stdin(Stdio::null());
        Ok(cmd)
    };
    let (listener, process) = spawn(spec, sink, sandbox.clone(), &program, bind, build).await?;
    // On the host's network, other instances could reach this listener too: only the
    // instance's own uid may talk to it. A private network namespace needs no check.
    let api = RuntimeApi::from_listener(listener, sandbox.runtime_api_owner())?;
    Ok((api, process))
}

/// `-d` flags for the PHP CLI runtime (runtime/php/bootstrap.php documents them): errors to
/// stderr (captured as logs), no PHP-level time limit (Tusk enforces `timeout`), opcache on.
fn php_cli_flags() -> Vec<&'static str> {
    [
        "display_errors=stderr",
        "log_errors=0",
        "html_errors=0",
        "error_reporting=-1",
        "variables_order=EGPCS",
        "default_socket_timeout=-1",
        "max_execution_time=0",
        "opcache.enable_cli=1",
        "opcache.memory_consumption=32",
        "opcache.interned_strings_buffer=4",
        "opcache.validate_timestamps=0",
    ]
    .into_iter()
    .flat_map(|flag| ["-d", flag])
    .collect()
}

/// Spawns the command `build` makes inside the instance's sandbox, in its own process group
/// with stdout and stderr on one log pipe. `setup` runs first, in the instance's network
/// namespace; its result is handed to `build` and returned.
pub(crate) async fn spawn<T, S, B>(
    spec: &LaunchSpec,
    sink: Arc<dyn LogSink>,
    sandbox: Arc<InstanceSandbox>,
    program: &std::path::Path,
    setup: S,
    build: B,
) -> Result<(T, Process), StartError>
where
    T: Send + 'static,
    S: FnOnce() -> std::io::Result<T> + Send + 'static,
    B: FnOnce(&T) -> std::io::Result<tokio::process::Command> + Send + 'static,
{
    let (reader, writer) = std::io::pipe().map_err(StartError::Setup)?;
    let writer2 = writer.try_clone().map_err(StartError::Setup)?;
    let build = move |t: &T| {
        let mut cmd = build(t)?;
        cmd.stdout(Stdio::from(OwnedFd::from(writer)))
            .stderr(Stdio::from(OwnedFd::from(writer2)))
            .process_group(0)
            .kill_on_drop(true);
        // The command (and our copies of the write ends) is dropped right after the spawn,
        // so EOF arrives when the instance's processes are all gone.
        Ok(cmd)
    };
    let (value, mut child) = sandbox.spawn(setup, build).await.map_err(|e| match e {
        SandboxError::Exec(source) => StartError::Spawn {
            program: program.display().to_string(),
            source,
        },
        other => StartError::Sandbox(other),
    })?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let reader = OwnedFd::from(reader);
    let log_fd = reader.as_raw_fd();
    let pipe =
        tokio::net::unix::pipe::Receiver::from_owned_fd(reader).map_err(StartError::Setup)?;

    let capture = Arc::new(Capture {
        function: spec.function_name.clone(),
        sink,
        state: Mutex::new(CaptureState::default()),
    });
    let reader_busy = Arc::new(AtomicBool::new(false));
    tokio::spawn(read_lines(pipe, capture.clone(), reader_busy.clone()));

    let (exit_tx, exit_rx) = watch::channel(None);
    let watched = sandbox.clone();
    tokio::spawn(async move {
        let info = match child.wait().await {
            Ok(status) => match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(sig)) => format!("signal: {sig} ({})", signal_name(sig)),
                _ => "exited".to_string(),
            },
            Err(e) => format!("lost track of the process: {e}"),
        };
        // Leftover background processes of the instance die with it.
        // SAFETY: signals the instance's own process group; touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        watched.kill_all();
        let info = if watched.oom_killed() {
            format!("{info} (out of memory)")
        } else {
            info
        };
        let _ = exit_tx.send(Some(ExitInfo(info)));
    });
    Ok((
        value,
        Process {
            pid,
            sandbox,
            exit: exit_rx,
            capture,
            log_fd,
            reader_busy,
            killed: AtomicBool::new(false),
        },
    ))
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "killed",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGABRT => "aborted",
        libc::SIGTERM => "terminated",
        _ => "signal",
    }
}

async fn read_lines(
    mut pipe: tokio::net::unix::pipe::Receiver,
    capture: Arc<Capture>,
    busy: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        busy.store(true, Ordering::Release);
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            emit(&capture, &pending[start..end]);
            start = end + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            emit(&capture, &pending);
            pending = rest;
        }
        // Output without a trailing newline is still this invocation's: flush it when the pipe
        // is momentarily empty.
        if !pending.is_empty() && pending_bytes(pipe.as_raw_fd()) == 0 {
            emit(&capture, &pending);
            pending.clear();
        }
        busy.store(false, Ordering::Release);
    }
    if !pending.is_empty() {
        emit(&capture, &pending);
    }
}

fn emit(capture: &Capture, bytes: &[u8]) {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    capture.line(&String::from_utf8_lossy(bytes));
}
