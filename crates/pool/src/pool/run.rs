//! Running work on a leased instance: one event through the Runtime API or one request
//! through FastCGI, with the START/END/REPORT lines, metrics and Lambda's error bodies for
//! timeouts, crashes and failed starts. Leasing and scaling are in the parent module.

use super::{AcquireError, FunctionPool, Lease};
use crate::launcher::Running;
use crate::metrics::FunctionMetrics;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tusk_instance::{
    CgiResponse, Done, FastCgiError, FcgiFailure, Invocation, Outcome, Params, StartError, Work,
};

/// Result of one Runtime API invocation, ready for the Invoke API.
pub struct InvokeResult {
    pub request_id: String,
    /// `Ok(payload)` or `Err((error JSON, errorType))`.
    pub result: Result<Bytes, (Bytes, String)>,
    pub log_tail: String,
}

/// How one web request ended.
pub enum WebOutcome {
    /// PHP's CGI response, parsed (framing headers already dropped).
    Response(CgiResponse),
    /// PHP answered, but not with a valid CGI response: the reason, for the 502's log line.
    BadResponse(FastCgiError),
    Timeout,
    Crashed(String),
}

pub struct WebResult {
    pub request_id: String,
    pub outcome: WebOutcome,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn error_body(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

impl FunctionPool {
    fn init_failure(&self, request_id: &str, e: StartError) -> InvokeResult {
        tracing::warn!(function = %self.name(), request_id, error = %e, "instance failed to start");
        FunctionMetrics::inc(&self.metrics.invocations);
        FunctionMetrics::inc(&self.metrics.errors);
        let (body, error_type) = match e {
            StartError::InitError { body } => {
                let t = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.get("errorType")
                            .and_then(|t| t.as_str())
                            .map(String::from)
                    })
                    .unwrap_or_else(|| "Runtime.InitError".into());
                (body, t)
            }
            StartError::Exited(info) => (
                error_body(
                    "Runtime.ExitError",
                    format!("RequestId: {request_id} Error: Runtime exited with error: {info}"),
                ),
                "Runtime.ExitError".to_string(),
            ),
            StartError::InitTimeout => (
                error_body(
                    "Runtime.InitTimeout",
                    format!("RequestId: {request_id} Error: {e}"),
                ),
                "Runtime.InitTimeout".to_string(),
            ),
            other => (
                error_body("Runtime.StartError", other.to_string()),
                "Runtime.StartError".to_string(),
            ),
        };
        let line = format!(
            "INIT_REPORT RequestId: {request_id}\tPhase: init\tStatus: error\tError Type: {error_type}"
        );
        self.logs.log(
            self.name(),
            Some(request_id),
            tusk_logs::LogStream::Platform,
            &line,
        );
        InvokeResult {
            request_id: request_id.to_string(),
            result: Err((body, error_type)),
            log_tail: line + "\n",
        }
    }

    /// Runs one event through a Runtime API instance. Waiting for an instance ends when the
    /// caller goes away; once an instance is leased the invocation runs in its own task, so a
    /// caller that disconnects never leaves an instance half-way through an event.
    pub async fn invoke(
        self: &Arc<Self>,
        payload: Bytes,
        client_context: Option<String>,
    ) -> Result<InvokeResult, AcquireError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        // One retry covers an instance that died while idle, before it took the event.
        for attempt in 0..2 {
            let lease = match self.acquire().await {
                Ok(l) => l,
                Err(AcquireError::Throttled) => {
                    FunctionMetrics::inc(&self.metrics.throttles);
                    return Err(AcquireError::Throttled);
                }
                Err(AcquireError::Start(e)) => return Ok(self.init_failure(&request_id, e)),
            };
            let pool = self.clone();
            let (id, payload, context) =
                (request_id.clone(), payload.clone(), client_context.clone());
            let task = tokio::spawn(async move {
                pool.run_event(lease, id, payload, context, attempt == 0)
                    .await
            });
            match task.await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => continue,
                Err(e) => {
                    return Ok(self.init_failure(
                        &request_id,
                        StartError::Setup(std::io::Error::other(e.to_string())),
                    ))
                }
            }
        }
        Ok(self.init_failure(&request_id, StartError::InitTimeout))
    }

    /// One attempt on a leased instance; `None` when the instance died before it took the
    /// event and `may_retry` allows another attempt.
    async fn run_event(
        self: Arc<Self>,
        mut lease: Lease,
        request_id: String,
        payload: Bytes,
        client_context: Option<String>,
        may_retry: bool,
    ) -> Option<InvokeResult> {
        let timeout = self.spec.timeout;
        let instance = lease.instance()?;
        let started = Instant::now();
        self.begin(instance, &request_id);
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            deadline_ms: now_ms() + timeout.as_millis() as u64,
            function_arn: self.spec.function_arn.clone(),
            trace_id: trace_id(&request_id),
            client_context,
        };
        let done = instance.run(Work::Event(invocation), timeout).await;
        if matches!(done, Done::Event(Outcome::NotDelivered)) && may_retry {
            if let Some(dead) = lease.instance.take() {
                self.release(dead);
            }
            return None;
        }
        FunctionMetrics::inc(&self.metrics.invocations);
        let result = match done {
            Done::Event(Outcome::Success(body)) => Ok(body),
            Done::Event(Outcome::FunctionError { body, error_type }) => Err((body, error_type)),
            Done::Event(Outcome::Timeout) => Err(self.timed_out(instance, &request_id)),
            Done::Event(Outcome::Exited(info)) => {
                Err(self.exited(instance, &request_id, &info.to_string()))
            }
            Done::Event(Outcome::NotDelivered) => Err(self.exited(
                instance,
                &request_id,
                "the runtime exited before taking the event",
            )),
            // Work of the other kind (a bug above): answered as a runtime that exited, as the
            // instance did before `run`, never a panic.
            Done::Refused(e) => Err(self.exited(instance, &request_id, &e.to_string())),
            Done::Web(_) => Err(self.exited(
                instance,
                &request_id,
                "the instance answered an event as a web request",
            )),
        };
        if result.is_err() {
            FunctionMetrics::inc(&self.metrics.errors);
        }
        let log_tail = self.end(instance, &request_id, started, lease.cold).await;
        Some(InvokeResult {
            request_id,
            result,
            log_tail,
        })
    }

    /// Sends one HTTP request to a FastCGI (web) instance. As with [`Self::invoke`], the
    /// exchange runs in its own task: a FastCGI request cut off half-way would leave the
    /// worker's connection unusable.
    /// Runs one web request; `request_id` is the one PHP was given (`LAMBDA_REQUEST_ID`), so
    /// its log lines carry the same id.
    pub async fn http(
        self: &Arc<Self>,
        request_id: String,
        params: Params,
        body: Bytes,
    ) -> Result<WebResult, AcquireError> {
        let lease = match self.acquire().await {
            Ok(l) => l,
            Err(AcquireError::Throttled) => {
                FunctionMetrics::inc(&self.metrics.throttles);
                return Err(AcquireError::Throttled);
            }
            Err(AcquireError::Start(e)) => {
                let r = self.init_failure(&request_id, e);
                let message = r
                    .result
                    .err()
                    .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                return Ok(WebResult {
                    request_id,
                    outcome: WebOutcome::Crashed(message),
                });
            }
        };
        let pool = self.clone();
        let id = request_id.clone();
        match tokio::spawn(async move { pool.exchange(lease, id, params, body).await }).await {
            Ok(r) => Ok(r),
            Err(e) => Ok(WebResult {
                request_id,
                outcome: WebOutcome::Crashed(e.to_string()),
            }),
        }
    }

    async fn exchange(
        self: Arc<Self>,
        lease: Lease,
        request_id: String,
        params: Params,
        body: Bytes,
    ) -> WebResult {
        let Some(instance) = lease.instance() else {
            return WebResult {
                request_id,
                outcome: WebOutcome::Crashed("no instance".into()),
            };
        };
        FunctionMetrics::inc(&self.metrics.invocations);
        let started = Instant::now();
        self.begin(instance, &request_id);
        let done = instance
            .run(Work::Web { params, body }, self.spec.timeout)
            .await;
        let failed = |why: String| {
            self.exited(instance, &request_id, &why);
            WebOutcome::Crashed(why)
        };
        let outcome = match done {
            Done::Web(Ok(reply)) => {
                for line in String::from_utf8_lossy(&reply.stderr).lines() {
                    instance.output_line(tusk_logs::LogStream::Stderr, line);
                }
                match reply.response {
                    Ok(cgi) => WebOutcome::Response(cgi),
                    Err(e) => WebOutcome::BadResponse(e),
                }
            }
            Done::Web(Err(FcgiFailure::Timeout)) => {
                self.timed_out(instance, &request_id);
                WebOutcome::Timeout
            }
            Done::Web(Err(other)) => failed(other.to_string()),
            Done::Refused(e) => failed(e.to_string()),
            Done::Event(_) => failed("an event's answer to a web request".into()),
        };
        // A malformed response is PHP's answer, counted as before parsing moved here: no error.
        if matches!(outcome, WebOutcome::Timeout | WebOutcome::Crashed(_)) {
            FunctionMetrics::inc(&self.metrics.errors);
        }
        self.end(instance, &request_id, started, lease.cold).await;
        WebResult {
            request_id,
            outcome,
        }
    }

    fn begin(&self, instance: &Running, request_id: &str) {
        instance.begin(request_id);
        instance.platform_line(&format!(
            "START RequestId: {request_id} Version: {}",
            self.spec.version
        ));
    }

    /// Writes END and REPORT and returns the invocation's log tail.
    async fn end(
        &self,
        instance: &Running,
        request_id: &str,
        started: Instant,
        cold: bool,
    ) -> String {
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        instance.drain().await;
        instance.platform_line(&format!("END RequestId: {request_id}"));
        let mut report = format!(
            "REPORT RequestId: {request_id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            duration_ms.ceil().max(1.0) as u64,
            self.spec.memory_mb,
            instance.max_memory_used_mb(),
        );
        if cold {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                instance.init_duration().as_secs_f64() * 1000.0
            ));
        }
        instance.platform_line(&report);
        self.metrics.observe(duration_ms);
        instance.take_log_tail()
    }

    fn timed_out(&self, instance: &Running, request_id: &str) -> (Bytes, String) {
        FunctionMetrics::inc(&self.metrics.timeouts);
        let msg = format!(
            "Task timed out after {:.2} seconds",
            self.spec.timeout.as_secs_f64()
        );
        instance.platform_line(&format!("{} {request_id} {msg}", iso_now()));
        (
            error_body(
                "Sandbox.Timedout",
                format!("RequestId: {request_id} Error: {msg}"),
            ),
            "Sandbox.Timedout".to_string(),
        )
    }

    fn exited(&self, instance: &Running, request_id: &str, why: &str) -> (Bytes, String) {
        let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {why}");
        instance.platform_line(&msg);
        (
            error_body("Runtime.ExitError", msg),
            "Runtime.ExitError".to_string(),
        )
    }
}

fn trace_id(request_id: &str) -> String {
    let hex: String = request_id.chars().filter(|c| *c != '-').take(24).collect();
    format!("Root=1-{:08x}-{hex};Sampled=0", now_ms() / 1000)
}

fn iso_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
