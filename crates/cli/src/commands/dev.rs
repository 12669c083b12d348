//! `tusk dev`: the local development loop. Runs `tusk serve` as a child process with its state
//! in `DIR/.tusk`, deploys the project, then polls the files the package would hold and
//! redeploys on every change. A failed deployment (say, a YAML typo) is reported and the loop
//! keeps watching. The node is stopped when `tusk dev` ends, Ctrl-C included.

use crate::client::{self, Client};
use crate::commands::{deploy, serve};
use crate::{manifest, package};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Project directory holding serverless.yml.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Address the development node listens on.
    #[arg(long, default_value = serve::DEFAULT_LISTEN, value_name = "HOST:PORT")]
    pub listen: String,
    /// Stage to deploy.
    #[arg(long, short, default_value = "dev", value_name = "STAGE")]
    pub stage: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open the project directory {}", args.dir.display()))?;
    let data_dir = dir.join(".tusk");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let listen = serve::resolve_listen(&args.listen)?;
    let connect = connect_addr(listen);
    if TcpStream::connect_timeout(&connect, Duration::from_millis(300)).is_ok() {
        bail!(
            "something already listens on {connect}; stop it or pick another address with \
             --listen 127.0.0.1:PORT"
        );
    }
    let base = format!("http://{connect}");

    let node = Node::start(&listen, &data_dir)?;
    install_signal_handler(Arc::clone(&node.child))?;
    node.wait_healthy(&base)?;
    let token = wait_for_token(&data_dir.join("admin.token"))?;
    let client = Client::new(&base, token)?;
    println!(
        "Tusk node listening on {base} (state in {}, log in {})",
        data_dir.display(),
        node.log.display()
    );

    let manifests = manifest::candidate_paths(&dir);
    let mut patterns = Vec::new();
    let mut baseline = deploy_once(&client, &dir, &args.stage, &mut patterns, &manifests);
    println!("Watching {} for changes (Ctrl-C to stop)", dir.display());
    loop {
        std::thread::sleep(POLL);
        node.check_alive()?;
        let mut current = fingerprint(&dir, &patterns, &manifests);
        if current == baseline {
            continue;
        }
        // Let a burst of writes (an editor saving, a `composer install`) settle first.
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(150));
            let again = fingerprint(&dir, &patterns, &manifests);
            if again == current {
                break;
            }
            current = again;
        }
        println!("↻ change detected, redeploying…");
        baseline = deploy_once(&client, &dir, &args.stage, &mut patterns, &manifests);
    }
}

/// Deploys and prints the outcome; returns the fingerprint the next change is measured from.
/// On success that is the fingerprint of the files as packaged, so an edit made while the
/// deployment was running still triggers the next one.
fn deploy_once(
    client: &Client,
    dir: &Path,
    stage: &str,
    patterns: &mut Vec<String>,
    manifests: &[PathBuf],
) -> String {
    let started = Instant::now();
    match deploy::deploy(client, dir, Some(stage), None) {
        Ok(deployed) => {
            print!(
                "{}",
                deploy::summary(&deployed.deployment, client.base(), started.elapsed())
            );
            patterns.clone_from(&deployed.spec.package_patterns);
            package::fingerprint(&deployed.files, manifests)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            eprintln!("(fix it and save: tusk dev redeploys on the next change)");
            fingerprint(dir, patterns, manifests)
        }
    }
}

fn fingerprint(dir: &Path, patterns: &[String], manifests: &[PathBuf]) -> String {
    match deploy::select(dir, patterns) {
        Ok(files) => package::fingerprint(&files, manifests),
        // Unreadable right now (a file vanishing mid-walk): compare equal to itself so the
        // next successful walk decides.
        Err(err) => format!("unreadable: {err:#}"),
    }
}

/// The address to reach a node listening on `listen` (`0.0.0.0` is not a destination).
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

fn wait_for_token(path: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(token) = std::fs::read_to_string(path) {
            if !token.trim().is_empty() {
                return Ok(token.trim().to_string());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the node serves but wrote no admin token to {}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `tusk serve` child process; stopped when dropped.
struct Node {
    child: Arc<Mutex<Child>>,
    log: PathBuf,
}

impl Node {
    fn start(listen: &SocketAddr, data_dir: &Path) -> Result<Node> {
        let exe = std::env::current_exe().context("cannot find the tusk executable to run")?;
        let log = data_dir.join("node.log");
        let stdout =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = stdout
            .try_clone()
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            // The node must write DIR/.tusk/admin.token for us to read, not take a token
            // meant for some other node.
            .env_remove("TUSK_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        detach_from_terminal_signals(&mut command);
        let child = command.spawn().context("cannot start `tusk serve`")?;
        Ok(Node {
            child: Arc::new(Mutex::new(child)),
            log,
        })
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.try_wait().ok().flatten()
    }

    /// Fails with the end of the node's log when the node has exited.
    fn check_alive(&self) -> Result<()> {
        match self.exit_status() {
            Some(status) => bail!(
                "the Tusk node stopped ({status}); last lines of {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 20)
            ),
            None => Ok(()),
        }
    }

    fn wait_healthy(&self, base: &str) -> Result<()> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            self.check_alive()?;
            if client::health(base).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the Tusk node did not answer {base}/_tusk/health within {}s; last lines of {}:\n{}",
                    HEALTH_TIMEOUT.as_secs(),
                    self.log.display(),
                    log_tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&self.child);
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return "  (empty)".to_string();
    }
    tail.iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks the node to shut down (SIGTERM, so it stops its instances), then kills it after a grace
/// period.
fn stop(child: &Mutex<Child>) {
    let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    terminate(&child);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(unix)]
fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own child's and is not
    // reaped yet (the caller saw it running under the same lock), so it cannot name another
    // process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

/// Puts the node in its own process group, so a Ctrl-C in the terminal reaches `tusk dev` only
/// and the node is stopped in order; on Linux the node also gets SIGTERM should `tusk dev` die
/// without cleaning up (e.g. SIGKILL).
#[cfg(unix)]
fn detach_from_terminal_signals(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec; it only calls prctl(2), which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn detach_from_terminal_signals(_command: &mut Command) {}

/// On Ctrl-C, SIGTERM or SIGHUP: stop the node, then exit with the conventional 128+signal.
#[cfg(unix)]
fn install_signal_handler(child: Arc<Mutex<Child>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    // Registered here, not in the thread, so a failure is reported before anything runs.
    let (mut interrupt, mut terminate, mut hangup) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        )
    };
    std::thread::Builder::new()
        .name("tusk-dev-signals".into())
        .spawn(move || {
            let code = runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => 130,
                    _ = terminate.recv() => 143,
                    _ = hangup.recv() => 129,
                }
            });
            eprintln!("\nstopping the Tusk node…");
            stop(&child);
            std::process::exit(code);
        })
        .context("cannot start the signal handler")?;
    Ok(())
}

#[cfg(not(unix))]
fn install_signal_handler(_child: Arc<Mutex<Child>>) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_connect_to_loopback() {
        let addr: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(connect_addr(addr), "127.0.0.1:9000".parse().unwrap());
        let addr: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(connect_addr(addr), "[::1]:9000".parse().unwrap());
        let addr: SocketAddr = "127.0.0.2:9000".parse().unwrap();
        assert_eq!(connect_addr(addr), addr);
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "  b\n  c");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "  (empty)");
    }
}
