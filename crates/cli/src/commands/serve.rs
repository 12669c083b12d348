//! `tusk serve`: run a node. Its flags and their defaults (the only place they are written);
//! the node itself is wired in `crate::node`. The only async command.

use anyhow::{anyhow, Context, Result};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use crate::node::{self, NodeConfig};

/// Where a node listens unless told otherwise (`tusk dev` starts one there too).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on; carries user routes, the Lambda APIs and /_tusk/*.
    #[arg(
        long,
        env = "TUSK_LISTEN",
        hide_env_values = true,
        default_value = DEFAULT_LISTEN,
        value_name = "HOST:PORT"
    )]
    pub listen: String,
    /// Where the node keeps its state, packages and admin.token.
    #[arg(
        long,
        env = "TUSK_DATA_DIR",
        hide_env_values = true,
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Stop an instance after it has been idle this many seconds (scale to zero).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Access key id accepted for AWS Signature V4 requests (the secret is the admin token).
    #[arg(long, default_value = "tusk", value_name = "ID")]
    pub access_key_id: String,
    /// Most instances of one function when it sets no reservedConcurrency.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_instances: usize,
    /// Requests that may wait for a busy function; beyond that they get 429.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub queue_limit: usize,
    /// Milliseconds a request waits for a free instance before it gets 429.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub queue_wait_ms: u64,
    /// Hours function log lines are kept.
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    pub log_retention_hours: u64,
    /// Milliseconds before the first retry of a failed async invocation (the second waits
    /// twice as long). Lambda waits about a minute.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub async_retry_delay_ms: u64,
    /// On SIGTERM, seconds running async events and queue batches may take to finish before
    /// the node stops anyway (HTTP requests in flight always finish).
    // Inside Kubernetes' default 30 s termination grace period.
    #[arg(long, default_value_t = 25, value_name = "SECS")]
    pub drain_timeout: u64,
    /// Instance isolation: `auto` (full where the host allows it, else degraded with a loud
    /// warning), `full` (refuse to start without it) or `off` (no isolation; benchmarks only).
    /// `tusk doctor` shows what this host allows.
    #[arg(
        long,
        env = "TUSK_SANDBOX",
        default_value = "auto",
        value_name = "auto|full|off"
    )]
    pub sandbox: tusk_sandbox::Mode,
    /// Join a cluster: NATS servers with JetStream (`nats://HOST:PORT`, comma-separated or
    /// repeated). The registry, packages, logs, async events and schedules then live in
    /// JetStream, shared by every node started with the same servers. When NATS requires
    /// credentials, set TUSK_CLUSTER_TOKEN (or TUSK_CLUSTER_USER and TUSK_CLUSTER_PASSWORD) in
    /// the environment; `nats://USER:PASS@HOST:PORT` works too.
    #[arg(long, env = "TUSK_CLUSTER", value_name = "nats://HOST:PORT[,...]")]
    pub cluster: Vec<String>,
    /// Copies JetStream keeps of the cluster's state (1 on a lone NATS server).
    #[arg(
        long,
        env = "TUSK_CLUSTER_REPLICAS",
        default_value_t = 3,
        value_name = "N"
    )]
    pub cluster_replicas: usize,
    /// The URL other cluster nodes reach this one at, to forward calls it has room for
    /// (default: http://LISTEN).
    #[arg(long, env = "TUSK_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Serve /_tusk/metrics without the admin token (for a Prometheus that cannot send one).
    /// Instances share the host's network and could read it too.
    #[arg(long)]
    pub public_metrics: bool,
    /// Accept schedules below AWS's 1-minute minimum (`rate(N seconds)`), for tests that
    /// want to see several ticks quickly. Production nodes refuse them, as AWS does.
    #[arg(long)]
    pub allow_second_schedules: bool,
    /// Largest package a deploy may upload, in MB once unpacked (Lambda's limit is 250).
    #[arg(long, default_value_t = 250, value_name = "MB")]
    pub max_package_mb: u64,
    /// Seconds a client may take to send a request head (the first one, and each next one
    /// on a kept-alive connection from its first byte); then the connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    // nginx's keepalive_timeout.
    #[arg(long, default_value_t = 75, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_timeout: u64,
    /// Seconds a request body may pause between two reads (the whole body, for signed API
    /// requests read before their signature is checked); then 408.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Most client connections served at once (default: 10,000, or what the open-file limit
    /// leaves). Beyond it a few more may still ask /_tusk/health; the rest are closed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    init_tracing();
    let config = NodeConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(node::run_node(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `HOST:PORT` with HOST an IP or a name such as `localhost`.
pub(crate) fn resolve_listen(listen: &str) -> Result<SocketAddr> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: expected HOST:PORT, e.g. 127.0.0.1:8080"))?
        .next()
        .ok_or_else(|| anyhow!("--listen {listen}: the host name resolves to no address"))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init`: a second subscriber (e.g. in tests) is not worth failing over.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_resolve() {
        assert_eq!(
            resolve_listen("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(resolve_listen("localhost:9000").unwrap().port(), 9000);
        assert!(resolve_listen("8080").is_err());
    }
}
