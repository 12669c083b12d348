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
//! - user queues: settings in KV bucket `tusk-queues`, messages in work-queue stream
//!   `TUSK_QUEUES` (`tusk.queue.NAME`), see [`JetStreamQueues`];
//! - which nodes are up: each announces its URL on core NATS (`tusk.nodes`), see [`Peers`].
//!
//! [`JetStreamRegistry`] implements [`tusk_store::Registry`], [`JetStreamLogStore`]
//! [`tusk_store::LogStore`] and [`JetStreamTransport`] [`tusk_events::AsyncTransport`]: the same
//! seams as a single node, second implementations.

mod logs;
mod peers;
mod queues;
mod registry;
mod transport;

pub use logs::JetStreamLogStore;
pub use peers::Peers;
pub use queues::JetStreamQueues;
pub use registry::{JetStreamRegistry, RegistryChange};
pub use transport::JetStreamTransport;

use async_nats::jetstream::{self, kv, object_store, stream};
use std::sync::Arc;
use std::time::Duration;

pub const SERVICES_BUCKET: &str = "tusk-services";
pub const SCHEDULES_BUCKET: &str = "tusk-schedules";
pub const PACKAGES_BUCKET: &str = "tusk-packages";
pub const QUEUES_BUCKET: &str = "tusk-queues";
pub const QUEUES_STREAM: &str = "TUSK_QUEUES";
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
    /// Credentials NATS asks for (from the environment; `nats://USER:PASS@HOST` in a URL is
    /// used when the environment sets none).
    pub auth: ClusterAuth,
}

/// The environment variable holding the NATS token.
pub const TOKEN_VAR: &str = "TUSK_CLUSTER_TOKEN";
/// The environment variables holding a NATS user and password.
pub const USER_VAR: &str = "TUSK_CLUSTER_USER";
pub const PASSWORD_VAR: &str = "TUSK_CLUSTER_PASSWORD";

/// How the node authenticates to NATS. `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum ClusterAuth {
    #[default]
    None,
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterAuth::None => f.write_str("None"),
            ClusterAuth::Token(_) => f.write_str("Token(<redacted>)"),
            ClusterAuth::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}")
            }
        }
    }
}

impl ClusterAuth {
    /// Reads `TUSK_CLUSTER_TOKEN`, or `TUSK_CLUSTER_USER` with `TUSK_CLUSTER_PASSWORD`, through
    /// `var` (the process environment in `tusk serve`). Empty values count as unset.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<ClusterAuth, String> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let token = get(TOKEN_VAR);
        let user = get(USER_VAR);
        let password = get(PASSWORD_VAR);
        match (token, user, password) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(format!(
                "set either {TOKEN_VAR} or {USER_VAR} and {PASSWORD_VAR}, not both"
            )),
            (Some(token), None, None) => Ok(ClusterAuth::Token(token.trim().to_string())),
            (None, Some(user), Some(password)) => Ok(ClusterAuth::UserPassword { user, password }),
            (None, Some(_), None) => Err(format!("{USER_VAR} is set but {PASSWORD_VAR} is not")),
            (None, None, Some(_)) => Err(format!("{PASSWORD_VAR} is set but {USER_VAR} is not")),
            (None, None, None) => Ok(ClusterAuth::None),
        }
    }

    fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            ClusterAuth::None => options,
            ClusterAuth::Token(token) => options.token(token.clone()),
            ClusterAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
        }
    }
}

/// `nats://USER:PASS@HOST:PORT` without what is before the `@`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_string(),
    }
}

/// Percent-decodes a URL's user or password (`%40` for `@` and so on).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &bytes[i + 1..i + 3];
            if hex.iter().all(u8::is_ascii_hexdigit) {
                let hex = std::str::from_utf8(hex).unwrap_or("0");
                let byte = u8::from_str_radix(hex, 16).unwrap_or(0);
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {urls}: {message}")]
    Connect { urls: String, message: String },
    #[error("NATS at {urls} refused this node (authorization violation): {hint}")]
    Unauthorized { urls: String, hint: String },
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

/// Runs JetStream work for a (blocking) store call on the node's runtime. A panic in the NATS
/// client becomes an error: the log writer thread must outlive it.
pub(crate) fn block_on<T>(
    runtime: &tokio::runtime::Handle,
    what: &str,
    work: impl std::future::Future<Output = Result<T, ClusterError>>,
) -> Result<T, tusk_store::StoreError> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(work)));
    match outcome {
        Ok(result) => result.map_err(|e| tusk_store::StoreError::Cluster(Box::new(e))),
        Err(_) => Err(tusk_store::StoreError::Cluster(
            format!("{what}: the NATS client failed").into(),
        )),
    }
}

/// A connection to the cluster's JetStream with every bucket and stream Tusk uses.
pub struct Cluster {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub services: kv::Store,
    pub schedules: kv::Store,
    pub queues: kv::Store,
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
    /// True while the node holds a connection to a NATS server (the client reconnects by
    /// itself; readiness reports the gaps).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub async fn connect(config: &ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        // Credentials never reach a log line or an error message.
        let urls = config
            .urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
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
        let auth = match &config.auth {
            ClusterAuth::None => url_auth(&addrs),
            auth => auth.clone(),
        };
        // NATS may still be starting: keep trying for a minute.
        let mut tries = 0;
        let client = loop {
            match auth
                .apply(options(&config.node_name))
                .connect(addrs.clone())
                .await
            {
                Ok(client) => break client,
                // Wrong or missing credentials do not fix themselves: say what to set.
                Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation => {
                    return Err(ClusterError::Unauthorized {
                        urls: urls.clone(),
                        hint: unauthorized_hint(&auth),
                    });
                }
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
        let (services, schedules, queues, packages) = loop {
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
            queues,
            packages,
            replicas,
        }))
    }

    /// Opens (creating where missing) every bucket and stream Tusk uses.
    async fn prepare(
        js: &jetstream::Context,
        config: &ClusterConfig,
        replicas: usize,
    ) -> Result<(kv::Store, kv::Store, kv::Store, object_store::ObjectStore), ClusterError> {
        let services = ensure_kv(js, SERVICES_BUCKET, 16, replicas).await?;
        let schedules = ensure_kv(js, SCHEDULES_BUCKET, 1, replicas).await?;
        let queues = ensure_kv(js, QUEUES_BUCKET, 1, replicas).await?;
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
        js.get_or_create_stream(stream::Config {
            name: QUEUES_STREAM.into(),
            subjects: vec!["tusk.queue.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            // SQS keeps a message at most 14 days.
            max_age: Duration::from_secs(14 * 24 * 3600),
            // A send retried across a failover is stored once.
            duplicate_window: Duration::from_secs(120),
            // Queue statistics read the oldest message of a queue directly.
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(js_err("cannot create the queue stream"))?;
        Ok((services, schedules, queues, packages))
    }
}

/// `nats://USER:PASS@HOST` (async-nats does not send a URL's credentials by itself).
fn url_auth(addrs: &[async_nats::ServerAddr]) -> ClusterAuth {
    addrs
        .iter()
        .find(|a| a.has_user_pass())
        .map(|a| {
            let user = percent_decode(a.username().unwrap_or_default());
            match a.password() {
                Some(password) => ClusterAuth::UserPassword {
                    user,
                    password: percent_decode(password),
                },
                // `nats://TOKEN@HOST`, as the NATS tools read it.
                None => ClusterAuth::Token(user),
            }
        })
        .unwrap_or_default()
}

fn unauthorized_hint(auth: &ClusterAuth) -> String {
    let what = match auth {
        ClusterAuth::None => "it requires credentials and this node has none",
        ClusterAuth::Token(_) => "it does not accept this node's token",
        ClusterAuth::UserPassword { .. } => "it does not accept this node's user and password",
    };
    format!(
        "{what}; set {TOKEN_VAR} (or {USER_VAR} and {PASSWORD_VAR}) in tusk serve's \
         environment to the credentials in the NATS servers' `authorization` block"
    )
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
    fn store_calls_keep_the_cluster_error_and_survive_a_panicking_client() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let failed = block_on(runtime.handle(), "cannot read logs", async {
            Err::<(), _>(ClusterError::Io("gone".into()))
        })
        .unwrap_err();
        let source = std::error::Error::source(&failed).unwrap();
        assert!(matches!(
            source.downcast_ref::<ClusterError>(),
            Some(ClusterError::Io(m)) if m == "gone"
        ));
        let panicked = block_on(runtime.handle(), "cannot read logs", async {
            if true {
                panic!("the NATS client broke");
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(
            panicked.to_string(),
            "cluster: cannot read logs: the NATS client failed"
        );
    }

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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credentials_come_from_the_environment() {
        assert_eq!(ClusterAuth::from_env(env(&[])), Ok(ClusterAuth::None));
        assert_eq!(
            ClusterAuth::from_env(env(&[(TOKEN_VAR, "s3cret\n")])),
            Ok(ClusterAuth::Token("s3cret".into()))
        );
        assert_eq!(
            ClusterAuth::from_env(env(&[(USER_VAR, "tusk"), (PASSWORD_VAR, "pw")])),
            Ok(ClusterAuth::UserPassword {
                user: "tusk".into(),
                password: "pw".into()
            })
        );
        assert!(ClusterAuth::from_env(env(&[(USER_VAR, "tusk")])).is_err());
        assert!(ClusterAuth::from_env(env(&[(PASSWORD_VAR, "pw")])).is_err());
        assert!(ClusterAuth::from_env(env(&[(TOKEN_VAR, "t"), (USER_VAR, "u")])).is_err());
        assert_eq!(
            ClusterAuth::from_env(env(&[(TOKEN_VAR, "")])),
            Ok(ClusterAuth::None)
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_urls() {
        let shown = format!(
            "{:?} {:?}",
            ClusterAuth::Token("s3cret".into()),
            ClusterAuth::UserPassword {
                user: "tusk".into(),
                password: "pw-s3cret".into()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            redact_url("nats://u:p@10.0.0.1:4222"),
            "nats://10.0.0.1:4222"
        );
        assert_eq!(redact_url("nats://tok@nats:4222"), "nats://nats:4222");
        assert_eq!(redact_url("nats://nats:4222"), "nats://nats:4222");
        assert_eq!(redact_url("u:p@nats:4222"), "nats:4222");
    }

    #[test]
    fn url_credentials_are_used() {
        let addrs: Vec<async_nats::ServerAddr> = vec![
            "nats://a:4222".parse().unwrap(),
            "nats://tusk:p%40ss@b:4222".parse().unwrap(),
        ];
        assert_eq!(
            url_auth(&addrs),
            ClusterAuth::UserPassword {
                user: "tusk".into(),
                password: "p@ss".into()
            }
        );
        let addrs: Vec<async_nats::ServerAddr> = vec!["nats://tok@a:4222".parse().unwrap()];
        assert_eq!(url_auth(&addrs), ClusterAuth::Token("tok".into()));
        let addrs: Vec<async_nats::ServerAddr> = vec!["nats://a:4222".parse().unwrap()];
        assert_eq!(url_auth(&addrs), ClusterAuth::None);
    }
}
