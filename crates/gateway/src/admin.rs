//! `/_tusk/*`: the admin API the `tusk` CLI speaks (docs/admin-api.md).

use crate::auth::{authorized_body, reject_unauthorized, Authorized, BodyError};
use crate::respond::{control_error, json_response};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path as FsPath;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tusk_control::is_sha256;
use tusk_control::ControlError;
use tusk_manifest::{FunctionSpec, ServiceSpec};
use tusk_store::ServiceRecord;

/// Reads `DATA_DIR/admin.token`, creating it (mode 0600) on first start; `TUSK_ADMIN_TOKEN`
/// wins when set.
pub async fn load_or_create_token(
    data_dir: &FsPath,
    from_env: Option<String>,
) -> std::io::Result<String> {
    if let Some(t) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_string());
    }
    let path = data_dir.join("admin.token");
    if let Ok(existing) = tokio::fs::read_to_string(&path).await {
        if !existing.trim().is_empty() {
            // An operator may have copied it in with a looser mode: only the node reads it.
            use std::os::unix::fs::PermissionsExt;
            let mode = tokio::fs::metadata(&path).await?.permissions().mode();
            if mode & 0o077 != 0 {
                tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).await?;
            }
            return Ok(existing.trim().to_string());
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let path2 = path.clone();
    let t = token.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path2)?;
        f.write_all(t.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(token)
}

/// Liveness: the node answers. In a cluster the body also says whether NATS is reachable,
/// but the status stays 200: a NATS outage is no reason to restart every node.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match &state.cluster {
        None => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Some(c) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "cluster": cluster_state(c.connected())}),
        ),
    }
}

/// Readiness: 503 while a cluster node has lost NATS (deploys, async events and logs need
/// it), so a load balancer sends traffic to nodes that have it.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "stopping"}),
        );
    }
    match &state.cluster {
        Some(c) if !c.connected() => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not ready", "cluster": "disconnected"}),
        ),
        Some(_) => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "cluster": "connected"}),
        ),
        None => json_response(StatusCode::OK, &json!({"status": "ready"})),
    }
}

fn cluster_state(connected: bool) -> &'static str {
    if connected {
        "connected"
    } else {
        "disconnected"
    }
}

/// Prometheus text. Needs the admin token unless the node runs with `--public-metrics`:
/// instances share the host network, and function names, traffic and queue depths are not
/// theirs to read.
pub async fn metrics(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if !state.public_metrics {
        let (parts, _) = req.into_parts();
        if let Some(r) = reject_unauthorized(&state, &parts, b"") {
            return r;
        }
    }
    let mut body = crate::metrics::render(&state.control.dispatcher, state.logs.dropped());
    let stats = state
        .control
        .events
        .queues()
        .stats()
        .await
        .unwrap_or_default();
    body.push_str(&crate::metrics::render_events(
        &stats,
        &state.control.events.counters,
    ));
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

pub async fn has_package(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    _auth: Authorized,
) -> Response {
    let exists = is_sha256(&sha)
        && tokio::fs::metadata(state.control.package_path(&sha))
            .await
            .is_ok();
    if exists {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Streams the upload to disk while hashing it; keeps it only if the hash matches its name.
pub async fn upload_package(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(r) = reject_unauthorized(&state, &parts, b"") {
        return r;
    }
    if !is_sha256(&sha) {
        return control_error(ControlError::BadRequest(
            "the package name must be its lower-case sha256".into(),
        ));
    }
    match store_upload(&state, &sha, body).await {
        Ok(size) => json_response(StatusCode::CREATED, &json!({"sha256": sha, "size": size})),
        Err(e) => control_error(e),
    }
}

async fn store_upload(state: &AppState, sha: &str, body: Body) -> Result<u64, ControlError> {
    let final_path = state.control.package_path(sha);
    let internal =
        |e: std::io::Error| tusk_control::package::disk_error("cannot store", &final_path, e);
    let tmp = final_path.with_extension(format!("upload-{}", uuid::Uuid::new_v4().simple()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(internal)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    // Stored entries plus their headers: the limit unpacked, plus room for 100,000 headers.
    let limits = state.control.package_limits;
    let max_upload = limits.max_unpacked_bytes.saturating_add(16 * 1024 * 1024);
    let mut stream = body.into_data_stream();
    let result: Result<(), ControlError> = async {
        loop {
            let next = tokio::time::timeout(state.body_timeout, stream.next()).await;
            let Ok(next) = next else {
                return Err(ControlError::BadRequest(format!(
                    "the upload stalled for {} s; upload it again",
                    state.body_timeout.as_secs()
                )));
            };
            let Some(chunk) = next else { break };
            let chunk =
                chunk.map_err(|e| ControlError::BadRequest(format!("upload interrupted: {e}")))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if size > max_upload {
                return Err(ControlError::BadRequest(format!(
                    "package upload is over {}; the limit is {} unpacked (a zip is never much larger than its contents), set with --max-package-mb",
                    tusk_control::package::human_size(max_upload),
                    tusk_control::package::human_size(limits.max_unpacked_bytes)
                )));
            }
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let actual = hex::encode(hasher.finalize());
    if actual != sha {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ControlError::BadRequest(format!(
            "the uploaded package hashes to {actual}, not {sha}; upload it again"
        )));
    }
    tokio::fs::rename(&tmp, &final_path)
        .await
        .map_err(internal)?;
    Ok(size)
}

#[derive(Deserialize)]
struct DeployRequest {
    spec: ServiceSpec,
    package: String,
}

pub async fn deploy(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match authorized_body(&state, &parts, body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(BodyError::Rejected(r)) => return r,
        Err(BodyError::TooLarge) => {
            return control_error(ControlError::BadRequest(
                "deployment request too large".into(),
            ))
        }
    };
    let request: DeployRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return control_error(ControlError::BadRequest(format!(
                "invalid deployment request: {e}; is your tusk CLI the same version as the node?"
            )))
        }
    };
    match state.control.deploy(request.spec, &request.package).await {
        Ok((record, mut warnings)) => {
            // In a cluster, answer once every other node serves the new version too (or say
            // which do not), so a finished deploy leaves no node on the old one.
            let first = record.functions().next().map(|(full, _)| full);
            if let (Some(peers), Some(function)) = (&state.peers, first) {
                let lagging = crate::forward::wait_for_version(
                    peers.list(),
                    &function,
                    record.version,
                    &state.credentials.secret_access_key,
                    std::time::Duration::from_secs(60),
                )
                .await;
                for peer in lagging {
                    warnings.push(format!(
                        "node {peer} does not serve version {} yet; it switches when it has fetched the package",
                        record.version
                    ));
                }
            }
            let functions: Vec<Value> = record
                .functions()
                .map(|(full, f)| function_info(&state, &record, f, &full))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "service": record.spec.service,
                    "stage": record.spec.stage,
                    "version": record.version,
                    "functions": functions,
                    "warnings": warnings,
                }),
            )
        }
        Err(e) => control_error(e),
    }
}

pub fn function_info(
    state: &AppState,
    record: &ServiceRecord,
    f: &FunctionSpec,
    full: &str,
) -> Value {
    let routes = state
        .control
        .routes_by_function()
        .remove(full)
        .unwrap_or_default();
    let (idle, busy) = state
        .control
        .dispatcher
        .get(full)
        .map(|p| p.instance_counts())
        .unwrap_or((0, 0));
    json!({
        "name": full,
        "service": record.spec.service,
        "stage": record.spec.stage,
        "short_name": f.name,
        "runtime": f.runtime,
        "kind": f.kind,
        "handler": f.handler,
        "memory_size": f.memory_size,
        "timeout": f.timeout,
        "version": record.version,
        "package": record.package,
        "deployed_at_ms": record.deployed_at_ms,
        "routes": routes,
        "events": f.events,
        "environment": f.environment,
        "reserved_concurrency": f.reserved_concurrency,
        "provisioned_concurrency": f.provisioned_concurrency,
        "instances": {"idle": idle, "busy": busy},
    })
}

pub async fn list(State(state): State<Arc<AppState>>, _auth: Authorized) -> Response {
    let functions: Vec<Value> = state
        .control
        .map_functions(|s, f, full| function_info(&state, s, f, full));
    json_response(StatusCode::OK, &json!({ "functions": functions }))
}

fn not_found(name: &str) -> Response {
    control_error(ControlError::NotFound(format!(
        "function {name} not found; `tusk ls` lists deployed functions (use the full name service-stage-function when a short name is ambiguous)"
    )))
}

pub async fn info(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _auth: Authorized,
) -> Response {
    match state.control.resolve(&name) {
        Some((record, f, full)) => {
            json_response(StatusCode::OK, &function_info(&state, &record, &f, &full))
        }
        None => not_found(&name),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    since_ms: Option<i64>,
    after_id: Option<i64>,
    limit: Option<usize>,
}

pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
    _auth: Authorized,
) -> Response {
    let Some((_, _, full)) = state.control.resolve(&name) else {
        return not_found(&name);
    };
    let log_store = state.control.log_store.clone();
    let since = q.since_ms.unwrap_or(0);
    let after = q.after_id.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let result =
        tokio::task::spawn_blocking(move || log_store.logs(&full, since, after, limit)).await;
    match result {
        Ok(Ok(lines)) => {
            let last_id = lines.last().map(|l| l.id).unwrap_or(after);
            json_response(StatusCode::OK, &json!({"lines": lines, "last_id": last_id}))
        }
        Ok(Err(e)) => control_error(ControlError::from(e)),
        Err(e) => control_error(ControlError::from(e)),
    }
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    stage: Option<String>,
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(service): Path<String>,
    Query(q): Query<RemoveQuery>,
    _auth: Authorized,
) -> Response {
    let stage = q.stage.unwrap_or_else(|| "dev".into());
    match state.control.remove(&service, &stage).await {
        Ok(names) => json_response(StatusCode::OK, &json!({"removed": names})),
        Err(e) => control_error(e),
    }
}
