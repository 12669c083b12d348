//! Durable node state: deployed services and their functions, and function logs.
//!
//! [`Store`] is the seam between a single node (embedded SQLite, [`SqliteStore`]) and a cluster
//! (NATS JetStream, `tusk_cluster::ClusterStore`). Calls are synchronous; async callers use
//! `spawn_blocking`.

mod sqlite;

pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};
/// The log line types, re-exported: they are in the [`Store`] signatures.
pub use tusk_logs::{LogLine, LogStream, NewLogLine};
use tusk_manifest::{FunctionSpec, ServiceSpec};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("cluster: {0}")]
    Cluster(String),
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

pub trait Store: Send + Sync + 'static {
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
    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError>;
    /// Lines of `function` newer than `since_ms` with id above `after_id`, oldest first.
    fn logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError>;
    /// Deletes lines older than `before_ms`; returns how many went.
    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError>;
}
