//! [`ClusterStore`]: the registry in JetStream KV (with packages in the Object Store), logs in
//! a stream, and a local SQLite copy of the registry that the node serves from.
//!
//! The [`Store`] trait is synchronous (the gateway calls it from blocking threads), so each
//! call runs its JetStream work on the node's runtime with [`tokio::runtime::Handle::block_on`].

use crate::{js_err, Cluster, ClusterError, LOGS_STREAM, PACKAGES_BUCKET};
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::DirectGetErrorKind;
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tusk_manifest::ServiceSpec;
use tusk_store::{LogLine, NewLogLine, ServiceRecord, SqliteStore, Store, StoreError};

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

pub struct ClusterStore {
    cluster: Arc<Cluster>,
    local: Arc<SqliteStore>,
    packages_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    /// Unique per process: with `log_seq` it names every log line (de-duplication of retries).
    node_id: String,
    log_seq: std::sync::atomic::AtomicU64,
}

fn key(service: &str, stage: &str) -> String {
    format!("{service}.{stage}")
}

fn to_store(e: ClusterError) -> StoreError {
    StoreError::Cluster(e.to_string())
}

impl ClusterStore {
    /// `packages_dir` holds the node's copies of packages (`SHA.zip`).
    pub fn new(
        cluster: Arc<Cluster>,
        local: Arc<SqliteStore>,
        packages_dir: PathBuf,
        runtime: tokio::runtime::Handle,
    ) -> ClusterStore {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        ClusterStore {
            cluster,
            local,
            packages_dir,
            runtime,
            node_id: format!("{:x}-{}", started, std::process::id()),
            log_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The node's copy of the registry.
    pub fn local(&self) -> &Arc<SqliteStore> {
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

    /// Publishes a batch of lines, retrying the ones not stored (e.g. while the stream elects
    /// a new leader after a NATS server died) for up to a minute. Every line carries an id, so
    /// a retry of a line that was stored after all is dropped by JetStream.
    async fn publish_logs(&self, lines: &[NewLogLine]) -> Result<(), ClusterError> {
        let mut pending: Vec<(String, &NewLogLine)> =
            lines.iter().map(|l| (self.next_log_id(), l)).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut acks = Vec::with_capacity(pending.len());
            let mut last_error = None;
            for (id, line) in &pending {
                let payload =
                    serde_json::to_vec(line).map_err(|e| ClusterError::Io(e.to_string()))?;
                let message = PublishMessage::build()
                    .payload(payload.into())
                    .message_id(id.as_str());
                let ack = self
                    .cluster
                    .js
                    .send_publish(format!("tusk.logs.{}", line.function), message)
                    .await;
                acks.push(ack);
            }
            let mut failed = Vec::new();
            for ((id, line), ack) in pending.into_iter().zip(acks) {
                let stored = match ack {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = stored {
                    last_error = Some(e);
                    failed.push((id, line));
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::JetStream {
                    what: format!("{} log lines were not stored", failed.len()),
                    message: last_error.unwrap_or_default(),
                });
            }
            pending = failed;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn next_log_id(&self) -> String {
        let n = self
            .log_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.node_id)
    }

    /// [`Self::read_logs_once`], tried again while the cluster fails over.
    async fn read_logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, ClusterError> {
        let mut tries = 0;
        loop {
            match self
                .read_logs_once(function, since_ms, after_id, limit)
                .await
            {
                Ok(lines) => return Ok(lines),
                Err(e) if tries < 4 => {
                    tries += 1;
                    tracing::debug!(function, error = %e, "cannot read logs; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads with JetStream's direct get (served by any replica), one line per request, so
    /// reading needs no consumer: nats-server 2.9 may place an ephemeral consumer on a peer
    /// that is down, and then the read times out.
    async fn read_logs_once(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, ClusterError> {
        let mut stream = self
            .cluster
            .js
            .get_stream(LOGS_STREAM)
            .await
            .map_err(js_err("cannot open the log stream"))?;
        let state = stream
            .info()
            .await
            .map_err(js_err("cannot open the log stream"))?
            .state
            .clone();
        let mut out = Vec::new();
        if state.messages == 0 || limit == 0 {
            return Ok(out);
        }
        let mut next = if after_id > 0 {
            after_id as u64 + 1
        } else {
            self.first_at_or_after(&stream, state.first_sequence, state.last_sequence, since_ms)
                .await
        };
        let subject = format!("tusk.logs.{function}");
        while out.len() < limit && next <= state.last_sequence {
            let message = match stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(js_err("cannot read the log stream")(e)),
            };
            next = message.sequence + 1;
            if let Ok(line) = serde_json::from_slice::<NewLogLine>(&message.payload) {
                if line.ts_ms >= since_ms {
                    LogLine {
                        id: message.sequence as i64,
                        ts_ms: line.ts_ms,
                        request_id: line.request_id,
                        stream: line.stream,
                        line: line.line,
                    }
                    .push_expanded(&mut out);
                }
            }
        }
        Ok(out)
    }

    /// The first sequence stored at or after `since_ms` (a binary search over the stream).
    async fn first_at_or_after(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        first: u64,
        last: u64,
        since_ms: i64,
    ) -> u64 {
        if since_ms <= 0 {
            return first;
        }
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at_ms = match stream.direct_get(mid).await {
                Ok(m) => (m.time.unix_timestamp_nanos() / 1_000_000) as i64,
                // A gap (or a hiccup): scanning from lower down is always correct.
                Err(_) => return lo,
            };
            if at_ms < since_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl ClusterStore {
    /// Runs JetStream work for a (blocking) `Store` call on the node's runtime. A panic in the
    /// NATS client becomes an error: the log writer thread must outlive it.
    fn run<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, StoreError> {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.runtime.block_on(work)));
        match outcome {
            Ok(result) => result.map_err(to_store),
            Err(_) => Err(StoreError::Cluster(format!(
                "{what}: the NATS client failed"
            ))),
        }
    }
}

impl Store for ClusterStore {
    fn put_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, StoreError> {
        let record = self.run("cannot record the deployment", async {
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
            self.run("cannot remove the service", async {
                self.cluster
                    .services
                    .delete(key(service, stage))
                    .await
                    .map_err(js_err(format!("cannot remove {service}")))
            })?;
        }
        self.local.remove_service(service, stage)
    }

    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        self.run("cannot publish log lines", self.publish_logs(lines))
    }

    fn logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        self.run(
            "cannot read logs",
            self.read_logs(function, since_ms, after_id, limit),
        )
    }

    /// The log stream's `max_age` prunes; nothing to do here.
    fn prune_logs(&self, _before_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
}
