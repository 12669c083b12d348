//! Tusk on many nodes, over NATS JetStream (`tusk serve --cluster nats://...`).
//!
//! - the function registry: KV bucket `tusk-services`, one key `SERVICE.STAGE` per deployed
//!   service holding its live [`tusk_store::ServiceRecord`] (version numbers by compare-and-set);
//! - packages: Object Store `tusk-packages`, one object per package sha256;
//! - logs: stream `TUSK_LOGS` (`tusk.logs.FUNCTION`), read directly by `tusk logs` on any node;
//! - async invocations and schedule ticks: work-queue stream `TUSK_ASYNC`
//!   (`tusk.async.FUNCTION`) with one durable pull consumer per function shared by every node,
//!   explicit acks and a de-duplication window (schedules publish each tick under one id);
//! - schedule anchors: KV bucket `tusk-schedules`;
//! - which nodes are up: each announces its URL on core NATS (`tusk.nodes`), see [`Peers`].
//!
//! [`ClusterStore`] implements [`tusk_store::Store`] and [`JetStreamTransport`] implements
//! [`tusk_events::AsyncTransport`]: the same seams as a single node, second implementations.

mod peers;
mod store;
mod transport;

pub use peers::Peers;
pub use store::{ClusterStore, RegistryChange};
pub use transport::JetStreamTransport;

use async_nats::jetstream::{self, kv, object_store, stream};
use std::sync::Arc;
use std::time::Duration;

pub const SERVICES_BUCKET: &str = "tusk-services";
pub const SCHEDULES_BUCKET: &str = "tusk-schedules";
pub const PACKAGES_BUCKET: &str = "tusk-packages";
pub const ASYNC_STREAM: &str = "TUSK_ASYNC";
pub const LOGS_STREAM: &str = "TUSK_LOGS";

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT` of one or more servers of the NATS cluster.
    pub urls: Vec<String>,
    /// Copies JetStream keeps of every bucket and stream (1 when NATS is a single server).
    pub replicas: usize,
    /// How long log lines are kept.
    pub log_retention: Duration,
    /// A name for this node in NATS' connection list.
    pub node_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {urls}: {message}")]
    Connect { urls: String, message: String },
    #[error("{what}: {message}")]
    JetStream { what: String, message: String },
    #[error("{0}")]
    Io(String),
}

pub(crate) fn js_err<E: std::fmt::Display>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> ClusterError {
    let what = what.into();
    move |e| ClusterError::JetStream {
        what,
        message: e.to_string(),
    }
}

/// A connection to the cluster's JetStream with every bucket and stream Tusk uses.
pub struct Cluster {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub services: kv::Store,
    pub schedules: kv::Store,
    pub packages: object_store::ObjectStore,
    pub replicas: usize,
}

/// Accepts `nats://a:4222,nats://b:4222` as well as repeated flags.
pub fn parse_urls(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

impl Cluster {
    /// Connects (waiting for NATS to come up) and creates what is missing.
    pub async fn connect(config: &ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        let urls = config.urls.join(",");
        let connect_err = |e: async_nats::ConnectError| ClusterError::Connect {
            urls: urls.clone(),
            message: e.to_string(),
        };
        let addrs: Vec<async_nats::ServerAddr> = config
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| ClusterError::Connect {
                urls: urls.clone(),
                message: e.to_string(),
            })?;
        // NATS may still be starting: keep trying for a minute.
        let mut tries = 0;
        let client = loop {
            match options(&config.node_name).connect(addrs.clone()).await {
                Ok(client) => break client,
                Err(e) if tries < 60 => {
                    tries += 1;
                    tracing::info!(error = %e, "NATS is not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(connect_err(e)),
            }
        };
        // A lone server cannot keep copies elsewhere.
        let replicas = if client.server_info().cluster.is_some() {
            config.replicas.clamp(1, 5)
        } else {
            1
        };
        let js = jetstream::new(client.clone());
        // JetStream answers only once its servers have elected a leader: keep asking for a
        // while (NATS and Tusk often start together, e.g. on Kubernetes).
        let mut tries = 0;
        let (services, schedules, packages) = loop {
            match Self::prepare(&js, config, replicas).await {
                Ok(handles) => break handles,
                Err(e) if tries < 60 => {
                    tries += 1;
                    tracing::info!(error = %e, "JetStream is not ready yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(urls = %urls, replicas, "joined the cluster");
        Ok(Arc::new(Cluster {
            client,
            js,
            services,
            schedules,
            packages,
            replicas,
        }))
    }

    /// Opens (creating where missing) every bucket and stream Tusk uses.
    async fn prepare(
        js: &jetstream::Context,
        config: &ClusterConfig,
        replicas: usize,
    ) -> Result<(kv::Store, kv::Store, object_store::ObjectStore), ClusterError> {
        let services = ensure_kv(js, SERVICES_BUCKET, 16, replicas).await?;
        let schedules = ensure_kv(js, SCHEDULES_BUCKET, 1, replicas).await?;
        let packages = match js.get_object_store(PACKAGES_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: PACKAGES_BUCKET.into(),
                    description: Some("Tusk deployment packages, named by sha256".into()),
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(js_err("cannot create the package store"))?,
        };
        js.get_or_create_stream(stream::Config {
            name: ASYNC_STREAM.into(),
            subjects: vec!["tusk.async.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            // Every node publishes every schedule tick under one id: longer than any clock
            // skew or failover between them.
            duplicate_window: Duration::from_secs(300),
            ..Default::default()
        })
        .await
        .map_err(js_err("cannot create the async event stream"))?;
        js.get_or_create_stream(stream::Config {
            name: LOGS_STREAM.into(),
            subjects: vec!["tusk.logs.>".into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_age: config.log_retention,
            // `tusk logs` reads with direct gets, from any replica.
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(js_err("cannot create the log stream"))?;
        Ok((services, schedules, packages))
    }
}

fn options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        // Never give up on the cluster once joined.
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the NATS connection; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
}

async fn ensure_kv(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    // The bucket's stream, laid out as the KV API lays it out. `create_key_value` first asks
    // for account details in a shape nats-server 2.9 does not send, so make it directly.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(js_err(format!(
        "cannot create the key-value bucket {bucket}"
    )))?;
    js.get_key_value(bucket)
        .await
        .map_err(js_err(format!("cannot open the key-value bucket {bucket}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_may_be_comma_separated_or_repeated() {
        let given = vec![
            "nats://a:4222, nats://b:4222".to_string(),
            "nats://c:4222,".to_string(),
        ];
        assert_eq!(
            parse_urls(&given),
            vec!["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert!(parse_urls(&[]).is_empty());
    }
}
