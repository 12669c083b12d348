//! Wiring one node together: the settings of `tusk serve` ([`NodeConfig`], built only from its
//! flags, so every default is written once, in `commands/serve.rs`), then the control plane
//! (`tusk-control`), the event engine, the cluster and the HTTP front (`tusk-gateway`),
//! started in order and stopped in order. It decides nothing about requests itself.

use crate::commands::serve::{resolve_listen, Args};
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tusk_control::ControlPlane;
use tusk_gateway::AppState;
use tusk_pool::PoolLimits;
use tusk_store::{LogStore, NodeDb, Registry};

/// Everything `tusk serve` needs to start a node; see [`NodeConfig::from_args`].
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// Idle instances are stopped after this long (scale to zero).
    pub(crate) idle_timeout: Duration,
    /// Overrides `DATA_DIR/admin.token` (e.g. from `TUSK_ADMIN_TOKEN`).
    pub(crate) admin_token: Option<String>,
    /// Access key id accepted for Signature V4 (secret = the admin token).
    pub(crate) access_key_id: String,
    /// Instances per function when it sets no `reservedConcurrency`.
    pub(crate) max_instances_per_function: usize,
    /// Requests that may wait for a busy function before new ones get 429.
    pub(crate) queue_limit: usize,
    /// How long a request waits for an instance before it gets 429.
    pub(crate) queue_wait: Duration,
    /// How long function log lines are kept.
    pub(crate) log_retention: Duration,
    /// Delay before the first retry of a failed async invocation (the second waits twice as
    /// long); Lambda uses about a minute.
    pub(crate) async_retry_delay: Duration,
    /// On SIGTERM, how long running async events and queue batches may take to finish before
    /// the node stops anyway (HTTP requests in flight are always finished).
    pub(crate) drain_timeout: Duration,
    /// How instances are isolated: full where the host allows it (`auto`), `full` or refuse
    /// to start, or `off` (benchmarks only).
    pub(crate) sandbox: tusk_sandbox::Mode,
    /// NATS servers of the cluster to join (`nats://HOST:PORT`); empty = a single node with
    /// its embedded store.
    pub(crate) cluster: Vec<String>,
    /// Copies JetStream keeps of the cluster's state (capped to 1 on a lone NATS server).
    pub(crate) cluster_replicas: usize,
    /// Credentials for NATS (`TUSK_CLUSTER_TOKEN`, or `TUSK_CLUSTER_USER` and
    /// `TUSK_CLUSTER_PASSWORD`); never passed to instances.
    pub(crate) cluster_auth: tusk_cluster::ClusterAuth,
    /// The URL other nodes reach this one at (default `http://LISTEN`).
    pub(crate) advertise_url: Option<String>,
    /// Serve `/_tusk/metrics` without authentication (`--public-metrics`).
    pub(crate) public_metrics: bool,
    /// Accept `rate(N seconds)` schedules (`--allow-second-schedules`, tests only).
    pub(crate) allow_second_schedules: bool,
    /// Largest package accepted, in MB unpacked (Lambda's limit: 250).
    pub(crate) max_package_mb: u64,
    /// How long a client may take to send a request head (slow-loris protection).
    pub(crate) header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub(crate) keepalive_timeout: Duration,
    /// How long a client may take to send a request body.
    pub(crate) body_timeout: Duration,
    /// Most connections served at once; `None` = 10,000 or what the open-file limit allows.
    pub(crate) max_connections: Option<usize>,
}

impl NodeConfig {
    /// The node `tusk serve` runs with `args` (clap supplies every default), plus what is
    /// read from the environment only, so that secrets never show up in `ps`.
    pub(crate) fn from_args(args: Args) -> Result<NodeConfig> {
        Ok(NodeConfig {
            listen: resolve_listen(&args.listen)?,
            data_dir: args.data_dir,
            idle_timeout: Duration::from_secs(args.idle_timeout),
            admin_token: std::env::var("TUSK_ADMIN_TOKEN")
                .ok()
                .map(|token| token.trim().to_string())
                .filter(|token| !token.is_empty()),
            access_key_id: args.access_key_id,
            max_instances_per_function: args.max_instances,
            queue_limit: args.queue_limit,
            queue_wait: Duration::from_millis(args.queue_wait_ms),
            log_retention: Duration::from_secs(args.log_retention_hours * 3600),
            async_retry_delay: Duration::from_millis(args.async_retry_delay_ms),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            sandbox: args.sandbox,
            cluster: tusk_cluster::parse_urls(&args.cluster),
            cluster_replicas: args.cluster_replicas,
            cluster_auth: tusk_cluster::ClusterAuth::from_env(|name| std::env::var(name).ok())
                .map_err(|err| anyhow!("cannot read the cluster credentials: {err}"))?,
            advertise_url: args.advertise_url,
            public_metrics: args.public_metrics,
            allow_second_schedules: args.allow_second_schedules,
            max_package_mb: args.max_package_mb,
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            keepalive_timeout: Duration::from_secs(args.keepalive_timeout),
            body_timeout: Duration::from_secs(args.body_timeout),
            max_connections: args.max_connections.map(|n| n as usize),
        })
    }
}

/// Runs the node until Ctrl-C / SIGTERM.
pub async fn run_node(config: NodeConfig) -> Result<()> {
    let nofile = tusk_gateway::raise_nofile_limit();
    let conn_limits = tusk_gateway::ConnLimits {
        header_read_timeout: config.header_read_timeout,
        keepalive_timeout: config.keepalive_timeout,
        max_connections: config
            .max_connections
            .unwrap_or_else(|| tusk_gateway::default_max_connections(nofile))
            .clamp(1, tusk_gateway::MAX_CONNECTIONS),
    };
    let data_dir = tusk_control::data_dir::prepare(&config.data_dir).await?;
    let token = tusk_gateway::load_or_create_token(&data_dir, config.admin_token.clone())
        .await
        .context("cannot prepare the admin token")?;
    let node_db =
        NodeDb::open(&data_dir.join("tusk.db")).context("cannot open the node database")?;
    let local = Arc::new(node_db.registry());
    let cluster = if config.cluster.is_empty() {
        None
    } else {
        let settings = tusk_cluster::ClusterConfig {
            urls: config.cluster.clone(),
            replicas: config.cluster_replicas,
            log_retention: config.log_retention,
            node_name: format!("tusk {}", config.listen),
            auth: config.cluster_auth.clone(),
        };
        Some(
            tusk_cluster::Cluster::connect(&settings)
                .await
                .context("cannot join the cluster")?,
        )
    };
    // In a cluster the registry and logs live in JetStream; `local` is the node's copy of the
    // registry.
    let cluster_registry = cluster.as_ref().map(|c| {
        Arc::new(tusk_cluster::JetStreamRegistry::new(
            c.clone(),
            local.clone(),
            data_dir.join("packages"),
            tokio::runtime::Handle::current(),
        ))
    });
    let registry: Arc<dyn Registry> = match &cluster_registry {
        Some(c) => c.clone(),
        None => local,
    };
    let log_store: Arc<dyn LogStore> = match &cluster {
        Some(c) => Arc::new(tusk_cluster::JetStreamLogStore::new(
            c.clone(),
            tokio::runtime::Handle::current(),
        )),
        None => {
            let sqlite_logs = Arc::new(node_db.log_store());
            sqlite_logs
                .start_retention(config.log_retention)
                .context("cannot start the log retention task")?;
            sqlite_logs
        }
    };
    let php = tusk_control::php::detect().await;
    // No context: the sandbox's own message says what to do (`tusk doctor`, `--sandbox`).
    let sandbox = tusk_control::sandbox::start(config.sandbox, &data_dir, php.as_ref()).await?;
    match &php {
        Some(p) => tracing::info!(cli = %p.cli.display(), cgi = %p.cgi.display(), version = %p.version, "found PHP"),
        None => tracing::warn!("no PHP found (php and php-cgi): PHP functions cannot run until php8.2-cli and php8.2-cgi are installed"),
    }
    let runtime_dir = tusk_control::php::install_runtime(&data_dir)
        .await
        .context("cannot write the PHP runtime into the data directory")?;
    if let Some(p) = &php {
        tusk_control::php::install_extension_sets(&runtime_dir, p).await;
    }
    let logs = tusk_control::logs::start(log_store.clone());
    let limits = PoolLimits {
        default_max_instances: config.max_instances_per_function.max(1),
        queue_limit: config.queue_limit,
        queue_wait: config.queue_wait,
        idle_timeout: config.idle_timeout,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another node running there?)",
                config.listen
            )
        })?;
    let listen = listener
        .local_addr()
        .context("cannot read the listen address")?;
    let dispatcher = Arc::new(tusk_pool::Dispatcher::default());
    let queue_db = tusk_events::queue_db::QueueDb::open(&data_dir.join("events.db"))
        .context("cannot open the event database")?;
    let events = tusk_events::EventEngine::start(
        tusk_events::queues::Queues::new(queue_db),
        Arc::new(tusk_control::pool_invoker::PoolInvoker(dispatcher.clone())),
        tusk_events::EngineSettings {
            retry_base_delay: config.async_retry_delay,
            region: tusk_manifest::arn::DEFAULT_REGION.into(),
        },
    )
    .await
    .context("cannot start the event engine")?;
    if let Some(cluster) = &cluster {
        events
            .queues()
            .set_shared(tusk_cluster::JetStreamQueues::start(cluster.clone()));
        events.set_transport(Arc::new(tusk_cluster::JetStreamTransport::new(
            cluster.clone(),
        )));
    }
    let control = ControlPlane::new(
        registry,
        log_store,
        data_dir.clone(),
        php,
        runtime_dir,
        limits,
        logs.clone(),
        dispatcher,
        events,
        format!("http://{listen}"),
    )
    .with_sandbox(sandbox.clone())
    .with_validation(tusk_manifest::ValidateOptions {
        allow_second_schedules: config.allow_second_schedules,
    })
    .with_package_limits(tusk_control::package::Limits {
        max_unpacked_bytes: config.max_package_mb.max(1).saturating_mul(1024 * 1024),
        ..tusk_control::package::Limits::default()
    });
    let peers = cluster.as_ref().map(|c| {
        let url = config
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}"));
        if listen.ip().is_unspecified() && config.advertise_url.is_none() {
            tracing::warn!(%url, "listening on all interfaces: set --advertise-url so other nodes can forward calls here");
        }
        c.start_peers(url)
    });
    let state = Arc::new(AppState::new(
        Arc::new(control),
        tusk_auth::Credentials {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: token,
        },
        logs,
        listen,
        peers,
        cluster.clone(),
        config.public_metrics,
        config.body_timeout,
    ));
    if let Some(peers) = &state.peers {
        // Before any pool exists, so each starts with this node's share.
        let dispatcher = state.control.dispatcher.clone();
        tusk_control::cluster_sync::share_reserved_concurrency(peers.clone(), dispatcher).await;
    }
    state
        .control
        .restore()
        .await
        .context("cannot restore deployed services")?;
    if let Some(cluster_registry) = cluster_registry {
        tokio::spawn(tusk_control::cluster_sync::follow(
            state.control.clone(),
            cluster_registry,
        ));
    }

    let maintenance = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            maintenance.control.dispatcher.maintain().await;
        }
    });

    tracing::info!(%listen, data_dir = %data_dir.display(), max_connections = conn_limits.max_connections, "Tusk node serving");
    let served = tusk_gateway::serve(listener, state.clone(), conn_limits)
        .await
        .context("server error");
    // HTTP requests are done; give running async events and queue batches their time.
    let left = state.control.events.drain(config.drain_timeout).await;
    if left > 0 {
        tracing::warn!(
            left,
            "stopping with async events or queue batches still running: they are cut off (an event counts a failed attempt, a batch's messages come back after their visibility timeout)"
        );
    }
    // Instances (frozen ones too) must not outlive the node.
    let _ = tokio::task::spawn_blocking(move || sandbox.shutdown()).await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `tusk serve` as clap sees it: the only source of the node's defaults.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: Args,
    }

    fn config(argv: &[&str]) -> NodeConfig {
        let args = Serve::parse_from(std::iter::once("serve").chain(argv.iter().copied())).args;
        NodeConfig::from_args(args).unwrap()
    }

    #[test]
    fn a_node_without_flags_gets_the_flag_defaults() {
        // Skip when the environment sets what clap would read from it.
        if [
            "TUSK_LISTEN",
            "TUSK_DATA_DIR",
            "TUSK_SANDBOX",
            "TUSK_CLUSTER",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        {
            return;
        }
        let c = config(&[]);
        assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.queue_wait, Duration::from_secs(10));
        assert_eq!(c.log_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.drain_timeout, Duration::from_secs(25));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(c.max_instances_per_function, 32);
        assert_eq!(c.sandbox, tusk_sandbox::Mode::Auto);
        assert!(c.cluster.is_empty());
        assert_eq!(c.max_connections, None);
    }

    #[test]
    fn flags_are_converted_to_their_units() {
        let c = config(&["--queue-wait-ms", "250", "--log-retention-hours", "2"]);
        assert_eq!(c.queue_wait, Duration::from_millis(250));
        assert_eq!(c.log_retention, Duration::from_secs(7200));
    }
}
