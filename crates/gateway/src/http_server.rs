//! Routing: the axum router between `/_tusk/*`, the Lambda and SQS APIs and user routes, and the
//! user routes themselves (API Gateway functions and `php-8x-fpm` web apps). Authentication lives
//! in `auth`, response shapes in `respond`.

use crate::apigw::{self, HttpRequest, HttpResponse};
use crate::auth::{authorized_body, read_body, BodyError};
use crate::dispatch::{self, Peer, Ran};
use crate::respond::{admin_error, json_response};
use crate::state::AppState;
use crate::{admin, forward, lambda_api, web};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tusk_control::routes::Payload;
use tusk_manifest::RuntimeKind;
use tusk_pool::WebOutcome;

/// Web apps may take uploads bigger than Lambda's 6 MB event limit.
const MAX_WEB_BODY: usize = 64 * 1024 * 1024;

const SMALL_BODY: usize = 64 * 1024;
const USER_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: crate::listener::ConnLimits,
) -> std::io::Result<()> {
    let draining = state.clone();
    let app = Router::new()
        .route("/_tusk/health", get(admin::health))
        .route("/_tusk/health/ready", get(admin::ready))
        .route("/_tusk/metrics", get(admin::metrics))
        .route(
            "/_tusk/packages/{sha}",
            put(admin::upload_package).head(admin::has_package),
        )
        .route("/_tusk/deployments", post(admin::deploy))
        .route("/_tusk/functions", get(admin::list))
        .route("/_tusk/functions/{name}", get(admin::info))
        .route("/_tusk/functions/{name}/logs", get(admin::logs))
        .route(
            "/_tusk/services/{service}",
            axum::routing::delete(admin::remove),
        )
        .route("/_tusk/events", get(crate::events_api::overview))
        .route(
            "/_tusk/queues",
            get(crate::events_api::list).post(crate::events_api::create),
        )
        .route(
            "/_tusk/queues/{name}",
            axum::routing::delete(crate::events_api::delete),
        )
        .route(
            "/_tusk/queues/{name}/messages",
            post(crate::events_api::send).delete(crate::events_api::purge),
        )
        .route("/2015-03-31/functions", get(lambda_api::list_functions))
        .route("/2015-03-31/functions/", get(lambda_api::list_functions))
        .route(
            "/2015-03-31/functions/{name}",
            get(lambda_api::get_function),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(lambda_api::invoke),
        )
        .fallback(user_route)
        .with_state(state);
    crate::listener::serve(listener, app, limits, async move {
        shutdown_signal().await;
        draining.begin_drain().await;
    })
    .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    tracing::info!("shutting down");
}

fn to_response(r: HttpResponse) -> Response {
    let mut resp = (r.status, r.body).into_response();
    let headers = resp.headers_mut();
    // The app's own Content-Type replaces the default for a byte body.
    headers.remove(http::header::CONTENT_TYPE);
    for (name, value) in r.headers {
        headers.append(name, value);
    }
    resp
}

/// A function's result as API Gateway would answer it; a result that is no valid HTTP
/// response is a 502 and a log line saying why.
fn result_response(function: &str, payload: Payload, result: &[u8]) -> Response {
    match apigw::response_from_result(payload, result) {
        Ok(r) => to_response(r),
        Err(why) => {
            tracing::warn!(%function, error = %why, "bad API Gateway result: answered 502");
            gateway_message(StatusCode::BAD_GATEWAY, "Internal server error")
        }
    }
}

fn gateway_message(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "message": message }))
}

/// Reserves room for a user route's request body in [`USER_BODY_BUDGET`]. Small bodies
/// skip it (the connection cap bounds them); a big one waits a little for room, then 503.
async fn user_body_budget(
    state: &AppState,
    declared: Option<usize>,
    limit: usize,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Response> {
    let want = declared.unwrap_or(limit).min(limit);
    if want <= SMALL_BODY {
        return Ok(None);
    }
    let wait = tokio::time::timeout(
        USER_BODY_WAIT,
        state.user_bodies.clone().acquire_many_owned(want as u32),
    )
    .await;
    match wait {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => {
            tracing::warn!(
                bytes = want,
                "too many large request bodies at once: answered 503"
            );
            let mut r = gateway_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many large uploads at once; retry shortly",
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
            Err(r)
        }
    }
}

/// Everything that is not Tusk's own API: the deployed `httpApi` / `http` routes.
async fn user_route(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    if req.method() == http::Method::POST && crate::sqs_api::is_sqs(req.headers()) {
        let (parts, body) = req.into_parts();
        return match authorized_body(&state, &parts, body, 2 * 1024 * 1024).await {
            Ok(body) => crate::sqs_api::handle(&state, &parts, body).await,
            Err(BodyError::Rejected(r)) => r,
            Err(BodyError::TooLarge) => {
                gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
            }
        };
    }
    if path.starts_with("/_tusk/") || path.starts_with("/2015-03-31/") {
        return admin_error(StatusCode::NOT_FOUND, &format!("no Tusk API at {path}"));
    }
    let method = req.method().as_str().to_string();
    let table = state.control.route_table();
    let Some(matched) = table.find(&method, &path) else {
        return gateway_message(StatusCode::NOT_FOUND, "Not Found");
    };
    let route = matched.route.clone();
    let params = matched.params;
    let Some(pool) = state.control.dispatcher.get(&route.function) else {
        return gateway_message(StatusCode::NOT_FOUND, "Not Found");
    };
    let spec = pool.spec().clone();
    let (mut parts, body) = req.into_parts();
    // A web request another node forwarded (its headers never reach PHP, forwarded or not).
    let forwarded =
        forward::take_web_forwarding(&mut parts.headers, &state.credentials.secret_access_key);
    let remote = match forwarded {
        Some(Some(client)) => client,
        _ => remote,
    };
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let limit = if spec.kind == RuntimeKind::PhpFpm {
        MAX_WEB_BODY
    } else {
        dispatch::MAX_SYNC_PAYLOAD
    };
    // Exact for a Content-Length body (0 for none), unknown for a chunked one.
    let declared = http_body::Body::size_hint(&body)
        .exact()
        .map(|n| n as usize);
    if declared.is_some_and(|n| n > limit) {
        return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    // Held until the response is sent: the body lives that long.
    let _budget = match user_body_budget(&state, declared, limit).await {
        Ok(permit) => permit,
        Err(r) => return r,
    };
    let body: Bytes = match read_body(&state, body, limit, false).await {
        Ok(b) => b,
        Err(BodyError::Rejected(r)) => return r,
        Err(BodyError::TooLarge) => {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
    };

    if spec.kind == RuntimeKind::PhpFpm {
        if matches!(method.as_str(), "GET" | "HEAD") {
            if let Some(file) = web::static_file(&spec, &path).await {
                return to_response(web::serve_static(&file, &method, &parts.headers).await);
            }
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let params = web::fastcgi_params(
            &spec,
            &web::WebRequest {
                method: &method,
                path: &path,
                raw_query: &raw_query,
                headers: &parts.headers,
                body_len: body.len(),
                remote,
                local: state.listen,
                request_id: &request_id,
            },
        );
        let peer = if forwarded.is_some() {
            Peer::Forwarded
        } else {
            Peer::Web {
                method: &parts.method,
                target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                headers: &parts.headers,
                body: &body,
                client: remote,
            }
        };
        let ran = dispatch::web(&state, &pool, request_id, params, body.clone(), peer).await;
        return match ran {
            Ran::Here(result) => match result.outcome {
                WebOutcome::Response(cgi) => to_response(web::cgi_response(cgi, method == "HEAD")),
                WebOutcome::BadResponse(e) => {
                    tracing::warn!(function = %route.function, error = %e, "bad CGI response: answered 502");
                    gateway_message(StatusCode::BAD_GATEWAY, "Bad Gateway")
                }
                WebOutcome::Timeout => {
                    gateway_message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
                }
                WebOutcome::Crashed(why) => {
                    tracing::warn!(function = %route.function, error = %why, "the PHP worker failed: answered 502");
                    gateway_message(StatusCode::BAD_GATEWAY, "Bad Gateway")
                }
            },
            Ran::Peer(answer) => {
                let mut r = (answer.status, answer.body).into_response();
                r.headers_mut().remove(http::header::CONTENT_TYPE);
                for (name, value) in &answer.headers {
                    r.headers_mut().append(name, value.clone());
                }
                r
            }
            Ran::PeerLost(_) => gateway_message(StatusCode::BAD_GATEWAY, "Bad Gateway"),
            Ran::Throttled => gateway_message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            Ran::Failed(e) => gateway_message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    }

    let request_id = uuid::Uuid::new_v4().to_string();
    let stage = state
        .control
        .resolve(&route.function)
        .map(|(r, _, _)| r.spec.stage)
        .unwrap_or_else(|| "dev".into());
    let event = apigw::request_event(
        &HttpRequest {
            method: &method,
            path: &path,
            raw_query: &raw_query,
            headers: &parts.headers,
            body: &body,
            remote,
            request_id: &request_id,
            stage: &stage,
        },
        &route,
        &params,
    );
    let payload = Bytes::from(event.to_string());
    // No free instance here: another node of the cluster may run the event; its answer
    // counts only when it ran it (200).
    let peer = Peer::Invoke {
        function: &route.function,
        headers: &http::HeaderMap::new(),
        only_success: true,
    };
    match dispatch::event(&state, &pool, payload, None, peer).await {
        Ran::Here(result) => match result.result {
            Ok(out) => result_response(&route.function, route.payload, &out),
            Err(_) => function_error_response(route.payload),
        },
        Ran::Peer(answer) => {
            let served_by = answer.headers.get("x-tusk-served-by").cloned();
            let mut r = if answer.headers.contains_key("x-amz-function-error") {
                function_error_response(route.payload)
            } else {
                result_response(&route.function, route.payload, &answer.body)
            };
            if let Some(by) = served_by {
                r.headers_mut().insert("x-tusk-served-by", by);
            }
            r
        }
        Ran::PeerLost(_) => gateway_message(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        Ran::Throttled => gateway_message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        Ran::Failed(e) => gateway_message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// What API Gateway answers when the function failed (an error result, not an HTTP response).
fn function_error_response(payload: Payload) -> Response {
    match payload {
        Payload::V2 => gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Payload::V1 => gateway_message(StatusCode::BAD_GATEWAY, "Internal server error"),
    }
}
