//! Wire shapes of what async invocations, schedules and queues hand to functions
//! (DESIGN.md §4).

use serde_json::{json, Value};
use tusk_manifest::arn::{queue_arn, rule_arn, ACCOUNT_ID};

pub fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Parses a payload back into JSON for records; raw text when it is not JSON.
pub fn as_json(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

pub struct Outcome<'a> {
    pub request_id: &'a str,
    pub function_arn: &'a str,
    /// `Success`, `RetriesExhausted` or `EventAgeExceeded`.
    pub condition: &'a str,
    pub invoke_count: u32,
    pub request_payload: &'a [u8],
    pub response: Option<&'a [u8]>,
    pub function_error: Option<&'a str>,
}

/// Lambda's asynchronous invocation record, sent to destinations.
pub fn invocation_record(o: &Outcome<'_>) -> Value {
    let mut record = json!({
        "version": "1.0",
        "timestamp": iso(crate::queue_db::now_ms()),
        "requestContext": {
            "requestId": o.request_id,
            "functionArn": format!("{}:$LATEST", o.function_arn),
            "condition": o.condition,
            "approximateInvokeCount": o.invoke_count,
        },
        "requestPayload": as_json(o.request_payload),
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
        },
    });
    if let Some(e) = o.function_error {
        record["responseContext"]["functionError"] = Value::String(e.to_string());
    }
    if let Some(r) = o.response {
        record["responsePayload"] = as_json(r);
    }
    record
}

/// EventBridge's scheduled event.
pub fn scheduled_event(region: &str, rule: &str, fire_ms: i64) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": iso(fire_ms).replace(".000", ""),
        "region": region,
        "resources": [rule_arn(region, rule)],
        "detail": {},
    })
}

pub fn md5_hex(body: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(body.as_bytes()))
}

/// One SQS record of an `sqs` event.
pub fn sqs_record(region: &str, m: &crate::queue_db::Message) -> Value {
    json!({
        "messageId": m.id,
        "receiptHandle": m.receipt,
        "body": m.body,
        "attributes": {
            "ApproximateReceiveCount": m.receive_count.to_string(),
            "SentTimestamp": m.sent_ms.to_string(),
            "SenderId": ACCOUNT_ID,
            "ApproximateFirstReceiveTimestamp": m.sent_ms.to_string(),
        },
        "messageAttributes": m.attributes.get("MessageAttributes").cloned().unwrap_or_else(|| json!({})),
        "md5OfBody": md5_hex(&m.body),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(region, &m.queue),
        "awsRegion": region,
    })
}
