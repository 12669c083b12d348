//! The resolved deployment model: what a `serverless.yml` means once variables are resolved.
//! The CLI builds it from the YAML and sends it to the node as JSON; the node stores and runs it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One deployed service (a `serverless.yml` at one stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub service: String,
    pub stage: String,
    pub region: String,
    /// `package.patterns`, in file order (`!pattern` excludes).
    #[serde(default)]
    pub package_patterns: Vec<String>,
    pub functions: Vec<FunctionSpec>,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
}

/// Which process serves a function's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// `php-8x`: Tusk's PHP runtime loop speaking the Runtime API.
    PhpFunction,
    /// `php-8x-fpm`: a web app behind FastCGI; the handler is the front controller.
    PhpFpm,
    /// `php-8x-console`: `php <handler> <args>` per invocation.
    PhpConsole,
    /// `provided*`: the package's own `bootstrap` speaking the Runtime API.
    Provided,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Short name, the key under `functions:`.
    pub name: String,
    pub handler: String,
    /// The runtime as written (e.g. `php-82-fpm`, `provided.al2023`).
    pub runtime: String,
    pub kind: RuntimeKind,
    /// PHP version the runtime name asked for (`8.2`), `None` for `provided` without a Bref layer.
    pub php_version: Option<String>,
    /// MB; default 1024.
    pub memory_size: u32,
    /// Seconds; default 6.
    pub timeout: u32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
    pub reserved_concurrency: Option<u32>,
    #[serde(default)]
    pub provisioned_concurrency: u32,
    /// MB; default 512.
    pub ephemeral_storage_size: u32,
    /// Retries of a failed async invocation (0-2; Lambda's default 2 when `None`).
    #[serde(default)]
    pub maximum_retry_attempts: Option<u32>,
    /// Seconds an async event may wait before it is dropped (60-21600; default 21600).
    #[serde(default)]
    pub maximum_event_age: Option<u32>,
    /// Where async invocation records go.
    #[serde(default)]
    pub destinations: Destinations,
    /// `network: none` (a Tusk extension): no network in the instance but its Runtime API.
    #[serde(default)]
    pub network: Network,
    /// Persistent volumes (Lambda's `fileSystemConfig`), mounted read-write in every instance.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

/// A named persistent directory on the node (`DATA_DIR/volumes/NAME`), shared by every instance
/// that mounts it and kept across deploys and restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// `[A-Za-z0-9_.-]`, at most 64 characters, not `.` or `..`.
    pub name: String,
    /// Absolute path inside the instance, under `/mnt/` as Lambda requires.
    pub mount_path: String,
}

impl VolumeSpec {
    /// A name that is one plain directory under `DATA_DIR/volumes`.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// A path under `/mnt/` without empty, `.` or `..` segments.
    pub fn valid_mount_path(path: &str) -> bool {
        path.strip_prefix("/mnt/").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        })
    }

    /// Checked again by the node: a spec can reach it without the CLI's parser.
    pub fn is_valid(&self) -> bool {
        Self::valid_name(&self.name) && Self::valid_mount_path(&self.mount_path)
    }
}

/// A function's network access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The node's network, as on Lambda.
    #[default]
    Default,
    /// Nothing but loopback (where the Runtime API is).
    None,
}

/// `destinations: {onSuccess, onFailure}`: a function name or ARN, or an SQS queue ARN naming a
/// Tusk queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Destinations {
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// A Tusk queue the service declares (Lift's `constructs: {NAME: {type: queue}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// Full queue name: `service-stage-construct`.
    pub name: String,
    pub visibility_timeout: u32,
    /// Deliveries before a message moves to the dead-letter queue `NAME-dlq`; 0 = no DLQ.
    pub max_receive_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventSpec {
    /// API Gateway HTTP API (payload 2.0). `method` is upper-case or `*`; `path` is `*` for the
    /// catch-all route `'*'`, otherwise starts with `/` and may hold `{param}` / `{proxy+}`.
    HttpApi { method: String, path: String },
    /// API Gateway REST API (payload 1.0). Same conventions; `ANY` is stored as `*`.
    Http { method: String, path: String },
    Schedule {
        /// `rate(...)` or `cron(...)` as written.
        expression: String,
        input: Option<serde_json::Value>,
        enabled: bool,
    },
    Sqs {
        arn: String,
        batch_size: u32,
        maximum_batching_window: u32,
        function_response_type: Option<String>,
    },
}

impl ServiceSpec {
    /// The Lambda function name, as the Serverless Framework names it: `service-stage-name`.
    pub fn function_name(&self, function: &FunctionSpec) -> String {
        format!("{}-{}-{}", self.service, self.stage, function.name)
    }
}
