//! The SQS API subset on the node's listener (AWS JSON 1.0 protocol, `X-Amz-Target:
//! AmazonSQS.<Action>`), so `aws sqs ... --endpoint-url` and SDKs reach Tusk's queues.

use crate::state::AppState;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tusk_events::queue_db::{NewMessage, QueueConfig, QueueError};
use tusk_events::records::md5_hex;
use tusk_manifest::arn::{queue_arn, DEFAULT_REGION};

pub fn is_sqs(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("AmazonSQS."))
}

struct SqsError {
    code: &'static str,
    query_code: &'static str,
    message: String,
}

impl SqsError {
    fn new(code: &'static str, query_code: &'static str, message: impl Into<String>) -> SqsError {
        SqsError {
            code,
            query_code,
            message: message.into(),
        }
    }
    fn invalid(message: impl Into<String>) -> SqsError {
        SqsError::new("InvalidParameterValue", "InvalidParameterValue", message)
    }
    fn missing_queue(name: &str) -> SqsError {
        SqsError::new(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!("The specified queue {name} does not exist; create it with `tusk queue create {name}` or CreateQueue"),
        )
    }
}

impl From<QueueError> for SqsError {
    fn from(e: QueueError) -> SqsError {
        match e {
            QueueError::NoSuchQueue(q) => SqsError::missing_queue(&q),
            QueueError::Invalid(m) => SqsError::invalid(m),
            other => SqsError::new("InternalFailure", "InternalFailure", other.to_string()),
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r
}

fn error_response(e: SqsError) -> Response {
    let status = if e.code == "InternalFailure" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut r = reply(
        status,
        json!({"__type": format!("com.amazonaws.sqs#{}", e.code), "message": e.message}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", e.query_code)) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}

/// The queue a `QueueUrl` names (its last path segment).
fn queue_name(body: &Value) -> Result<String, SqsError> {
    let url = body
        .get("QueueUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SqsError::new(
                "MissingParameter",
                "MissingParameter",
                "QueueUrl is required",
            )
        })?;
    let name = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if !tusk_manifest::valid_queue_name(name) {
        return Err(SqsError::invalid(format!("{url} is not a Tusk queue URL")));
    }
    Ok(name.to_string())
}

fn queue_url(state: &AppState, name: &str) -> String {
    tusk_manifest::arn::queue_url(&state.control.base_url, name)
}

async fn user_queue(state: &AppState, name: &str) -> Result<QueueConfig, SqsError> {
    match state.control.events.queues().queue(name).await? {
        Some(q) if !q.internal => Ok(q),
        _ => Err(SqsError::missing_queue(name)),
    }
}

fn message(body: &Value, default_delay: u64) -> Result<NewMessage, SqsError> {
    let text = body
        .get("MessageBody")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SqsError::new(
                "MissingParameter",
                "MissingParameter",
                "MessageBody is required",
            )
        })?;
    if text.is_empty() {
        return Err(SqsError::invalid("MessageBody must not be empty"));
    }
    if text.len() > tusk_events::MAX_MESSAGE {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            tusk_events::MAX_MESSAGE
        )));
    }
    let delay = body
        .get("DelaySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(default_delay);
    if delay > 900 {
        return Err(SqsError::invalid("DelaySeconds must be between 0 and 900"));
    }
    let mut attributes = json!({});
    if let Some(a) = body.get("MessageAttributes") {
        attributes["MessageAttributes"] = a.clone();
    }
    Ok(NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        body: text.to_string(),
        attributes,
        delay_ms: delay * 1000,
        sent_ms: None,
    })
}

/// An SQS API call whose credentials the caller has checked (`authorized_body`).
pub async fn handle(state: &AppState, parts: &http::request::Parts, body: Bytes) -> Response {
    let action = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSQS."))
        .unwrap_or_default()
        .to_string();
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => json!({}),
        Err(e) => {
            return error_response(SqsError::invalid(format!(
                "the request body is not JSON: {e}"
            )))
        }
    };
    match run(state, &action, &request).await {
        Ok(v) => reply(StatusCode::OK, v),
        Err(e) => error_response(e),
    }
}

async fn run(state: &AppState, action: &str, req: &Value) -> Result<Value, SqsError> {
    let queues = state.control.events.queues();
    match action {
        "CreateQueue" => {
            let name = req
                .get("QueueName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !tusk_manifest::valid_queue_name(name) {
                return Err(SqsError::invalid(format!(
                    "QueueName: {}",
                    tusk_manifest::QUEUE_NAME_RULE
                )));
            }
            let attrs = req.get("Attributes").cloned().unwrap_or(json!({}));
            let visibility = attrs
                .get("VisibilityTimeout")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            let (max_receive_count, dead_letter) =
                match attrs.get("RedrivePolicy").and_then(Value::as_str) {
                    Some(policy) => {
                        let p: Value = serde_json::from_str(policy)
                            .map_err(|_| SqsError::invalid("RedrivePolicy must be JSON"))?;
                        let count = p
                            .get("maxReceiveCount")
                            .and_then(|c| {
                                c.as_u64()
                                    .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
                            })
                            .unwrap_or(0) as u32;
                        let target = p
                            .get("deadLetterTargetArn")
                            .and_then(Value::as_str)
                            .and_then(tusk_control::event_config::queue_from_arn)
                            .map(String::from);
                        if let Some(t) = &target {
                            user_queue(state, t).await?;
                        }
                        (count, target)
                    }
                    None => (0, None),
                };
            queues
                .create_queue(QueueConfig {
                    name: name.to_string(),
                    visibility_timeout_s: visibility,
                    max_receive_count,
                    dead_letter,
                    internal: false,
                })
                .await?;
            Ok(json!({"QueueUrl": queue_url(state, name)}))
        }
        "GetQueueUrl" => {
            let name = req
                .get("QueueName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            user_queue(state, name).await?;
            Ok(json!({"QueueUrl": queue_url(state, name)}))
        }
        "ListQueues" => {
            let prefix = req
                .get("QueueNamePrefix")
                .and_then(Value::as_str)
                .unwrap_or("");
            let urls: Vec<String> = queues
                .queues()
                .await?
                .into_iter()
                .filter(|q| !q.internal && q.name.starts_with(prefix))
                .map(|q| queue_url(state, &q.name))
                .collect();
            Ok(json!({"QueueUrls": urls}))
        }
        "DeleteQueue" => {
            let name = queue_name(req)?;
            user_queue(state, &name).await?;
            queues.delete_queue(&name).await?;
            Ok(json!({}))
        }
        "SendMessage" => {
            let name = queue_name(req)?;
            user_queue(state, &name).await?;
            let m = message(req, 0)?;
            let md5 = md5_hex(&m.body);
            let ids = queues.send(&name, vec![m]).await?;
            state.control.events.poke();
            Ok(json!({"MessageId": ids.first(), "MD5OfMessageBody": md5}))
        }
        "SendMessageBatch" => {
            let name = queue_name(req)?;
            user_queue(state, &name).await?;
            let entries = req
                .get("Entries")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if entries.is_empty() || entries.len() > 10 {
                return Err(SqsError::invalid("SendMessageBatch takes 1 to 10 entries"));
            }
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            let mut batch = Vec::new();
            for e in &entries {
                let id = e
                    .get("Id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match message(e, 0) {
                    Ok(m) => {
                        ok.push(json!({"Id": id, "MessageId": m.id, "MD5OfMessageBody": md5_hex(&m.body)}));
                        batch.push(m);
                    }
                    Err(err) => failed.push(json!({"Id": id, "SenderFault": true, "Code": err.code, "Message": err.message})),
                }
            }
            if !batch.is_empty() {
                queues.send(&name, batch).await?;
                state.control.events.poke();
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "ReceiveMessage" => {
            let name = queue_name(req)?;
            let q = user_queue(state, &name).await?;
            let max = req
                .get("MaxNumberOfMessages")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 10) as usize;
            let visibility = req
                .get("VisibilityTimeout")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(q.visibility_timeout_s));
            let wait = req
                .get("WaitTimeSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(20);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            let messages = loop {
                let got = queues.receive(&name, max, visibility * 1000).await?;
                if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let out: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let mut v = json!({
                        "MessageId": m.id,
                        "ReceiptHandle": m.receipt,
                        "MD5OfBody": md5_hex(&m.body),
                        "Body": m.body,
                        "Attributes": {
                            "ApproximateReceiveCount": m.receive_count.to_string(),
                            "SentTimestamp": m.sent_ms.to_string(),
                        },
                    });
                    if let Some(a) = m.attributes.get("MessageAttributes") {
                        v["MessageAttributes"] = a.clone();
                    }
                    v
                })
                .collect();
            Ok(json!({"Messages": out}))
        }
        "DeleteMessage" => {
            let name = queue_name(req)?;
            let receipt = req
                .get("ReceiptHandle")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !queues.delete(&name, receipt).await? {
                return Err(SqsError::new(
                    "ReceiptHandleIsInvalid",
                    "ReceiptHandleIsInvalid",
                    format!("The receipt handle {receipt} is not valid (already deleted, or received again since)"),
                ));
            }
            Ok(json!({}))
        }
        "ChangeMessageVisibility" => {
            let name = queue_name(req)?;
            let receipt = req
                .get("ReceiptHandle")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let seconds = req
                .get("VisibilityTimeout")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            queues
                .change_visibility(&name, receipt, seconds * 1000)
                .await?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => {
            let name = queue_name(req)?;
            let q = user_queue(state, &name).await?;
            let stats = queues
                .stats()
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_default();
            let mut attrs = json!({
                "QueueArn": queue_arn(DEFAULT_REGION, &name),
                "ApproximateNumberOfMessages": stats.visible.to_string(),
                "ApproximateNumberOfMessagesNotVisible": stats.in_flight.to_string(),
                "ApproximateNumberOfMessagesDelayed": stats.delayed.to_string(),
                "VisibilityTimeout": q.visibility_timeout_s.to_string(),
                "MaximumMessageSize": tusk_events::MAX_MESSAGE.to_string(),
            });
            if let Some(dlq) = &q.dead_letter {
                attrs["RedrivePolicy"] = Value::String(
                    json!({"deadLetterTargetArn": queue_arn(DEFAULT_REGION, dlq), "maxReceiveCount": q.max_receive_count}).to_string(),
                );
            }
            Ok(json!({"Attributes": attrs}))
        }
        "PurgeQueue" => {
            let name = queue_name(req)?;
            user_queue(state, &name).await?;
            queues.purge(&name).await?;
            Ok(json!({}))
        }
        other => Err(SqsError::new(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("{other} is not supported by Tusk's SQS API"),
        )),
    }
}
