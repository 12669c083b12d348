//! The control plane: packages, deployments, and turning stored services into live pools and
//! routes. It never speaks HTTP: the gateway's admin API calls in and maps [`ControlError`].
//!
//! Over 600 lines: deploy, restore and the cluster's replicated activation share one
//! check-then-activate sequence; splitting the registry from activation is left for when the
//! store's registry seam lands (issue 12).

use crate::routes::{routes_for, Route, RouteTable};
use crate::ControlError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tusk_instance::{LaunchSpec, LogSink};
use tusk_manifest::{FunctionSpec, RuntimeKind, ServiceSpec};
use tusk_pool::{Dispatcher, FunctionPool, PoolLimits};
use tusk_store::{LogStore, Registry, ServiceRecord};

/// Where PHP lives on this node.
#[derive(Debug, Clone)]
pub struct PhpInstall {
    pub cli: PathBuf,
    pub cgi: PathBuf,
    /// `8.2`
    pub version: String,
}

pub struct ControlPlane {
    pub registry: Arc<dyn Registry>,
    /// Where function logs are kept (read by the admin API; written through `logs`).
    pub log_store: Arc<dyn LogStore>,
    pub dispatcher: Arc<Dispatcher>,
    pub routes: RwLock<Arc<RouteTable>>,
    pub services: RwLock<Vec<ServiceRecord>>,
    pub data_dir: PathBuf,
    pub php: Option<PhpInstall>,
    pub php_runtime_dir: PathBuf,
    pub limits: PoolLimits,
    pub logs: Arc<dyn LogSink>,
    pub events: Arc<tusk_events::EventEngine>,
    /// Base URL of this node, for the queue URLs functions receive.
    pub base_url: String,
    /// Where php-cgi workers' Unix sockets live (see [`socket_dir`]).
    pub socket_dir: PathBuf,
    /// How instances are isolated (set with [`ControlPlane::with_sandbox`]).
    pub sandbox: Arc<tusk_sandbox::Sandbox>,
    /// What an unpacked package may hold (set with [`ControlPlane::with_package_limits`]).
    pub package_limits: crate::package::Limits,
    /// One deploy at a time keeps version numbers and route checks simple.
    deploy_lock: tokio::sync::Mutex<()>,
    /// What deploys may use beyond AWS's rules (set with [`ControlPlane::with_validation`]).
    pub validation: tusk_manifest::ValidateOptions,
}

/// Runs store and file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f).await?
}

/// `DATA_DIR/run`, unless that is too long for a Unix socket path (108 bytes with the
/// 37-byte socket name), then a private directory under the system's temp dir named after the
/// data dir. Instances never see either: php-cgi gets its socket as a file descriptor.
pub fn socket_dir(data_dir: &Path) -> PathBuf {
    let preferred = data_dir.join("run");
    if preferred.as_os_str().len() + 38 < 100 {
        return preferred;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    std::env::temp_dir().join(format!("tusk-run-{:016x}", h.finish()))
}

impl ControlPlane {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Arc<dyn Registry>,
        log_store: Arc<dyn LogStore>,
        data_dir: PathBuf,
        php: Option<PhpInstall>,
        php_runtime_dir: PathBuf,
        limits: PoolLimits,
        logs: Arc<dyn LogSink>,
        dispatcher: Arc<Dispatcher>,
        events: Arc<tusk_events::EventEngine>,
        base_url: String,
    ) -> ControlPlane {
        ControlPlane {
            registry,
            log_store,
            dispatcher,
            events,
            socket_dir: socket_dir(&data_dir),
            base_url,
            routes: RwLock::new(Arc::new(RouteTable::default())),
            services: RwLock::new(Vec::new()),
            data_dir,
            php,
            php_runtime_dir,
            limits,
            logs,
            sandbox: Arc::new(tusk_sandbox::Sandbox::off()),
            package_limits: crate::package::Limits::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
            validation: tusk_manifest::ValidateOptions::default(),
        }
    }

    /// Deploys are checked with `options` (e.g. second schedules on a test node).
    pub fn with_validation(mut self, options: tusk_manifest::ValidateOptions) -> ControlPlane {
        self.validation = options;
        self
    }

    /// Runs every instance in `sandbox` (the node's, from `tusk_sandbox::Sandbox::init`).
    pub fn with_sandbox(mut self, sandbox: Arc<tusk_sandbox::Sandbox>) -> ControlPlane {
        self.sandbox = sandbox;
        self
    }

    /// Limits packages to `limits` when unpacked (`--max-package-mb`).
    pub fn with_package_limits(mut self, limits: crate::package::Limits) -> ControlPlane {
        self.package_limits = limits;
        self
    }

    pub fn package_path(&self, sha: &str) -> PathBuf {
        self.data_dir.join("packages").join(format!("{sha}.zip"))
    }

    fn code_dir(&self, sha: &str) -> PathBuf {
        self.data_dir.join("code").join(sha)
    }

    pub fn route_table(&self) -> Arc<RouteTable> {
        self.routes.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn service_records(&self) -> Vec<ServiceRecord> {
        self.services.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// `f(service, function, full name)` for every deployed function.
    pub fn map_functions<T>(&self, f: impl Fn(&ServiceRecord, &FunctionSpec, &str) -> T) -> Vec<T> {
        self.service_records()
            .iter()
            .flat_map(|s| {
                s.functions()
                    .map(|(full, spec)| f(s, spec, &full))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Finds a function by full name, ARN (with an optional qualifier), or unique short name.
    pub fn resolve(&self, name: &str) -> Option<(ServiceRecord, FunctionSpec, String)> {
        let name = tusk_manifest::arn::function_name_or_self(name);
        let name = name.split(':').next().unwrap_or(name);
        let services = self.service_records();
        let mut short_matches = Vec::new();
        for s in &services {
            for (full, f) in s.functions() {
                if full == name {
                    return Some((s.clone(), f.clone(), full));
                }
                if f.name == name {
                    short_matches.push((s.clone(), f.clone(), full));
                }
            }
        }
        if short_matches.len() == 1 {
            short_matches.pop()
        } else {
            None
        }
    }

    /// Brings every stored service up (after a restart).
    pub async fn restore(&self) -> Result<(), ControlError> {
        let registry = self.registry.clone();
        let records = blocking(move || Ok(registry.services()?)).await?;
        for record in records {
            if let Err(e) = self.ensure_code(&record.package).await {
                tracing::error!(service = %record.spec.service, error = %e, "cannot restore service");
                continue;
            }
            self.activate(record, false).await;
        }
        Ok(())
    }

    /// Unpacks a package once into `code/<sha>` (atomically: unpack aside, then rename).
    async fn ensure_code(&self, sha: &str) -> Result<PathBuf, ControlError> {
        let dir = self.code_dir(sha);
        if tokio::fs::metadata(&dir).await.is_err() {
            let zip_path = self.package_path(sha);
            let target = dir.clone();
            let limits = self.package_limits;
            blocking(move || crate::package::unpack(&zip_path, &target, &limits)).await?;
        }
        // Sandboxed instances run as an unprivileged uid: the package root must be
        // world-readable, as on Lambda (packages unpacked by older nodes may not be).
        if let Ok(meta) = tokio::fs::metadata(&dir).await {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o055 != 0o055 {
                let readable = std::fs::Permissions::from_mode(mode | 0o755);
                tokio::fs::set_permissions(&dir, readable)
                    .await
                    .map_err(ControlError::io(dir.display().to_string()))?;
            }
        }
        Ok(dir)
    }

    /// Fills in values only the node knows: `${construct:X.queueUrl}` arrives as
    /// `tusk:queue-url:NAME`.
    fn expand_markers(&self, value: &str) -> String {
        match value.strip_prefix("tusk:queue-url:") {
            Some(queue) => tusk_manifest::arn::queue_url(&self.base_url, queue),
            None => value.to_string(),
        }
    }

    fn launch_spec(&self, record: &ServiceRecord, f: &FunctionSpec, code_dir: &Path) -> LaunchSpec {
        let name = record.spec.function_name(f);
        let (cli, cgi) = match &self.php {
            Some(p) => (p.cli.clone(), p.cgi.clone()),
            None => (PathBuf::from("php"), PathBuf::from("php-cgi")),
        };
        let volumes: Vec<tusk_sandbox::Volume> = f
            .volumes
            .iter()
            .map(|v| tusk_sandbox::Volume {
                name: v.name.clone(),
                host_dir: self.data_dir.join("volumes").join(&v.name),
                mount_path: v.mount_path.clone(),
            })
            .collect();
        let mut environment: BTreeMap<String, String> = f
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), self.expand_markers(v)))
            .collect();
        let mounted = self.sandbox.level() != tusk_sandbox::Level::Off;
        for v in &volumes {
            // Where the instance finds the volume, e.g. TUSK_VOLUME_UPLOADS=/mnt/uploads (the
            // node's own directory when instances are not sandboxed and see the host's paths).
            let key = format!(
                "TUSK_VOLUME_{}",
                v.name.to_ascii_uppercase().replace(['-', '.'], "_")
            );
            let path = if mounted {
                v.mount_path.clone()
            } else {
                v.host_dir.display().to_string()
            };
            environment.entry(key).or_insert(path);
        }
        LaunchSpec {
            volumes,
            function_arn: tusk_manifest::arn::function_arn(&record.spec.region, &name),
            function_name: name,
            version: "$LATEST".to_string(),
            kind: f.kind,
            handler: f.handler.clone(),
            code_dir: code_dir.to_path_buf(),
            memory_mb: f.memory_size,
            timeout: Duration::from_secs(u64::from(f.timeout)),
            environment,
            region: record.spec.region.clone(),
            php_runtime_dir: self.php_runtime_dir.clone(),
            run_dir: self.socket_dir.clone(),
            php_cli: cli,
            php_cgi: cgi,
            // Bref's BREF_LOOP_MAX: the runtime exits after that many invocations; the pool
            // knows too, so it replaces the instance instead of handing it one more event.
            max_invocations: f
                .environment
                .get("BREF_LOOP_MAX")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            ephemeral_mb: f.ephemeral_storage_size,
            network: match f.network {
                tusk_manifest::Network::Default => tusk_sandbox::Network::Host,
                tusk_manifest::Network::None => tusk_sandbox::Network::None,
            },
            sandbox: self.sandbox.clone(),
        }
    }

    /// Creates the service's declared queues (and their dead-letter queues).
    async fn create_queues(&self, spec: &ServiceSpec) -> Result<(), ControlError> {
        for q in &spec.queues {
            let dlq = (q.max_receive_count > 0).then(|| format!("{}-dlq", q.name));
            if let Some(dlq) = &dlq {
                self.events
                    .queues()
                    .create_queue(tusk_events::queue_db::QueueConfig {
                        name: dlq.clone(),
                        visibility_timeout_s: q.visibility_timeout,
                        max_receive_count: 0,
                        dead_letter: None,
                        internal: false,
                    })
                    .await?;
            }
            self.events
                .queues()
                .create_queue(tusk_events::queue_db::QueueConfig {
                    name: q.name.clone(),
                    visibility_timeout_s: q.visibility_timeout,
                    max_receive_count: q.max_receive_count,
                    dead_letter: dlq,
                    internal: false,
                })
                .await?;
        }
        Ok(())
    }

    /// The events configuration of every function of `spec`; fails on a dangling reference.
    async fn event_configs(
        &self,
        spec: &ServiceSpec,
    ) -> Result<Vec<tusk_events::FunctionEventConfig>, ControlError> {
        let queues: Vec<String> = self
            .events
            .queues()
            .queues()
            .await?
            .into_iter()
            .filter(|q| !q.internal)
            .map(|q| q.name)
            .collect();
        let declared: Vec<&str> = spec.queues.iter().map(|q| q.name.as_str()).collect();
        let known_queue = |q: &str| queues.iter().any(|n| n == q) || declared.contains(&q);
        let known_function = |f: &str| self.resolve(f).is_some();
        spec.functions
            .iter()
            .map(|f| crate::event_config::build(spec, f, &known_function, &known_queue))
            .collect()
    }

    /// Starts pools for `record` and switches routes and pools over in one step.
    async fn activate(&self, record: ServiceRecord, wait_provisioned: bool) {
        let code_dir = self.code_dir(&record.package);
        let mut pools = Vec::new();
        let mut new_routes: Vec<Route> = Vec::new();
        for (name, f) in record.functions() {
            let spec = Arc::new(self.launch_spec(&record, f, &code_dir));
            let pool = Arc::new(FunctionPool::new(
                spec,
                f.reserved_concurrency,
                f.provisioned_concurrency,
                self.limits.clone(),
                self.logs.clone(),
                self.dispatcher.metrics_for(&name),
            ));
            // This node's share of the function's reservedConcurrency, before the pool
            // starts provisioned instances or takes a request.
            self.dispatcher.fit(&pool);
            new_routes.extend(routes_for(&name, &f.events));
            pools.push(pool);
        }
        if wait_provisioned {
            for pool in &pools {
                pool.ensure_provisioned().await;
            }
        }
        let old_names: Vec<String> = self
            .service_records()
            .iter()
            .filter(|s| s.spec.service == record.spec.service && s.spec.stage == record.spec.stage)
            .flat_map(|s| s.functions().map(|(n, _)| n).collect::<Vec<_>>())
            .collect();
        // Hold the route lock across the pool swap so no request sees new routes with old
        // pools.
        if let Ok(mut routes) = self.routes.write() {
            let mut all: Vec<Route> = routes
                .routes()
                .iter()
                .filter(|r| !old_names.contains(&r.function))
                .cloned()
                .collect();
            all.extend(new_routes);
            self.dispatcher.swap(&old_names, pools);
            *routes = Arc::new(RouteTable::new(all));
            if let Ok(mut services) = self.services.write() {
                services.retain(|s| {
                    !(s.spec.service == record.spec.service && s.spec.stage == record.spec.stage)
                });
                services.push(record.clone());
            }
        }
        if let Err(e) = self.create_queues(&record.spec).await {
            tracing::error!(service = %record.spec.service, error = %e, "cannot create the service's queues");
        }
        let new_names: Vec<String> = record.functions().map(|(n, _)| n).collect();
        for gone in old_names.iter().filter(|n| !new_names.contains(n)) {
            self.events.unconfigure(gone);
        }
        match self.event_configs(&record.spec).await {
            Ok(configs) => {
                for config in configs {
                    if let Err(e) = self.events.configure(config).await {
                        tracing::error!(service = %record.spec.service, error = %e, "cannot configure events");
                    }
                }
            }
            Err(e) => {
                tracing::error!(service = %record.spec.service, error = %e, "events of this service are not running")
            }
        }
    }

    /// Validates, records and activates a deployment; returns once the new version serves.
    pub async fn deploy(
        &self,
        spec: ServiceSpec,
        package: &str,
    ) -> Result<(ServiceRecord, Vec<String>), ControlError> {
        if !is_sha256(package) {
            return Err(ControlError::BadRequest(
                "`package` must be the sha256 of an uploaded package".into(),
            ));
        }
        if tokio::fs::metadata(self.package_path(package))
            .await
            .is_err()
        {
            return Err(ControlError::BadRequest(format!(
                "package {package} was not uploaded; PUT it to /_tusk/packages/{package} first"
            )));
        }
        let checked = validate_names(&spec, &self.validation)?;
        let _guard = self.deploy_lock.lock().await;
        let code_dir = self.ensure_code(package).await?;
        let mut warnings = checked;
        self.check_functions(&spec, &code_dir, &mut warnings)
            .await?;

        let replacing: Vec<String> = spec
            .functions
            .iter()
            .map(|f| spec.function_name(f))
            .collect();
        let candidate_routes: Vec<Route> = spec
            .functions
            .iter()
            .flat_map(|f| routes_for(&spec.function_name(f), &f.events))
            .collect();
        for (i, a) in candidate_routes.iter().enumerate() {
            if let Some(b) = candidate_routes[i + 1..]
                .iter()
                .find(|b| b.display() == a.display())
            {
                return Err(ControlError::Conflict(format!(
                    "route `{}` is claimed by both {} and {}; give each route to one function",
                    a.display(),
                    a.function,
                    b.function
                )));
            }
        }
        let others: Vec<String> = self
            .service_records()
            .iter()
            .filter(|s| s.spec.service == spec.service && s.spec.stage == spec.stage)
            .flat_map(|s| s.functions().map(|(n, _)| n).collect::<Vec<_>>())
            .chain(replacing)
            .collect();
        if let Some((new, old)) = self.route_table().conflict(&candidate_routes, &others) {
            return Err(ControlError::Conflict(format!(
                "route `{}` of {} is already served by {} (route `{}`); remove that service or change one of the routes",
                new.display(),
                new.function,
                old.function,
                old.display()
            )));
        }
        self.event_configs(&spec).await?;
        let registry = self.registry.clone();
        let pkg = package.to_string();
        let spec_for_store = spec.clone();
        let record = blocking(move || {
            Ok(registry.put_service(&spec_for_store, &pkg, crate::logs::now_ms())?)
        })
        .await?;
        self.activate(record.clone(), true).await;
        tracing::info!(service = %spec.service, stage = %spec.stage, version = record.version, "deployed");
        Ok((record, warnings))
    }

    async fn check_functions(
        &self,
        spec: &ServiceSpec,
        code_dir: &Path,
        warnings: &mut Vec<String>,
    ) -> Result<(), ControlError> {
        for f in &spec.functions {
            if let Some(v) = f.volumes.iter().find(|v| !v.is_valid()) {
                return Err(ControlError::BadRequest(format!(
                    "function {}: volume `{}` at `{}` is invalid (a plain name, mounted under /mnt/)",
                    f.name, v.name, v.mount_path
                )));
            }
            let php = f.kind != RuntimeKind::Provided;
            if php {
                let Some(install) = &self.php else {
                    return Err(ControlError::BadRequest(format!(
                        "function {} needs PHP, but this node found no PHP 8 (php and php-cgi); install php8.2-cli and php8.2-cgi and restart the node",
                        f.name
                    )));
                };
                if let Some(v) = &f.php_version {
                    if v != &install.version {
                        warnings.push(format!(
                            "function {} asks for PHP {v} ({}); this node runs it on the installed PHP {}",
                            f.name, f.runtime, install.version
                        ));
                    }
                }
            }
            match f.kind {
                RuntimeKind::Provided => {
                    let bootstrap = code_dir.join("bootstrap");
                    match tokio::fs::metadata(&bootstrap).await {
                        Ok(m) => {
                            use std::os::unix::fs::PermissionsExt;
                            if m.permissions().mode() & 0o111 == 0 {
                                return Err(ControlError::BadRequest(format!(
                                    "function {}: `bootstrap` is not executable; run `chmod +x bootstrap` and deploy again",
                                    f.name
                                )));
                            }
                        }
                        Err(_) => {
                            return Err(ControlError::BadRequest(format!(
                                "function {} uses runtime {} but the package has no `bootstrap` file at its root; add one (it runs the Runtime API loop)",
                                f.name, f.runtime
                            )))
                        }
                    }
                }
                _ => {
                    check_handler_path(f)?;
                    // A class-name handler (App\Handler) resolves through Composer's autoloader.
                    let is_file = f.handler.ends_with(".php") || f.kind == RuntimeKind::PhpFpm;
                    if is_file
                        && tokio::fs::metadata(code_dir.join(&f.handler))
                            .await
                            .is_err()
                    {
                        return Err(ControlError::BadRequest(format!(
                            "function {}: handler `{}` is not in the package; check the path (relative to serverless.yml) and package.patterns",
                            f.name, f.handler
                        )));
                    }
                    if is_file {
                        check_handler_location(f, code_dir).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn remove(&self, service: &str, stage: &str) -> Result<Vec<String>, ControlError> {
        let _guard = self.deploy_lock.lock().await;
        let registry = self.registry.clone();
        let (svc, stg) = (service.to_string(), stage.to_string());
        let removed = blocking(move || Ok(registry.remove_service(&svc, &stg)?)).await?;
        let Some(record) = removed else {
            return Err(ControlError::NotFound(format!(
                "service {service} has no deployment at stage {stage}"
            )));
        };
        Ok(self.deactivate(&record))
    }

    /// Stops serving a removed service: routes, pools, events.
    fn deactivate(&self, record: &ServiceRecord) -> Vec<String> {
        let (service, stage) = (&record.spec.service, &record.spec.stage);
        let names: Vec<String> = record.functions().map(|(n, _)| n).collect();
        if let Ok(mut routes) = self.routes.write() {
            let kept: Vec<Route> = routes
                .routes()
                .iter()
                .filter(|r| !names.contains(&r.function))
                .cloned()
                .collect();
            self.dispatcher.swap(&names, Vec::new());
            *routes = Arc::new(RouteTable::new(kept));
        }
        for name in &names {
            self.events.unconfigure(name);
        }
        if let Ok(mut services) = self.services.write() {
            services.retain(|s| !(&s.spec.service == service && &s.spec.stage == stage));
        }
        names
    }

    /// The version of `service` at `stage` this node serves.
    pub fn live_version(&self, service: &str, stage: &str) -> Option<u64> {
        self.service_records()
            .iter()
            .find(|s| s.spec.service == service && s.spec.stage == stage)
            .map(|s| s.version)
    }

    /// Serves a version another node deployed (its package is already in `packages/`), unless
    /// this node serves it or a newer one already.
    pub async fn activate_replicated(&self, record: ServiceRecord) -> Result<bool, ControlError> {
        let _guard = self.deploy_lock.lock().await;
        if self.live_version(&record.spec.service, &record.spec.stage) >= Some(record.version) {
            return Ok(false);
        }
        self.ensure_code(&record.package).await?;
        let (service, stage, version) = (
            record.spec.service.clone(),
            record.spec.stage.clone(),
            record.version,
        );
        self.activate(record, true).await;
        tracing::info!(%service, %stage, version, "deployed from the cluster");
        Ok(true)
    }

    /// Stops serving a service another node removed; `forget` drops it from the node's copy
    /// of the registry.
    pub async fn remove_replicated(
        &self,
        service: &str,
        stage: &str,
        forget: impl FnOnce() -> Result<(), ControlError> + Send + 'static,
    ) -> Result<(), ControlError> {
        let _guard = self.deploy_lock.lock().await;
        let record = self
            .service_records()
            .into_iter()
            .find(|s| s.spec.service == service && s.spec.stage == stage);
        blocking(forget).await?;
        if let Some(record) = record {
            self.deactivate(&record);
            tracing::info!(%service, %stage, "removed from the cluster");
        }
        Ok(())
    }

    /// Route displays per function, for listings.
    pub fn routes_by_function(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.route_table().routes() {
            out.entry(r.function.clone()).or_default().push(r.display());
        }
        out
    }
}

fn handler_error(f: &FunctionSpec, why: &str) -> ControlError {
    ControlError::BadRequest(format!(
        "function {}: handler `{}` {why}; a handler is a path inside the package, relative to serverless.yml",
        f.name,
        f.handler.escape_debug()
    ))
}

/// A PHP handler is a relative path without `..`: the node, not only the CLI, keeps the
/// document root and the scripts PHP runs inside the package.
fn check_handler_path(f: &FunctionSpec) -> Result<(), ControlError> {
    if f.handler.contains('\0') {
        return Err(handler_error(f, "contains a NUL byte"));
    }
    let path = Path::new(&f.handler);
    if path.has_root() {
        return Err(handler_error(f, "is an absolute path"));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(handler_error(f, "contains `..`"));
    }
    Ok(())
}

/// The handler's real location (after symlinks) is inside the code directory.
async fn check_handler_location(f: &FunctionSpec, code_dir: &Path) -> Result<(), ControlError> {
    let root = tokio::fs::canonicalize(code_dir)
        .await
        .map_err(ControlError::io(code_dir.display().to_string()))?;
    let real = tokio::fs::canonicalize(code_dir.join(&f.handler))
        .await
        .map_err(|_| handler_error(f, "cannot be resolved inside the package"))?;
    if !real.starts_with(&root) {
        return Err(handler_error(
            f,
            "leads outside the package through a symlink",
        ));
    }
    Ok(())
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The node re-checks every rule the CLI checks (`tusk_manifest::validate`): a deploy can be
/// raw JSON that never met the CLI. Returns the warnings.
fn validate_names(
    spec: &ServiceSpec,
    options: &tusk_manifest::ValidateOptions,
) -> Result<Vec<String>, ControlError> {
    spec.validate(options)
        .map_err(|e| ControlError::BadRequest(e.to_string()))
}
