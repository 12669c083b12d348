//! Reads the keys Tusk understands out of the parsed document into a [`ServiceSpec`].
//! Everything returns [`Diag`]s (a key path plus a message); `lib.rs` turns paths into lines.
//!
//! Over 600 lines on purpose: one reader per `serverless.yml` section, in document order, so a
//! key's handling is found where a user would look for it; each reader is short.

use crate::error::Diag;
use crate::events;
use crate::locate::{PathDisplay, Seg};
use crate::runtime::{self, DetectError};
use crate::vars::{key_str, scalar_to_string, Resolver};
use crate::{
    Destinations, EventSpec, FunctionSpec, LoadOptions, Network, QueueSpec, ServiceSpec, VolumeSpec,
};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

const DEFAULT_MEMORY: u32 = 1024;
const DEFAULT_TIMEOUT: u32 = 6;
const DEFAULT_EPHEMERAL: u32 = 512;

/// Top-level keys with no effect that are not worth a warning.
const QUIET_TOP: [&str; 9] = [
    "frameworkVersion",
    "configValidationMode",
    "variablesResolutionMode",
    "deprecationNotificationMode",
    "disabledDeprecations",
    "app",
    "org",
    "console",
    "params",
];

const QUIET_PROVIDER: [&str; 15] = [
    "profile",
    "deploymentBucket",
    "deploymentMethod",
    "deploymentPrefix",
    "stackName",
    "stackTags",
    "tags",
    "versionFunctions",
    "lambdaHashingVersion",
    "architecture",
    "runtimeManagement",
    "logRetentionInDays",
    "disableRollback",
    "description",
    "apiName",
];

const VOLUME_SHAPE: &str =
    "`fileSystemConfig` must be a mapping like {localMountPath: /mnt/data, arn: arn:aws:elasticfilesystem:REGION:ACCOUNT:access-point/NAME} (or `volume: NAME` instead of arn)";

fn volume_name_from_path(rest: &str) -> String {
    rest.rsplit('/').next().unwrap_or(rest).to_string()
}

const QUIET_FUNCTION: [&str; 5] = [
    "description",
    "tags",
    "architecture",
    "logRetentionInDays",
    "disableLogs",
];

fn path(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::key(k)).collect()
}

fn child(base: &[Seg], key: &str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::key(key));
    p
}

/// Keys of a mapping, as text, in file order.
fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Mapping(map) => map.keys().filter_map(key_str).collect(),
        _ => Vec::new(),
    }
}

/// Provider-level settings functions inherit.
struct Defaults {
    runtime: Option<(String, Vec<Seg>)>,
    layers: Option<(Vec<String>, Vec<Seg>)>,
    memory: u32,
    timeout: u32,
    environment: BTreeMap<String, String>,
}

struct Builder<'a> {
    r: Resolver<'a>,
    warnings: Vec<Diag>,
}

pub(crate) fn build(
    root: &Value,
    opts: &LoadOptions,
    dir: Option<&Path>,
) -> Result<(ServiceSpec, Vec<Diag>), Diag> {
    if root.is_null() {
        return Err(Diag::new(
            &[],
            "the file is empty: add `service`, `provider` and `functions`",
        ));
    }
    if !matches!(root, Value::Mapping(_)) {
        return Err(Diag::new(
            &[],
            "expected a YAML mapping with `service`, `provider` and `functions` at the top level",
        ));
    }
    let mut b = Builder {
        r: Resolver::new(root, opts, dir),
        warnings: Vec::new(),
    };
    b.top_level_keys(root);
    let service = b.service()?;
    b.provider_name()?;
    let stage = b.stage(opts)?;
    let region = b.r.region()?;
    let defaults = b.defaults()?;
    let package_patterns = b.package()?;
    let mut functions = b.functions(&defaults)?;
    let queues = b.constructs(&service, &stage, &region, &defaults, &mut functions)?;
    let spec = ServiceSpec {
        service,
        stage,
        region,
        package_patterns,
        functions,
        queues,
    };
    Ok((spec, b.warnings))
}

impl Builder<'_> {
    fn warn(&mut self, path: &[Seg], message: impl Into<String>) {
        self.warnings.push(Diag::new(path, message));
    }

    fn top_level_keys(&mut self, root: &Value) {
        for key in keys(root) {
            let p = path(&[&key]);
            match key.as_str() {
                "service" | "provider" | "functions" | "package" | "custom" => {}
                "plugins" => self.plugins(root, &p),
                k if QUIET_TOP.contains(&k) => {}
                "resources" => self.warn(&p, "`resources` (CloudFormation) are not created by Tusk; ignored"),
                "constructs" => {}
                "useDotenv" => self.warn(&p, "`useDotenv` is not supported by Tusk: export the variables from .env before running tusk; ignored"),
                k => self.warn(&p, format!("`{k}` has no meaning in Tusk (AWS-only); ignored")),
            }
        }
    }

    /// Plugins never run; Bref's own is named too, since Tusk implements what it provides.
    fn plugins(&mut self, root: &Value, p: &[Seg]) {
        let list = match root.get("plugins") {
            Some(Value::Mapping(map)) => map.get("modules").cloned().unwrap_or(Value::Null),
            Some(other) => other.clone(),
            None => Value::Null,
        };
        let names: Vec<String> = match list {
            Value::Sequence(items) => items.iter().filter_map(scalar_to_string).collect(),
            Value::Null => Vec::new(),
            other => scalar_to_string(&other).into_iter().collect(),
        };
        if names.is_empty() {
            return;
        }
        let names: Vec<String> = names
            .iter()
            .map(|n| {
                if n.trim_end_matches('/').ends_with("bref/bref") {
                    format!("{n} (Bref support is built into Tusk)")
                } else {
                    n.clone()
                }
            })
            .collect();
        self.warn(
            p,
            format!("plugins do not run in Tusk; ignored: {}", names.join(", ")),
        );
    }

    fn service(&mut self) -> Result<String, Diag> {
        let p = path(&["service"]);
        let (name, name_path) = match self.r.get(&p)? {
            None | Some(Value::Null) => {
                return Err(Diag::new(
                    &[],
                    "missing `service`: add `service: my-app` at the top of the file",
                ))
            }
            Some(Value::Mapping(map)) => {
                let np = child(&p, "name");
                (
                    map.get("name")
                        .and_then(scalar_to_string)
                        .unwrap_or_default(),
                    np,
                )
            }
            Some(other) => (scalar_to_string(&other).unwrap_or_default(), p),
        };
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(Diag::new(
                &name_path,
                format!("service name `{name}` must start with a letter and use only letters, digits and hyphens"),
            ));
        }
        Ok(name)
    }

    fn provider_name(&mut self) -> Result<(), Diag> {
        let p = path(&["provider", "name"]);
        match self.string(&p)? {
            None => Ok(()),
            Some(name) if name == "aws" => Ok(()),
            Some(name) => Err(Diag::new(
                &p,
                format!("provider `{name}` is not supported: Tusk runs the AWS format of serverless.yml; set `name: aws`"),
            )),
        }
    }

    fn stage(&mut self, opts: &LoadOptions) -> Result<String, Diag> {
        let stage = self.r.stage()?;
        if stage.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !stage.is_empty() {
            return Ok(stage);
        }
        let (p, source) = if opts.stage.is_some() || opts.options.contains_key("stage") {
            (Vec::new(), "--stage")
        } else {
            (path(&["provider", "stage"]), "provider.stage")
        };
        Err(Diag::new(
            &p,
            format!("stage `{stage}` (from {source}) may use only letters, digits and hyphens"),
        ))
    }

    fn defaults(&mut self) -> Result<Defaults, Diag> {
        let provider = path(&["provider"]);
        let value =
            match self.r.get_shallow(&provider)? {
                None | Some(Value::Null) => Value::Null,
                Some(value @ Value::Mapping(_)) => value,
                Some(_) => return Err(Diag::new(
                    &provider,
                    "`provider` must be a mapping, e.g. `provider: {name: aws, runtime: php-82}`",
                )),
            };
        for key in keys(&value) {
            match key.as_str() {
                "name" | "runtime" | "memorySize" | "timeout" | "environment" | "stage"
                | "region" | "layers" => {}
                k if QUIET_PROVIDER.contains(&k) => {}
                k => self.warn(
                    &child(&provider, k),
                    format!("provider.{k} is AWS-specific and has no effect in Tusk; ignored"),
                ),
            }
        }
        let runtime_path = child(&provider, "runtime");
        let layers_path = child(&provider, "layers");
        Ok(Defaults {
            runtime: self.string(&runtime_path)?.map(|r| (r, runtime_path)),
            layers: self.string_list(&layers_path)?.map(|l| (l, layers_path)),
            memory: self
                .number(&child(&provider, "memorySize"), 128, 10240, "MB")?
                .unwrap_or(DEFAULT_MEMORY),
            timeout: self
                .number(&child(&provider, "timeout"), 1, 900, "seconds")?
                .unwrap_or(DEFAULT_TIMEOUT),
            environment: self.environment(&child(&provider, "environment"), BTreeMap::new())?,
        })
    }

    fn package(&mut self) -> Result<Vec<String>, Diag> {
        let p = path(&["package"]);
        let Some(package) = self.r.get_shallow(&p)? else {
            return Ok(Vec::new());
        };
        let mut patterns = Vec::new();
        for key in keys(&package) {
            let kp = child(&p, &key);
            match key.as_str() {
                "patterns" => patterns.extend(self.string_list(&kp)?.unwrap_or_default()),
                // Serverless v2 forms, still accepted by v3: include → pattern, exclude → !pattern.
                "include" => patterns.extend(self.string_list(&kp)?.unwrap_or_default()),
                "exclude" => {
                    let excluded = self.string_list(&kp)?.unwrap_or_default();
                    patterns.extend(excluded.into_iter().map(|x| format!("!{x}")));
                }
                "excludeDevDependencies" => {}
                "individually" => self.warn(&kp, "`package.individually` is not supported: Tusk deploys one package per service; ignored"),
                "artifact" => self.warn(&kp, "`package.artifact` is ignored: Tusk packages the project directory itself"),
                k => self.warn(&kp, format!("package.{k} has no effect in Tusk; ignored")),
            }
        }
        Ok(patterns)
    }

    fn functions(&mut self, defaults: &Defaults) -> Result<Vec<FunctionSpec>, Diag> {
        let p = path(&["functions"]);
        let names = match self.r.get_shallow(&p)? {
            None | Some(Value::Null) => {
                self.warn(&[], "no `functions`: nothing will run");
                return Ok(Vec::new());
            }
            Some(value @ Value::Mapping(_)) => keys(&value),
            Some(_) => {
                return Err(Diag::new(&p, "`functions` must be a mapping of function names to definitions, e.g. `functions: {hello: {handler: index.php}}`"))
            }
        };
        let mut out = Vec::with_capacity(names.len());
        // (type, method, path) → function, to refuse two functions on the same route.
        let mut routes: Vec<(&'static str, String, String, String)> = Vec::new();
        for name in names {
            let spec = self.function(&name, defaults)?;
            for (i, event) in spec.events.iter().enumerate() {
                let (ty, method, route) = match event {
                    EventSpec::HttpApi { method, path } => ("httpApi", method, path),
                    EventSpec::Http { method, path } => ("http", method, path),
                    _ => continue,
                };
                if let Some((_, _, _, other)) = routes
                    .iter()
                    .find(|(t, m, r, _)| *t == ty && m == method && r == route)
                {
                    let ep = vec![
                        Seg::key("functions"),
                        Seg::key(&name),
                        Seg::key("events"),
                        Seg::Index(i),
                    ];
                    return Err(Diag::new(
                        &ep,
                        format!("the {ty} route `{method} {route}` of function `{name}` is already used by function `{other}`; give each route one function"),
                    ));
                }
                routes.push((ty, method.clone(), route.clone(), name.clone()));
            }
            out.push(spec);
        }
        Ok(out)
    }

    fn function(&mut self, name: &str, defaults: &Defaults) -> Result<FunctionSpec, Diag> {
        self.function_at(name, path(&["functions", name]), defaults)
    }

    /// Lift's `constructs: {NAME: {type: queue, worker: {...}}}`: a durable Tusk queue
    /// `service-stage-NAME`, a dead-letter queue after `maxRetries` deliveries, and a worker
    /// function `NAMEWorker` fed by an `sqs` event reporting batch item failures.
    fn constructs(
        &mut self,
        service: &str,
        stage: &str,
        region: &str,
        defaults: &Defaults,
        functions: &mut Vec<FunctionSpec>,
    ) -> Result<Vec<QueueSpec>, Diag> {
        let p = path(&["constructs"]);
        let names = match self.r.get_shallow(&p)? {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(value @ Value::Mapping(_)) => keys(&value),
            Some(_) => {
                return Err(Diag::new(
                    &p,
                    "`constructs` must be a mapping of construct names to definitions",
                ))
            }
        };
        let mut queues = Vec::new();
        for name in names {
            let cp = child(&p, &name);
            let kind = self.string(&child(&cp, "type"))?.unwrap_or_default();
            if kind != "queue" {
                self.warn(&cp, format!("construct `{name}` of type `{kind}` is not supported by Tusk (only `queue`); ignored"));
                continue;
            }
            let worker_name = format!("{name}Worker");
            let mut worker = self.function_at(&worker_name, child(&cp, "worker"), defaults)?;
            let max_retries = self
                .number(&child(&cp, "maxRetries"), 0, 1000, "")?
                .unwrap_or(3);
            let batch_size = self
                .number(&child(&cp, "batchSize"), 1, 10, "")?
                .unwrap_or(1);
            let window = self
                .number(&child(&cp, "maxBatchingWindow"), 0, 300, "seconds")?
                .unwrap_or(0);
            let queue = format!("{service}-{stage}-{name}");
            worker.events.push(EventSpec::Sqs {
                arn: crate::arn::queue_arn(region, &queue),
                batch_size,
                maximum_batching_window: window,
                function_response_type: Some("ReportBatchItemFailures".into()),
            });
            queues.push(QueueSpec {
                name: queue,
                visibility_timeout: worker.timeout.saturating_mul(6),
                max_receive_count: max_retries,
            });
            functions.push(worker);
        }
        Ok(queues)
    }

    fn function_at(
        &mut self,
        name: &str,
        p: Vec<Seg>,
        defaults: &Defaults,
    ) -> Result<FunctionSpec, Diag> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Diag::new(
                &p,
                format!(
                    "function name `{name}` may use only letters, digits, hyphens and underscores"
                ),
            ));
        }
        let definition = match self.r.get_shallow(&p)? {
            Some(value @ Value::Mapping(_)) => value,
            None | Some(Value::Null) => {
                return Err(Diag::new(&p, format!("function `{name}` is empty; add at least `handler:` (e.g. `handler: index.php`)")))
            }
            Some(_) => return Err(Diag::new(&p, format!("function `{name}` must be a mapping with `handler:`, `runtime:`, `events:` ..."))),
        };
        let fields = keys(&definition);
        for key in &fields {
            let kp = child(&p, key);
            match key.as_str() {
                "handler" | "runtime" | "layers" | "memorySize" | "timeout" | "environment" | "events" | "reservedConcurrency"
                | "provisionedConcurrency" | "ephemeralStorageSize" | "image" | "maximumRetryAttempts"
                | "maximumEventAge" | "destinations" | "network" | "fileSystemConfig" => {}
                k if QUIET_FUNCTION.contains(&k) => {}
                "name" => self.warn(&kp, format!("`name` is ignored: Tusk names the function <service>-<stage>-{name}")),
                k => self.warn(&kp, format!("function `{name}`: `{k}` is AWS-specific and has no effect in Tusk; ignored")),
            }
        }

        let handler = match self.string(&child(&p, "handler"))? {
            Some(h) if !h.trim().is_empty() => h,
            _ if fields.iter().any(|f| f == "image") => {
                return Err(Diag::new(
                    &child(&p, "image"),
                    format!("function `{name}` uses a container image, which Tusk does not run; use a Bref runtime and `handler:`"),
                ))
            }
            _ => {
                return Err(Diag::new(
                    &p,
                    format!("function `{name}` has no `handler`; add one, e.g. `handler: index.php` (or `public/index.php` for a php-82-fpm web app)"),
                ))
            }
        };

        let own_runtime = child(&p, "runtime");
        let (runtime, runtime_path) = match self.string(&own_runtime)? {
            Some(r) => (r, own_runtime),
            None => match &defaults.runtime {
                Some((r, rp)) => (r.clone(), rp.clone()),
                None => {
                    return Err(Diag::new(
                        &p,
                        format!("function `{name}` has no runtime; set `runtime: php-82` (or php-82-fpm for a web app) under `provider` or the function"),
                    ))
                }
            },
        };
        let own_layers = child(&p, "layers");
        // As in the Serverless Framework, a function's layers replace the provider's.
        let (layers, layers_path) = match self.string_list(&own_layers)? {
            Some(l) => (l, own_layers),
            None => defaults.layers.clone().unwrap_or_default(),
        };
        let mut notes = Vec::new();
        let detected = runtime::detect(&runtime, &layers, &mut notes).map_err(|e| match e {
            DetectError::UnknownRuntime => Diag::new(
                &runtime_path,
                format!(
                    "unknown runtime `{runtime}` for function `{name}`; use one of {}",
                    runtime::SUPPORTED
                ),
            ),
            DetectError::Layers(m) => Diag::new(&layers_path, format!("function `{name}`: {m}")),
        })?;
        for note in notes {
            self.warn(&layers_path, format!("function `{name}`: {note}"));
        }
        if let Some(version) = detected
            .php_version
            .as_deref()
            .filter(|v| *v != runtime::INSTALLED_PHP)
        {
            self.warn(
                &runtime_path,
                format!("function `{name}` asks for PHP {version} ({runtime}); it runs on the installed PHP {}", runtime::INSTALLED_PHP),
            );
        }

        let memory_size = self
            .number(&child(&p, "memorySize"), 128, 10240, "MB")?
            .unwrap_or(defaults.memory);
        let timeout = self
            .number(&child(&p, "timeout"), 1, 900, "seconds")?
            .unwrap_or(defaults.timeout);
        let ephemeral_storage_size = self
            .number(&child(&p, "ephemeralStorageSize"), 512, 10240, "MB")?
            .unwrap_or(DEFAULT_EPHEMERAL);
        let reserved_concurrency =
            self.number(&child(&p, "reservedConcurrency"), 0, u32::MAX.into(), "")?;
        let provisioned_path = child(&p, "provisionedConcurrency");
        let provisioned_concurrency = self
            .number(&provisioned_path, 0, u32::MAX.into(), "")?
            .unwrap_or(0);
        if let Some(reserved) = reserved_concurrency.filter(|r| provisioned_concurrency > *r) {
            return Err(Diag::new(
                &provisioned_path,
                format!("provisionedConcurrency ({provisioned_concurrency}) is above reservedConcurrency ({reserved}); lower it or raise reservedConcurrency"),
            ));
        }
        let environment =
            self.environment(&child(&p, "environment"), defaults.environment.clone())?;
        let events = self.events(&child(&p, "events"), name)?;
        let maximum_retry_attempts = self.number(&child(&p, "maximumRetryAttempts"), 0, 2, "")?;
        let maximum_event_age = self.number(&child(&p, "maximumEventAge"), 60, 21600, "seconds")?;
        let destinations = self.destinations(&child(&p, "destinations"))?;
        let network_path = child(&p, "network");
        let network = match self.string(&network_path)?.as_deref() {
            None | Some("default") => Network::Default,
            Some("none") => Network::None,
            Some(other) => {
                return Err(Diag::new(
                    &network_path,
                    format!("function `{name}`: `network: {other}` is not supported; use `network: none` (no network besides the Runtime API) or leave it out"),
                ))
            }
        };

        let volumes = self.file_system_config(&child(&p, "fileSystemConfig"), name)?;

        Ok(FunctionSpec {
            name: name.to_string(),
            handler,
            runtime,
            kind: detected.kind,
            php_version: detected.php_version,
            memory_size,
            timeout,
            environment,
            events,
            reserved_concurrency,
            provisioned_concurrency,
            ephemeral_storage_size,
            maximum_retry_attempts,
            maximum_event_age,
            destinations,
            network,
            volumes,
        })
    }

    /// Lambda's `fileSystemConfig: {localMountPath: /mnt/NAME, arn: ...}` (one mapping, or a
    /// list of them). The volume's name is Tusk's `volume:` key when given, else the access
    /// point of an EFS access-point ARN (`...:access-point/fsap-123` → `fsap-123`), else the last
    /// segment of `localMountPath`.
    fn file_system_config(&mut self, p: &[Seg], function: &str) -> Result<Vec<VolumeSpec>, Diag> {
        let items: Vec<Vec<Seg>> = match self.r.get_shallow(p)? {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Mapping(_)) => vec![p.to_vec()],
            Some(Value::Sequence(items)) => (0..items.len())
                .map(|i| {
                    let mut ip = p.to_vec();
                    ip.push(Seg::Index(i));
                    ip
                })
                .collect(),
            Some(_) => return Err(Diag::new(p, VOLUME_SHAPE)),
        };
        let mut out: Vec<VolumeSpec> = Vec::new();
        for ip in items {
            let Some(item @ Value::Mapping(_)) = self.r.get_shallow(&ip)? else {
                return Err(Diag::new(&ip, VOLUME_SHAPE));
            };
            for key in keys(&item) {
                if !matches!(key.as_str(), "localMountPath" | "arn" | "volume") {
                    self.warn(&child(&ip, &key), format!("fileSystemConfig: `{key}` is not used by Tusk; it knows localMountPath, arn and volume"));
                }
            }
            let mount_at = child(&ip, "localMountPath");
            let mount_path = match self.string(&mount_at)? {
                Some(m) => m,
                None => return Err(Diag::new(&ip, format!("function `{function}`: fileSystemConfig needs `localMountPath` (e.g. /mnt/data)"))),
            };
            let rest = mount_path.strip_prefix("/mnt/").unwrap_or("");
            if rest.is_empty()
                || rest
                    .split('/')
                    .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                return Err(Diag::new(
                    &mount_at,
                    format!("localMountPath `{mount_path}` must be a path under /mnt/ (e.g. /mnt/data), as on Lambda"),
                ));
            }
            let volume_at = child(&ip, "volume");
            let arn_at = child(&ip, "arn");
            let (name, name_at) = match self.string(&volume_at)? {
                Some(v) => (v, volume_at),
                None => match self.string(&arn_at)? {
                    Some(arn) => match arn.rsplit_once(":access-point/") {
                        Some((_, ap)) => (ap.to_string(), arn_at),
                        None => (volume_name_from_path(rest), mount_at.clone()),
                    },
                    None => (volume_name_from_path(rest), mount_at.clone()),
                },
            };
            if !VolumeSpec::valid_name(&name) {
                return Err(Diag::new(
                    &name_at,
                    format!("volume name `{name}` may use only letters, digits, `-`, `_` and `.` (at most 64); set `volume: NAME` to choose one"),
                ));
            }
            if out.iter().any(|v| v.mount_path == mount_path) {
                return Err(Diag::new(
                    &mount_at,
                    format!("function `{function}` mounts two volumes at {mount_path}"),
                ));
            }
            out.push(VolumeSpec { name, mount_path });
        }
        Ok(out)
    }

    fn destinations(&mut self, p: &[Seg]) -> Result<Destinations, Diag> {
        let Some(value) = self.r.get_shallow(p)? else {
            return Ok(Destinations::default());
        };
        if !matches!(value, Value::Mapping(_)) {
            return Err(Diag::new(p, "`destinations` must be a mapping with `onSuccess` and/or `onFailure`, e.g. onFailure: arn:aws:sqs:us-east-1:000000000000:failed"));
        }
        for key in keys(&value) {
            if key != "onSuccess" && key != "onFailure" {
                self.warn(&child(p, &key), format!("destinations: `{key}` is not a destination Tusk knows; use onSuccess or onFailure"));
            }
        }
        Ok(Destinations {
            on_success: self.string(&child(p, "onSuccess"))?,
            on_failure: self.string(&child(p, "onFailure"))?,
        })
    }

    fn events(&mut self, p: &[Seg], function: &str) -> Result<Vec<EventSpec>, Diag> {
        let items = match self.r.get_shallow(p)? {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(items)) => items,
            Some(_) => {
                return Err(Diag::new(
                    p,
                    "`events` must be a list, e.g. `events: [{httpApi: '*'}]`",
                ))
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let mut ip = p.to_vec();
            ip.push(Seg::Index(i));
            let item = match item {
                Value::String(s) if crate::vars::has_var(s) => {
                    self.r.get_shallow(&ip)?.unwrap_or(Value::Null)
                }
                other => other.clone(),
            };
            let types = keys(&item);
            let ty = match (&item, types.as_slice()) {
                (Value::Mapping(_), [ty]) => ty.clone(),
                _ => {
                    return Err(Diag::new(
                        &ip,
                        "each event is a mapping with one event type, e.g. `- httpApi: 'GET /hello'` or `- schedule: rate(5 minutes)`",
                    ))
                }
            };
            let tp = child(&ip, &ty);
            if !events::SUPPORTED.contains(&ty.as_str()) {
                self.warn(&tp, format!("function `{function}`: event type {ty} is not supported by Tusk yet; ignored"));
                continue;
            }
            let value = self.r.get(&tp)?.unwrap_or(Value::Null);
            out.extend(events::parse(&ty, &value, &tp, &mut self.warnings)?);
        }
        Ok(out)
    }

    /// A scalar setting as text; `None` when absent or null.
    fn string(&mut self, p: &[Seg]) -> Result<Option<String>, Diag> {
        match self.r.get(p)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => scalar_to_string(&value)
                .map(Some)
                .ok_or_else(|| Diag::new(p, format!("`{}` must be a string", PathDisplay(p)))),
        }
    }

    /// A list of strings (a single string counts as a list of one).
    fn string_list(&mut self, p: &[Seg]) -> Result<Option<Vec<String>>, Diag> {
        let value = match self.r.get(p)? {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        let items = match value {
            Value::Sequence(items) => items,
            Value::String(s) => vec![Value::String(s)],
            _ => {
                return Err(Diag::new(
                    p,
                    format!("`{}` must be a list of strings", PathDisplay(p)),
                ))
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                _ => {
                    let mut ip = p.to_vec();
                    ip.push(Seg::Index(i));
                    return Err(Diag::new(
                        &ip,
                        format!("`{}` must be a string", PathDisplay(&ip)),
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// A whole number within `min..=max`; numeric strings (from variables) are accepted.
    fn number(&mut self, p: &[Seg], min: u64, max: u64, unit: &str) -> Result<Option<u32>, Diag> {
        let value = match self.r.get(p)? {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" ({unit})")
        };
        let range = if max == u64::from(u32::MAX) {
            format!("0 or more{unit}")
        } else {
            format!("from {min} to {max}{unit}")
        };
        events::bounded(&value, min, max).map(Some).ok_or_else(|| {
            let shown = scalar_to_string(&value).unwrap_or_else(|| "a mapping or list".to_string());
            Diag::new(
                p,
                format!(
                    "`{}` is {shown}; use a whole number {range}",
                    PathDisplay(p)
                ),
            )
        })
    }

    /// `base` overlaid with the mapping at `p`. A null value removes a variable, so a function
    /// can drop one it would inherit from the provider.
    fn environment(
        &mut self,
        p: &[Seg],
        mut base: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Diag> {
        let map = match self.r.get(p)? {
            None | Some(Value::Null) => return Ok(base),
            Some(Value::Mapping(map)) => map,
            Some(_) => {
                return Err(Diag::new(
                    p,
                    "`environment` must be a mapping of NAME: value",
                ))
            }
        };
        for (k, v) in &map {
            let key = key_str(k).unwrap_or_default();
            let kp = child(p, &key);
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(Diag::new(
                    &kp,
                    format!("invalid environment variable name `{key}`"),
                ));
            }
            match v {
                Value::Null => {
                    base.remove(&key);
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    base.insert(key, scalar_to_string(v).unwrap_or_default());
                }
                _ => {
                    return Err(Diag::new(
                        &kp,
                        format!("environment variable `{key}` must be a string, number or boolean, not a mapping or list"),
                    ))
                }
            }
        }
        Ok(base)
    }
}
