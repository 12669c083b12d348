//! [`JetStreamRegistry`]: the cluster's registry of services in JetStream KV (with packages in
//! the Object Store), and the local SQLite copy of it that the node serves from.
//!
//! The [`Registry`] trait is synchronous (the node calls it from blocking threads), so each
//! call runs its JetStream work on the node's runtime (see [`crate::block_on`]). Logs are
//! [`crate::JetStreamLogStore`]'s.

use crate::{block_on, js_err, Cluster, ClusterError, PACKAGES_BUCKET};
use async_nats::jetstream::kv;
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tusk_manifest::ServiceSpec;
use tusk_store::{Registry, ServiceRecord, SqliteRegistry, StoreError};

/// A change of the cluster's registry, as every node sees it.
#[derive(Debug, Clone)]
pub enum RegistryChange {
    /// A new live version (or the current one, when a watch starts).
    Put(ServiceRecord),
    Removed {
        service: String,
        stage: String,
    },
}

/// The registry of a cluster: KV bucket `tusk-services` decides versions, every node keeps a
/// copy in its own [`SqliteRegistry`] and serves from it.
pub struct JetStreamRegistry {
    cluster: Arc<Cluster>,
    local: Arc<SqliteRegistry>,
    packages_dir: PathBuf,
    runtime: tokio::runtime::Handle,
}

fn key(service: &str, stage: &str) -> String {
    format!("{service}.{stage}")
}

impl JetStreamRegistry {
    /// `packages_dir` holds the node's copies of packages (`SHA.zip`).
    pub fn new(
        cluster: Arc<Cluster>,
        local: Arc<SqliteRegistry>,
        packages_dir: PathBuf,
        runtime: tokio::runtime::Handle,
    ) -> JetStreamRegistry {
        JetStreamRegistry {
            cluster,
            local,
            packages_dir,
            runtime,
        }
    }

    /// The node's copy of the registry.
    pub fn local(&self) -> &Arc<SqliteRegistry> {
        &self.local
    }

    /// Puts the package into the Object Store unless it is there already.
    pub async fn upload_package(&self, sha: &str) -> Result<(), ClusterError> {
        if self.cluster.packages.info(sha).await.is_ok() {
            return Ok(());
        }
        let path = self.packages_dir.join(format!("{sha}.zip"));
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ClusterError::Io(format!("{}: {e}", path.display())))?;
        self.cluster
            .packages
            .put(sha, &mut file)
            .await
            .map_err(js_err(format!("cannot upload package {sha}")))?;
        Ok(())
    }

    /// Downloads a package into `dest` (through a temporary file, checking its sha256).
    ///
    /// Chunks are read with direct gets rather than the Object Store's reader: that reader
    /// needs an ephemeral consumer, which nats-server 2.9 may place on a peer that is down.
    pub async fn fetch_package(&self, sha: &str, dest: &Path) -> Result<(), ClusterError> {
        let info = self
            .cluster
            .packages
            .info(sha)
            .await
            .map_err(js_err(format!("cannot find package {sha}")))?;
        let stream = self
            .cluster
            .js
            .get_stream(format!("OBJ_{PACKAGES_BUCKET}"))
            .await
            .map_err(js_err("cannot open the package store"))?;
        let subject = format!("$O.{PACKAGES_BUCKET}.C.{}", info.nuid);
        let tmp = dest.with_extension(format!("part-{}", std::process::id()));
        let io = |e: std::io::Error| ClusterError::Io(format!("{}: {e}", tmp.display()));
        let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut hasher = sha2::Sha256::new();
        let mut next = 1;
        for _ in 0..info.chunks {
            let chunk = stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
                .map_err(js_err(format!("cannot fetch package {sha}")))?;
            next = chunk.sequence + 1;
            hasher.update(&chunk.payload);
            file.write_all(&chunk.payload).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let got = hex::encode(hasher.finalize());
        if got != sha {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ClusterError::Io(format!(
                "package {sha} arrived incomplete or corrupt (sha256 {got})"
            )));
        }
        tokio::fs::rename(&tmp, dest).await.map_err(io)?;
        Ok(())
    }

    /// Every live service now, then every change, for as long as the stream is read.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<RegistryChange, ClusterError>>, ClusterError> {
        let watch = self
            .cluster
            .services
            .watch_with_history(">")
            .await
            .map_err(js_err("cannot watch the function registry"))?;
        Ok(watch.map(|entry| {
            let entry = entry.map_err(js_err("the registry watch failed"))?;
            match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<ServiceRecord>(&entry.value)
                    .map(RegistryChange::Put)
                    .map_err(|e| ClusterError::JetStream {
                        what: format!("registry entry {} is corrupt", entry.key),
                        message: e.to_string(),
                    }),
                kv::Operation::Delete | kv::Operation::Purge => {
                    let (service, stage) = entry.key.split_once('.').unwrap_or((&entry.key, ""));
                    Ok(RegistryChange::Removed {
                        service: service.to_string(),
                        stage: stage.to_string(),
                    })
                }
            }
        }))
    }

    /// The highest version the registry remembers for a key (its history survives removal).
    async fn last_version(&self, key: &str) -> u64 {
        let Ok(mut history) = self.cluster.services.history(key).await else {
            return 0;
        };
        let mut last = 0;
        while let Some(Ok(entry)) = history.next().await {
            if let Ok(r) = serde_json::from_slice::<ServiceRecord>(&entry.value) {
                last = last.max(r.version);
            }
        }
        last
    }

    /// Records the next version with compare-and-set, so two nodes deploying at once get
    /// different numbers and the later one wins.
    async fn publish_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, ClusterError> {
        self.upload_package(package).await?;
        let key = key(&spec.service, &spec.stage);
        for _ in 0..20 {
            let current = self
                .cluster
                .services
                .entry(key.clone())
                .await
                .map_err(js_err("cannot read the function registry"))?;
            let (previous, revision) = match &current {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice::<ServiceRecord>(&e.value)
                        .map(|r| r.version)
                        .unwrap_or(0),
                    Some(e.revision),
                ),
                Some(e) => (self.last_version(&key).await, Some(e.revision)),
                None => (0, None),
            };
            let record = ServiceRecord {
                spec: spec.clone(),
                version: previous.max(self.local_version(spec)) + 1,
                package: package.to_string(),
                deployed_at_ms: now_ms,
            };
            let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Io(e.to_string()))?;
            let written = match revision {
                Some(rev) => self
                    .cluster
                    .services
                    .update(&key, value.into(), rev)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => self
                    .cluster
                    .services
                    .create(&key, value.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(record),
                Err(e) => {
                    tracing::debug!(key, error = %e, "registry changed under a deploy; retrying")
                }
            }
        }
        Err(ClusterError::JetStream {
            what: "cannot record the deployment".into(),
            message: "the registry entry kept changing".into(),
        })
    }

    fn local_version(&self, spec: &ServiceSpec) -> u64 {
        self.local
            .services()
            .ok()
            .and_then(|s| {
                s.into_iter()
                    .find(|r| r.spec.service == spec.service && r.spec.stage == spec.stage)
            })
            .map(|r| r.version)
            .unwrap_or(0)
    }
}

impl Registry for JetStreamRegistry {
    fn put_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, StoreError> {
        let record = block_on(&self.runtime, "cannot record the deployment", async {
            self.publish_service(spec, package, now_ms).await
        })?;
        self.local.put_record(&record)?;
        Ok(record)
    }

    fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        self.local.services()
    }

    fn remove_service(
        &self,
        service: &str,
        stage: &str,
    ) -> Result<Option<ServiceRecord>, StoreError> {
        // The registry first: if that fails, this node keeps serving and says so.
        let known = self
            .local
            .services()?
            .iter()
            .any(|s| s.spec.service == service && s.spec.stage == stage);
        if known {
            block_on(&self.runtime, "cannot remove the service", async {
                self.cluster
                    .services
                    .delete(key(service, stage))
                    .await
                    .map_err(js_err(format!("cannot remove {service}")))
            })?;
        }
        self.local.remove_service(service, stage)
    }
}
