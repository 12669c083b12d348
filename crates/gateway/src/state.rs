//! What every handler shares: the control plane, credentials, the cluster, and the node-wide
//! budgets for request bodies. Plain data and its constructor; no handler logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tusk_control::logs::NodeLogs;
use tusk_control::ControlPlane;

/// Node-wide bytes of signed request bodies read before their signature is checked: what
/// anyone who knows the (public) access key id can make the node hold at once.
pub const UNVERIFIED_BODY_BUDGET: usize = 64 * 1024 * 1024;

/// Node-wide bytes of user-route request bodies held at once (anyone may send them). A body
/// up to 64 KB needs no share; a bigger one waits up to 5 s (`http_server::user_body_budget`) for room.
pub const USER_BODY_BUDGET: usize = 256 * 1024 * 1024;

pub struct AppState {
    pub control: Arc<ControlPlane>,
    pub credentials: tusk_auth::Credentials,
    pub logs: Arc<NodeLogs>,
    pub listen: SocketAddr,
    /// The other nodes of the cluster (none on a single node).
    pub peers: Option<Arc<tusk_cluster::Peers>>,
    /// The cluster connection, for readiness (none on a single node).
    pub cluster: Option<Arc<tusk_cluster::Cluster>>,
    /// Set on SIGTERM / Ctrl-C: readiness fails while in-flight work finishes.
    pub draining: std::sync::atomic::AtomicBool,
    /// `/_tusk/metrics` answers without the admin token.
    pub public_metrics: bool,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// Bytes of request bodies being read before their signature is checked (node-wide).
    pub(crate) unverified_bodies: Arc<tokio::sync::Semaphore>,
    /// Bytes of large user-route request bodies held (node-wide).
    pub(crate) user_bodies: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The state of a node serving `control` on `listen` (the address actually bound).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        control: Arc<ControlPlane>,
        credentials: tusk_auth::Credentials,
        logs: Arc<NodeLogs>,
        listen: SocketAddr,
        peers: Option<Arc<tusk_cluster::Peers>>,
        cluster: Option<Arc<tusk_cluster::Cluster>>,
        public_metrics: bool,
        body_timeout: Duration,
    ) -> AppState {
        AppState {
            control,
            credentials,
            logs,
            listen,
            peers,
            cluster,
            draining: std::sync::atomic::AtomicBool::new(false),
            public_metrics,
            body_timeout,
            unverified_bodies: Arc::new(tokio::sync::Semaphore::new(UNVERIFIED_BODY_BUDGET)),
            user_bodies: Arc::new(tokio::sync::Semaphore::new(USER_BODY_BUDGET)),
        }
    }

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
