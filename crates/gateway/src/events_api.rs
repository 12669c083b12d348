//! `/_tusk/events` and `/_tusk/queues`: what `tusk events` and `tusk queue` show and do.

use crate::auth::{authorized_body, Authorized, BodyError};
use crate::respond::{admin_error, json_response};
use crate::state::AppState;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tusk_events::queue_db::{NewMessage, QueueConfig, QueueError};
use tusk_manifest::arn::queue_url;

fn queue_error(e: QueueError) -> Response {
    match e {
        QueueError::NoSuchQueue(q) => admin_error(
            StatusCode::NOT_FOUND,
            &format!("queue {q} does not exist; `tusk queue ls` lists queues"),
        ),
        QueueError::Invalid(m) => admin_error(StatusCode::BAD_REQUEST, &m),
        other => admin_error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

pub fn counters_json(state: &AppState) -> serde_json::Value {
    let c = &state.control.events.counters;
    let v = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "async_accepted": v(&c.async_accepted),
        "async_succeeded": v(&c.async_succeeded),
        "async_retried": v(&c.async_retried),
        "async_throttled": v(&c.async_throttled),
        "dead_lettered": v(&c.dead_lettered),
        "dropped_too_old": v(&c.dropped_too_old),
        "schedule_fired": v(&c.schedule_fired),
        "schedule_missed": v(&c.schedule_missed),
        "sqs_batches": v(&c.sqs_batches),
    })
}

pub async fn overview(State(state): State<Arc<AppState>>, _auth: Authorized) -> Response {
    match state.control.events.queues().stats().await {
        Ok(mut stats) => {
            // In a cluster, async events wait in JetStream, not in this node's database.
            if let Some(transport) = state.control.events.transport() {
                for s in stats.iter_mut().filter(|s| s.internal) {
                    let Some(function) = s.name.strip_prefix("async:") else {
                        continue;
                    };
                    match transport.depth(function).await {
                        Ok((waiting, running)) => {
                            s.visible = waiting;
                            s.in_flight = running;
                        }
                        Err(e) => tracing::warn!(function, error = %e, "cannot read async depth"),
                    }
                }
            }
            json_response(
                StatusCode::OK,
                &json!({"queues": stats, "counters": counters_json(&state)}),
            )
        }
        Err(e) => queue_error(e),
    }
}

pub async fn list(State(state): State<Arc<AppState>>, _auth: Authorized) -> Response {
    let queues = state.control.events.queues();
    let (configs, stats) = match (queues.queues().await, queues.stats().await) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => return queue_error(e),
    };
    let queues: Vec<serde_json::Value> = configs
        .into_iter()
        .filter(|q| !q.internal)
        .map(|q| {
            let s = stats
                .iter()
                .find(|s| s.name == q.name)
                .cloned()
                .unwrap_or_default();
            json!({
                "name": q.name,
                "url": queue_url(&state.control.base_url, &q.name),
                "visibility_timeout": q.visibility_timeout_s,
                "max_receive_count": q.max_receive_count,
                "dead_letter": q.dead_letter,
                "visible": s.visible,
                "in_flight": s.in_flight,
                "delayed": s.delayed,
                "oldest_age_ms": s.oldest_age_ms,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "queues": queues }))
}

#[derive(Deserialize)]
pub struct CreateQueue {
    name: String,
    visibility_timeout: Option<u32>,
    max_receive_count: Option<u32>,
    dead_letter: Option<String>,
}

pub async fn create(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match authorized_body(&state, &parts, body, 64 * 1024).await {
        Ok(b) => b,
        Err(BodyError::Rejected(r)) => return r,
        Err(BodyError::TooLarge) => {
            return admin_error(StatusCode::BAD_REQUEST, "request too large")
        }
    };
    let request: CreateQueue = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &format!("invalid request: {e}")),
    };
    if !tusk_manifest::valid_queue_name(&request.name) {
        return admin_error(StatusCode::BAD_REQUEST, tusk_manifest::QUEUE_NAME_RULE);
    }
    let queues = state.control.events.queues();
    if let Some(dlq) = &request.dead_letter {
        match queues.queue(dlq).await {
            Ok(Some(q)) if !q.internal => {}
            Ok(_) => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("dead-letter queue {dlq} does not exist; create it first"),
                )
            }
            Err(e) => return queue_error(e),
        }
    }
    let config = QueueConfig {
        name: request.name.clone(),
        visibility_timeout_s: request.visibility_timeout.unwrap_or(30).clamp(0, 43_200),
        max_receive_count: request.max_receive_count.unwrap_or(0),
        dead_letter: request.dead_letter,
        internal: false,
    };
    match queues.create_queue(config).await {
        Ok(_) => json_response(
            StatusCode::CREATED,
            &json!({"name": request.name, "url": queue_url(&state.control.base_url, &request.name)}),
        ),
        Err(e) => queue_error(e),
    }
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _auth: Authorized,
) -> Response {
    let queues = state.control.events.queues();
    // Internal queues (`async:FUNCTION`) are not the user's to delete.
    if tusk_events::queue_db::is_internal(&name) {
        return queue_error(QueueError::NoSuchQueue(name));
    }
    match queues.delete_queue(&name).await {
        Ok(false) => queue_error(QueueError::NoSuchQueue(name)),
        Ok(_) => json_response(StatusCode::OK, &json!({"deleted": name})),
        Err(e) => queue_error(e),
    }
}

#[derive(Deserialize)]
pub struct SendMessage {
    body: String,
    delay_seconds: Option<u64>,
}

pub async fn send(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match authorized_body(&state, &parts, body, 2 * tusk_events::MAX_MESSAGE).await {
        Ok(b) => b,
        Err(BodyError::Rejected(r)) => return r,
        Err(BodyError::TooLarge) => {
            return admin_error(StatusCode::PAYLOAD_TOO_LARGE, "message over 256 KB")
        }
    };
    let request: SendMessage = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &format!("invalid request: {e}")),
    };
    if request.body.len() > tusk_events::MAX_MESSAGE {
        return admin_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the message is {} bytes; queues take at most {} bytes",
                request.body.len(),
                tusk_events::MAX_MESSAGE
            ),
        );
    }
    let queues = state.control.events.queues();
    match queues.queue(&name).await {
        Ok(Some(q)) if !q.internal => {}
        Ok(_) => return queue_error(QueueError::NoSuchQueue(name)),
        Err(e) => return queue_error(e),
    }
    let message = NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        body: request.body,
        attributes: json!({}),
        delay_ms: request.delay_seconds.unwrap_or(0).min(900) * 1000,
        sent_ms: None,
    };
    match queues.send(&name, vec![message]).await {
        Ok(ids) => {
            state.control.events.poke();
            json_response(StatusCode::OK, &json!({"message_id": ids.first()}))
        }
        Err(e) => queue_error(e),
    }
}

pub async fn purge(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _auth: Authorized,
) -> Response {
    match state.control.events.queues().purge(&name).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"purged": name})),
        Err(e) => queue_error(e),
    }
}
