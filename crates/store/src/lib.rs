//! Durable node state, as two seams: the [`Registry`] of deployed services and their versions,
//! and the [`LogStore`] of function logs.
//!
//! Each has a single-node implementation in SQLite ([`SqliteRegistry`], [`SqliteLogStore`],
//! sharing the node's database file, [`NodeDb`]) and a cluster one over NATS JetStream
//! (`tusk_cluster::JetStreamRegistry`, `tusk_cluster::JetStreamLogStore`). Calls are
//! synchronous; async callers use `spawn_blocking`. Nothing here runs functions or speaks HTTP.

mod db;
mod log_store;
mod registry;

pub use db::NodeDb;
pub use log_store::SqliteLogStore;
pub use registry::SqliteRegistry;

use serde::{Deserialize, Serialize};
/// The log line types, re-exported: they are in the [`LogStore`] signatures.
pub use tusk_logs::{LogLine, LogStream, NewLogLine};
use tusk_manifest::{FunctionSpec, ServiceSpec};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The cluster's registry or log stream failed (the source is a `tusk_cluster::ClusterError`,
    /// which this crate cannot name, or a message when the NATS client panicked).
    #[error("cluster: {0}")]
    Cluster(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot open the data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One deployed version of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub spec: ServiceSpec,
    pub version: u64,
    /// sha256 of the package archive the version runs.
    pub package: String,
    pub deployed_at_ms: i64,
}

impl ServiceRecord {
    pub fn functions(&self) -> impl Iterator<Item = (String, &FunctionSpec)> + '_ {
        self.spec
            .functions
            .iter()
            .map(|f| (self.spec.function_name(f), f))
    }
}

/// The services deployed and their versions: what the node runs.
pub trait Registry: Send + Sync + 'static {
    /// Records a new version of `spec.service` at `spec.stage`; returns the version number.
    fn put_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, StoreError>;
    fn services(&self) -> Result<Vec<ServiceRecord>, StoreError>;
    /// Removes a service; returns the removed record, if it existed.
    fn remove_service(
        &self,
        service: &str,
        stage: &str,
    ) -> Result<Option<ServiceRecord>, StoreError>;
}

/// Function log lines. Retention is each implementation's own business (a pruning task for
/// SQLite, stream limits for JetStream), so it is not part of the seam.
pub trait LogStore: Send + Sync + 'static {
    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError>;
    /// Lines of `function` newer than `since_ms` with id above `after_id`, oldest first.
    fn logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError>;
}
