//! Turns a deployed function's `events`, `destinations` and async settings into the events
//! engine's configuration, checking every reference at deploy time.

use crate::ControlError;
use std::time::Duration;
use tusk_events::{Destination, FunctionEventConfig, ScheduleSpec, SqsMapping};
use tusk_manifest::arn::{function_arn, function_name_or_self};
use tusk_manifest::{EventSpec, FunctionSpec, ServiceSpec};

/// Lambda's defaults for async invocations.
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_AGE: u32 = 21600;

/// The queue an `arn:aws:sqs:REGION:ACCOUNT:NAME` names, when NAME is a valid queue name.
pub fn queue_from_arn(arn: &str) -> Option<&str> {
    tusk_manifest::sqs_queue(arn)
}

/// Resolves a destination: a function of this service (short name), a deployed function (full
/// name or Lambda ARN), or a Tusk queue (SQS ARN).
fn destination(
    spec: &ServiceSpec,
    raw: &str,
    known_function: &dyn Fn(&str) -> bool,
    known_queue: &dyn Fn(&str) -> bool,
    function: &str,
) -> Result<Destination, ControlError> {
    if let Some(queue) = queue_from_arn(raw) {
        if known_queue(queue) {
            return Ok(Destination::Queue(queue.to_string()));
        }
        return Err(ControlError::BadRequest(format!(
            "function {function}: destination queue `{queue}` does not exist; create it with `tusk queue create {queue}` or declare it as a queue construct"
        )));
    }
    let name = function_name_or_self(raw);
    if let Some(f) = spec.functions.iter().find(|f| f.name == name) {
        return Ok(Destination::Function(spec.function_name(f)));
    }
    let own = spec.functions.iter().any(|f| spec.function_name(f) == name);
    if own || known_function(name) {
        return Ok(Destination::Function(name.to_string()));
    }
    Err(ControlError::BadRequest(format!(
        "function {function}: unknown destination `{raw}`; use a function of this service, a deployed function's name or ARN, or arn:aws:sqs:REGION:ACCOUNT:QUEUE for a Tusk queue"
    )))
}

pub fn build(
    spec: &ServiceSpec,
    f: &FunctionSpec,
    known_function: &dyn Fn(&str) -> bool,
    known_queue: &dyn Fn(&str) -> bool,
) -> Result<FunctionEventConfig, ControlError> {
    let name = spec.function_name(f);
    let dest = |raw: &Option<String>| -> Result<Option<Destination>, ControlError> {
        raw.as_deref()
            .map(|r| destination(spec, r, known_function, known_queue, &name))
            .transpose()
    };
    let mut schedules = Vec::new();
    let mut sqs = Vec::new();
    for (i, event) in f.events.iter().enumerate() {
        match event {
            EventSpec::Schedule {
                expression,
                input,
                enabled,
            } => {
                if !enabled {
                    continue;
                }
                let schedule = expression
                    .parse()
                    .map_err(|e: tusk_schedule::ScheduleError| {
                        ControlError::BadRequest(format!("function {name}: {e}"))
                    })?;
                schedules.push(ScheduleSpec {
                    key: format!("{name}#{i}#{expression}"),
                    rule: format!("{name}-schedule-{i}"),
                    schedule,
                    input: input.clone(),
                });
            }
            EventSpec::Sqs {
                arn,
                batch_size,
                maximum_batching_window,
                function_response_type,
            } => {
                let queue = queue_from_arn(arn).ok_or_else(|| {
                    ControlError::BadRequest(format!(
                        "function {name}: sqs event `{arn}` is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)"
                    ))
                })?;
                if !known_queue(queue) {
                    return Err(ControlError::BadRequest(format!(
                        "function {name}: queue `{queue}` does not exist; create it with `tusk queue create {queue}` or declare it as a queue construct"
                    )));
                }
                sqs.push(SqsMapping {
                    queue: queue.to_string(),
                    batch_size: *batch_size,
                    batching_window: Duration::from_secs(u64::from(*maximum_batching_window)),
                    report_batch_item_failures: function_response_type.as_deref()
                        == Some("ReportBatchItemFailures"),
                });
            }
            _ => {}
        }
    }
    let on_success = dest(&f.destinations.on_success)?;
    let on_failure = dest(&f.destinations.on_failure)?;
    Ok(FunctionEventConfig {
        function_arn: function_arn(&spec.region, &name),
        function: name,
        max_retries: f.maximum_retry_attempts.unwrap_or(DEFAULT_RETRIES),
        max_event_age: Duration::from_secs(u64::from(
            f.maximum_event_age.unwrap_or(DEFAULT_MAX_AGE),
        )),
        timeout: Duration::from_secs(u64::from(f.timeout)),
        on_success,
        on_failure,
        schedules,
        sqs,
    })
}
