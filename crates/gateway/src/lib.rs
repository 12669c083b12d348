//! The node: one listener carrying user routes, the Lambda APIs and `/_tusk/*`.
//!
//! - [`routes`]: the `httpApi`/`http` route table; [`apigw`]: API Gateway event/response formats;
//! - [`web`]: FastCGI parameters and static files for `php-8x-fpm` apps;
//! - [`lambda_api`]: the Lambda Invoke/List/Get API; [`admin`]: `/_tusk/*`;
//! - [`control`]: deployments turned into live pools; [`logs`], [`metrics`].

mod admin;
pub mod apigw;
mod cluster_sync;
mod control;
mod event_config;
mod events_api;
mod forward;
mod http_server;
mod lambda_api;
mod logs;
mod metrics;
mod package;
mod php;
pub mod routes;
mod sandbox;
mod sqs_api;
mod web;

pub use control::ACCOUNT_ID;
/// For the fuzz targets in `fuzz/` (and nothing else): unpacking runs on uploaded bytes.
#[doc(hidden)]
pub use package::unpack as unpack_package;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tusk_pool::PoolLimits;
use tusk_store::{SqliteStore, Store};

/// Everything `tusk serve` needs to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Idle instances are stopped after this long (scale to zero).
    pub idle_timeout: Duration,
    /// Overrides `DATA_DIR/admin.token` (e.g. from `TUSK_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// Access key id accepted for Signature V4 (secret = the admin token).
    pub access_key_id: String,
    /// Instances per function when it sets no `reservedConcurrency`.
    pub max_instances_per_function: usize,
    /// Requests that may wait for a busy function before new ones get 429.
    pub queue_limit: usize,
    /// How long a request waits for an instance before it gets 429.
    pub queue_wait: Duration,
    /// How long function log lines are kept.
    pub log_retention: Duration,
    /// Delay before the first retry of a failed async invocation (the second waits twice as
    /// long); Lambda uses about a minute.
    pub async_retry_delay: Duration,
    /// On SIGTERM, how long running async events and queue batches may take to finish before
    /// the node stops anyway (HTTP requests in flight are always finished).
    pub drain_timeout: Duration,
    /// How instances are isolated: full where the host allows it (`auto`), `full` or refuse
    /// to start, or `off` (benchmarks only).
    pub sandbox: tusk_sandbox::Mode,
    /// NATS servers of the cluster to join (`nats://HOST:PORT`); empty = a single node with
    /// its embedded store.
    pub cluster: Vec<String>,
    /// Copies JetStream keeps of the cluster's state (capped to 1 on a lone NATS server).
    pub cluster_replicas: usize,
    /// Credentials for NATS (`TUSK_CLUSTER_TOKEN`, or `TUSK_CLUSTER_USER` and
    /// `TUSK_CLUSTER_PASSWORD`); never passed to instances.
    pub cluster_auth: tusk_cluster::ClusterAuth,
    /// The URL other nodes reach this one at (default `http://LISTEN`).
    pub advertise_url: Option<String>,
}

impl NodeConfig {
    /// A node with the defaults `tusk serve` uses.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            listen,
            data_dir,
            idle_timeout: Duration::from_secs(300),
            admin_token: None,
            access_key_id: "tusk".into(),
            max_instances_per_function: 32,
            queue_limit: 100,
            queue_wait: Duration::from_secs(10),
            log_retention: Duration::from_secs(7 * 24 * 3600),
            async_retry_delay: Duration::from_secs(60),
            // Inside Kubernetes' default 30 s termination grace period.
            drain_timeout: Duration::from_secs(25),
            sandbox: tusk_sandbox::Mode::Auto,
            cluster: Vec::new(),
            cluster_replicas: 3,
            cluster_auth: tusk_cluster::ClusterAuth::None,
            advertise_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Startup(String),
}

/// Errors of the control plane, mapped to HTTP statuses by the admin API.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] tusk_store::StoreError),
}

pub(crate) struct AppState {
    pub control: control::ControlPlane,
    pub credentials: tusk_auth::Credentials,
    pub logs: Arc<logs::NodeLogs>,
    pub listen: SocketAddr,
    /// The other nodes of the cluster (none on a single node).
    pub peers: Option<Arc<tusk_cluster::Peers>>,
    /// The cluster connection, for readiness (none on a single node).
    pub cluster: Option<Arc<tusk_cluster::Cluster>>,
    /// Set on SIGTERM / Ctrl-C: readiness fails while in-flight work finishes.
    pub draining: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// The node is stopping: fail readiness, leave the cluster, take no new events.
    pub async fn begin_drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
        self.control.events.stop_taking();
        if let Some(peers) = &self.peers {
            peers.leave().await;
        }
    }
}

fn startup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> NodeError + '_ {
    move |e| NodeError::Startup(format!("{what}: {e}"))
}

/// Runs the node until Ctrl-C / SIGTERM.
pub async fn run_node(config: NodeConfig) -> Result<(), NodeError> {
    for sub in ["packages", "code", "run"] {
        tokio::fs::create_dir_all(config.data_dir.join(sub))
            .await
            .map_err(startup(
                "cannot create the data directory (check --data-dir and its permissions)",
            ))?;
    }
    // Instances start in their own working directory: every path handed to them is absolute.
    let data_dir = tokio::fs::canonicalize(&config.data_dir)
        .await
        .map_err(startup("cannot resolve the data directory"))?;
    let sockets = control::socket_dir(&data_dir);
    tokio::fs::create_dir_all(&sockets)
        .await
        .map_err(startup("cannot create the directory for worker sockets"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(startup("cannot restrict the directory for worker sockets"))?;
    }
    let token = admin::load_or_create_token(&data_dir, config.admin_token.clone())
        .await
        .map_err(startup("cannot prepare the admin token"))?;
    let local = Arc::new(
        SqliteStore::open(&data_dir.join("tusk.db"))
            .map_err(startup("cannot open the node database"))?,
    );
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
                .map_err(startup("cannot join the cluster"))?,
        )
    };
    // In a cluster the registry and logs live in JetStream; `local` is the node's copy.
    let cluster_store = cluster.as_ref().map(|c| {
        Arc::new(tusk_cluster::ClusterStore::new(
            c.clone(),
            local.clone(),
            data_dir.join("packages"),
            tokio::runtime::Handle::current(),
        ))
    });
    let store: Arc<dyn Store> = match &cluster_store {
        Some(c) => c.clone(),
        None => local,
    };
    let php = php::detect().await;
    let sandbox = sandbox::start(config.sandbox, &data_dir, php.as_ref()).await?;
    match &php {
        Some(p) => tracing::info!(cli = %p.cli.display(), cgi = %p.cgi.display(), version = %p.version, "found PHP"),
        None => tracing::warn!("no PHP found (php and php-cgi): PHP functions cannot run until php8.2-cli and php8.2-cgi are installed"),
    }
    let runtime_dir = php::install_runtime(&data_dir).await.map_err(startup(
        "cannot write the PHP runtime into the data directory",
    ))?;
    if let Some(p) = &php {
        php::install_extension_sets(&runtime_dir, p).await;
    }
    let logs = logs::start(store.clone(), config.log_retention);
    let limits = PoolLimits {
        default_max_instances: config.max_instances_per_function.max(1),
        queue_limit: config.queue_limit,
        queue_wait: config.queue_wait,
        idle_timeout: config.idle_timeout,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(startup(&format!(
            "cannot listen on {} (is another node running there?)",
            config.listen
        )))?;
    let listen = listener
        .local_addr()
        .map_err(startup("cannot read the listen address"))?;
    let dispatcher = Arc::new(tusk_pool::Dispatcher::default());
    let queue_store = tusk_events::store::QueueStore::open(&data_dir.join("events.db"))
        .map_err(startup("cannot open the event database"))?;
    let events = tusk_events::Events::start(
        queue_store,
        dispatcher.clone(),
        tusk_events::EventSettings {
            retry_base_delay: config.async_retry_delay,
            region: "us-east-1".into(),
        },
    )
    .await
    .map_err(startup("cannot start the event engine"))?;
    if let Some(cluster) = &cluster {
        events
            .store()
            .set_shared(tusk_cluster::JetStreamQueues::start(cluster.clone()));
        events.set_transport(Arc::new(tusk_cluster::JetStreamTransport::new(
            cluster.clone(),
        )));
    }
    let control = control::ControlPlane::new(
        store,
        data_dir.clone(),
        php,
        runtime_dir,
        limits,
        logs.clone(),
        dispatcher,
        events,
        format!("http://{listen}"),
    )
    .with_sandbox(sandbox.clone());
    let state = Arc::new(AppState {
        control,
        credentials: tusk_auth::Credentials {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: token,
        },
        logs,
        listen,
        peers: cluster.as_ref().map(|c| {
            let url = config
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}"));
            if listen.ip().is_unspecified() && config.advertise_url.is_none() {
                tracing::warn!(%url, "listening on all interfaces: set --advertise-url so other nodes can forward calls here");
            }
            c.start_peers(url)
        }),
        cluster: cluster.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
    });
    if let Some(peers) = &state.peers {
        // Before any pool exists, so each starts with this node's share.
        let dispatcher = state.control.dispatcher.clone();
        cluster_sync::share_reserved_concurrency(peers.clone(), dispatcher).await;
    }
    state
        .control
        .restore()
        .await
        .map_err(startup("cannot restore deployed services"))?;
    if let Some(cluster_store) = cluster_store {
        tokio::spawn(cluster_sync::follow(state.clone(), cluster_store));
    }

    let maintenance = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            maintenance.control.dispatcher.maintain().await;
        }
    });

    tracing::info!(%listen, data_dir = %data_dir.display(), "Tusk node serving");
    let served = http_server::serve(listener, state.clone())
        .await
        .map_err(startup("server error"));
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
