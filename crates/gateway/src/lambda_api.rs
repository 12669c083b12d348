//! The Lambda API subset on the node's listener: Invoke, ListFunctions, GetFunction
//! (shapes from botocore's `lambda/2015-03-31/service-2.json`).

use crate::auth::{authorized_body, Authorized, BodyError};
use crate::dispatch::{self, Peer, Ran, MAX_SYNC_PAYLOAD};
use crate::respond::{json_response, lambda_error};
use crate::state::AppState;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tusk_manifest::arn::{function_arn, role_arn, DEFAULT_REGION};
use tusk_manifest::{FunctionSpec, RuntimeKind};
use tusk_store::ServiceRecord;

fn function_not_found(state: &AppState, name: &str) -> Response {
    let arn = if name.starts_with("arn:") {
        name.to_string()
    } else {
        function_arn(DEFAULT_REGION, name)
    };
    let _ = state;
    lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        json!({"Type": "User", "Message": format!("Function not found: {arn}")}),
    )
}

pub fn throttled() -> Response {
    let mut r = lambda_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequestsException",
        json!({
            "Type": "User",
            "message": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        }),
    );
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match authorized_body(&state, &parts, body, MAX_SYNC_PAYLOAD).await {
        Ok(b) => b,
        Err(BodyError::Rejected(r)) => return r,
        Err(BodyError::TooLarge) => {
            return lambda_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                json!({"Type": "User", "message": format!("Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation")}),
            )
        }
    };
    let req = parts;
    let Some((record, f, full)) = state.control.resolve(&name) else {
        return function_not_found(&state, &name);
    };
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let invocation_type =
        header("x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".into());
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            json!({"Type": "User", "message": "Could not parse request body into json: the payload is not valid JSON"}),
        );
    }
    match invocation_type.as_str() {
        "RequestResponse" => {}
        "DryRun" => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(
                "x-amz-executed-version",
                HeaderValue::from_static("$LATEST"),
            );
            return r;
        }
        "Event" => return invoke_event(&state, &full, body).await,
        other => {
            return lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                json!({"Type": "User", "message": format!("Invalid invocation type {other}: use RequestResponse, Event or DryRun")}),
            )
        }
    }
    let Some(pool) = state.control.dispatcher.get(&full) else {
        return function_not_found(&state, &name);
    };
    if f.kind == RuntimeKind::PhpFpm {
        return invoke_web(&state, &pool, &body).await;
    }
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    let client_context = header("x-amz-client-context").and_then(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    });
    let peer = if header(crate::forward::FORWARDED_HEADER).is_some() {
        Peer::Forwarded
    } else {
        Peer::Invoke {
            function: &full,
            headers: &req.headers,
            only_success: false,
        }
    };
    let result = match dispatch::event(&state, &pool, payload, client_context, peer).await {
        Ran::Here(r) => r,
        Ran::Peer(answer) => {
            let mut r = (answer.status, answer.body).into_response();
            r.headers_mut().extend(answer.headers);
            return r;
        }
        Ran::PeerLost(e) => return peer_lost(&e),
        Ran::Throttled => return throttled(),
        Ran::Failed(e) => return service_exception(&e),
    };
    let _ = record;
    let (body, function_error) = match result.result {
        Ok(body) => (body, None),
        Err((body, _)) => (body, Some("Unhandled")),
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(kind) = function_error {
        h.insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    if header("x-amz-log-type").is_some_and(|t| t.eq_ignore_ascii_case("Tail")) {
        let tail = last_bytes(result.log_tail.as_bytes(), 4096);
        let encoded = base64::engine::general_purpose::STANDARD.encode(tail);
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert("x-amz-log-result", v);
        }
    }
    r
}

/// The node that took a forwarded call went away with it.
fn peer_lost(why: &str) -> Response {
    lambda_error(
        StatusCode::BAD_GATEWAY,
        "ServiceException",
        json!({"Type": "Service", "message": format!("the node running this call went away ({why}); it may have run: retry")}),
    )
}

fn service_exception(e: &tusk_pool::AcquireError) -> Response {
    lambda_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceException",
        json!({"Type": "Service", "message": e.to_string()}),
    )
}

fn last_bytes(b: &[u8], n: usize) -> &[u8] {
    &b[b.len().saturating_sub(n)..]
}

fn last_modified(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    t.format(&fmt).unwrap_or_default()
}

fn configuration(record: &ServiceRecord, f: &FunctionSpec, full: &str) -> Value {
    let sha_b64 = hex::decode(&record.package)
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .unwrap_or_default();
    json!({
        "FunctionName": full,
        "FunctionArn": function_arn(&record.spec.region, full),
        "Runtime": f.runtime,
        "Role": role_arn("tusk"),
        "Handler": f.handler,
        "CodeSize": 0,
        "Description": "",
        "Timeout": f.timeout,
        "MemorySize": f.memory_size,
        "LastModified": last_modified(record.deployed_at_ms),
        "CodeSha256": sha_b64,
        "Version": "$LATEST",
        "Environment": {"Variables": f.environment},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": format!("{}-{}", record.package.get(..8).unwrap_or_default(), record.version),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
        "EphemeralStorage": {"Size": f.ephemeral_storage_size},
    })
}

pub async fn list_functions(State(state): State<Arc<AppState>>, _auth: Authorized) -> Response {
    let functions: Vec<Value> = state.control.map_functions(configuration);
    json_response(StatusCode::OK, &json!({ "Functions": functions }))
}

pub async fn get_function(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _auth: Authorized,
) -> Response {
    let Some((record, f, full)) = state.control.resolve(&name) else {
        return function_not_found(&state, &name);
    };
    let mut body = json!({
        "Configuration": configuration(&record, &f, &full),
        "Code": {"RepositoryType": "Tusk", "Location": format!("http://{}/_tusk/packages/{}", state.listen, record.package)},
    });
    if let Some(r) = f.reserved_concurrency {
        body["Concurrency"] = json!({"ReservedConcurrentExecutions": r});
    }
    json_response(StatusCode::OK, &body)
}

/// Invoking a web app with an API Gateway event, as Bref's FPM runtime allows: the event becomes
/// a FastCGI request and the response comes back in API Gateway's result shape.
async fn invoke_web(
    state: &AppState,
    pool: &std::sync::Arc<tusk_pool::FunctionPool>,
    body: &[u8],
) -> Response {
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let req = match crate::apigw::event_request(&event) {
        Ok(r) => r,
        Err(message) => {
            return lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                json!({"Type": "User", "message": format!("{} is a web app: {message}", pool.name())}),
            )
        }
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let params = crate::web::fastcgi_params(
        pool.spec(),
        &crate::web::WebRequest {
            method: &req.method,
            path: &req.path,
            raw_query: &req.raw_query,
            headers: &req.headers,
            body_len: req.body.len(),
            remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            local: state.listen,
            request_id: &request_id,
        },
    );
    // Not forwarded (the Invoke API on a web app is rare): without a share here, no slot.
    let ran = dispatch::web(
        state,
        pool,
        request_id,
        params,
        req.body.clone(),
        Peer::Never,
    );
    let result = match ran.await {
        Ran::Here(r) => r,
        // `Peer::Never` offers nothing, so no peer answers here.
        Ran::Throttled | Ran::Peer(_) | Ran::PeerLost(_) => return throttled(),
        Ran::Failed(e) => return service_exception(&e),
    };
    let (status, body, function_error) = match result.outcome {
        tusk_pool::WebOutcome::Response(cgi) => (
            StatusCode::OK,
            crate::apigw::result_from_http(req.payload, cgi.status, &cgi.headers, &cgi.body),
            false,
        ),
        tusk_pool::WebOutcome::BadResponse(e) => (
            StatusCode::OK,
            json!({"errorType": "Runtime.BadResponse", "errorMessage": e.to_string()}),
            true,
        ),
        tusk_pool::WebOutcome::Timeout => (
            StatusCode::OK,
            json!({"errorType": "Sandbox.Timedout", "errorMessage": format!("RequestId: {} Error: Task timed out after {:.2} seconds", result.request_id, pool.spec().timeout.as_secs_f64())}),
            true,
        ),
        tusk_pool::WebOutcome::Crashed(why) => (
            StatusCode::OK,
            json!({"errorType": "Runtime.ExitError", "errorMessage": format!("RequestId: {} Error: Runtime exited with error: {why}", result.request_id)}),
            true,
        ),
    };
    let mut r = json_response(status, &body);
    let h = r.headers_mut();
    h.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    r
}

/// `X-Amz-Invocation-Type: Event`: 202 once the event is durably stored.
async fn invoke_event(state: &AppState, function: &str, body: Bytes) -> Response {
    if body.len() > tusk_events::MAX_ASYNC_PAYLOAD {
        return lambda_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            json!({"Type": "User", "message": format!("Request must be smaller than {} bytes for the InvokeAsync operation", tusk_events::MAX_ASYNC_PAYLOAD)}),
        );
    }
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    match state.control.events.invoke_async(function, payload).await {
        Ok(request_id) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Err(e) => lambda_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            json!({"Type": "Service", "message": format!("the event could not be stored: {e}")}),
        ),
    }
}
