//! The Lambda Runtime API (`/2018-06-01/runtime/...`), one small HTTP server per instance.
//!
//! One listener per instance keeps identity trivial (the address *is* the instance) and lets a
//! sandboxed instance reach exactly one endpoint. The listener is bound inside the instance's
//! network namespace; on the host's network it only accepts connections from the instance's
//! own uid, so no instance can take (or answer) another's events.

use crate::process::Process;
use crate::{ExitInfo, StartError, INIT_TIMEOUT};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// Lambda's limit on a synchronous response.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// One event on its way to the runtime.
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    Success(Bytes),
    /// The runtime posted to `/error` (or answered too much). `body` is Lambda's error JSON.
    FunctionError {
        body: Bytes,
        error_type: String,
    },
    Timeout,
    /// The process died while handling the event.
    Exited(ExitInfo),
    /// The process died before it took the event: safe to retry on another instance.
    NotDelivered,
}

struct Pending {
    invocation: Invocation,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Clone, Debug)]
enum Phase {
    Starting,
    Ready,
    InitError(Bytes),
}

struct Shared {
    next_rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    current: Mutex<Option<(String, oneshot::Sender<Outcome>)>>,
    phase: watch::Sender<Phase>,
}

pub(crate) struct RuntimeApi {
    next_tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves the Runtime API on `listener` (non-blocking, already bound). With `owner`, only
    /// connections from sockets of that uid are served.
    pub(crate) fn from_listener(
        listener: std::net::TcpListener,
        owner: Option<u32>,
    ) -> Result<RuntimeApi, StartError> {
        let listener = TcpListener::from_std(listener).map_err(StartError::Setup)?;
        let addr = listener.local_addr().map_err(StartError::Setup)?;
        let (next_tx, next_rx) = mpsc::channel(1);
        let (phase, _) = watch::channel(Phase::Starting);
        let shared = Arc::new(Shared {
            next_rx: tokio::sync::Mutex::new(next_rx),
            current: Mutex::new(None),
            phase,
        });
        let server = tokio::spawn(serve(listener, addr, owner, shared.clone()));
        Ok(RuntimeApi {
            next_tx,
            shared,
            server,
        })
    }

    /// Waits for the runtime's first `next` call: the end of its init phase.
    pub(crate) async fn wait_ready(&self, process: &Process) -> Result<(), StartError> {
        let mut phase = self.shared.phase.subscribe();
        let wait = async {
            loop {
                match phase.borrow_and_update().clone() {
                    Phase::Ready => return Ok(()),
                    Phase::InitError(body) => return Err(StartError::InitError { body }),
                    Phase::Starting => {}
                }
                tokio::select! {
                    changed = phase.changed() => {
                        if changed.is_err() {
                            return Err(StartError::Exited(ExitInfo::new("runtime API stopped".into())));
                        }
                    }
                    info = process.exited() => {
                        // An init error posted just before exiting wins: it says more.
                        if let Phase::InitError(body) = phase.borrow().clone() {
                            return Err(StartError::InitError { body });
                        }
                        return Err(StartError::Exited(info));
                    }
                }
            }
        };
        match tokio::time::timeout(INIT_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => {
                process.kill();
                Err(StartError::InitTimeout)
            }
        }
    }

    pub(crate) async fn invoke(
        &self,
        invocation: Invocation,
        process: &Process,
        timeout: Duration,
    ) -> Outcome {
        if !process.is_alive() {
            return Outcome::NotDelivered;
        }
        let request_id = invocation.request_id.clone();
        let (reply, mut outcome) = oneshot::channel();
        if self
            .next_tx
            .send(Pending { invocation, reply })
            .await
            .is_err()
        {
            return Outcome::NotDelivered;
        }
        tokio::select! {
            result = &mut outcome => result.unwrap_or(Outcome::NotDelivered),
            info = process.exited() => {
                // The runtime may have answered right before exiting (e.g. max invocations).
                if let Ok(done) = outcome.try_recv() {
                    return done;
                }
                let taken = self.is_current(&request_id);
                self.clear_current(&request_id);
                if taken { Outcome::Exited(info) } else { Outcome::NotDelivered }
            }
            _ = tokio::time::sleep(timeout) => {
                self.clear_current(&request_id);
                Outcome::Timeout
            }
        }
    }

    fn is_current(&self, request_id: &str) -> bool {
        self.shared
            .current
            .lock()
            .map(|c| c.as_ref().is_some_and(|(id, _)| id == request_id))
            .unwrap_or(false)
    }

    fn clear_current(&self, request_id: &str) {
        if let Ok(mut c) = self.shared.current.lock() {
            if c.as_ref().is_some_and(|(id, _)| id == request_id) {
                *c = None;
            }
        }
    }
}

async fn serve(listener: TcpListener, addr: SocketAddr, owner: Option<u32>, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if let Some(owner) = owner {
            // One sock_diag netlink round trip, answered from kernel memory (no I/O wait);
            // runtimes keep their connection, so this runs about once per instance.
            match tusk_sandbox::tcp_peer_uid(addr, peer) {
                Ok(uid) if uid == owner => {}
                other => {
                    tracing::warn!(%peer, result = ?other, "refused a Runtime API connection from outside the instance");
                    continue;
                }
            }
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_json(error_type: &str, message: &str) -> String {
    serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string()
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            &error_json("NotFound", "unknown Runtime API path"),
        ));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(&shared).await,
        (Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            match read_body(req).await {
                Ok(body) => complete(&shared, &id, Outcome::Success(body)),
                Err(()) => {
                    let body = Bytes::from(error_json(
                        "Function.ResponseSizeTooLarge",
                        &format!("Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                    ));
                    let _ = complete(
                        &shared,
                        &id,
                        Outcome::FunctionError {
                            body,
                            error_type: "Function.ResponseSizeTooLarge".into(),
                        },
                    );
                    respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &error_json("RequestEntityTooLarge", "response over 6 MB"),
                    )
                }
            }
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            let header_type = req
                .headers()
                .get("Lambda-Runtime-Function-Error-Type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_body(req).await.unwrap_or_default();
            let (body, error_type) = normalise_error(body, header_type);
            complete(&shared, &id, Outcome::FunctionError { body, error_type })
        }
        (Method::POST, ["init", "error"]) => {
            let header_type = req
                .headers()
                .get("Lambda-Runtime-Function-Error-Type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_body(req).await.unwrap_or_default();
            let (body, _) = normalise_error(body, header_type);
            shared.phase.send_replace(Phase::InitError(body));
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            &error_json("NotFound", "unknown Runtime API path"),
        ),
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(()),
    }
}

/// Makes sure the error body has Lambda's `{errorMessage, errorType, stackTrace}` shape.
fn normalise_error(body: Bytes, header_type: Option<String>) -> (Bytes, String) {
    let parsed: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&body).ok();
    match parsed {
        Some(mut obj) => {
            let error_type = obj
                .get("errorType")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or(header_type)
                .unwrap_or_else(|| "Unhandled".into());
            obj.entry("errorType")
                .or_insert_with(|| error_type.clone().into());
            obj.entry("errorMessage").or_insert_with(|| "".into());
            let body = serde_json::to_vec(&obj).map(Bytes::from).unwrap_or(body);
            (body, error_type)
        }
        None => {
            let error_type = header_type.unwrap_or_else(|| "Unhandled".into());
            let body = serde_json::json!({
                "errorMessage": String::from_utf8_lossy(&body),
                "errorType": error_type,
            });
            (Bytes::from(body.to_string()), error_type)
        }
    }
}

fn complete(shared: &Shared, id: &str, outcome: Outcome) -> Resp {
    let taken = match shared.current.lock() {
        Ok(mut c) => {
            if c.as_ref().is_some_and(|(cur, _)| cur == id) {
                c.take()
            } else {
                None
            }
        }
        Err(_) => None,
    };
    match taken {
        Some((_, reply)) => {
            let _ = reply.send(outcome);
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        None => respond(
            StatusCode::FORBIDDEN,
            &error_json(
                "InvalidStateTransition",
                &format!("request {id} is not the invocation in progress"),
            ),
        ),
    }
}

async fn next(shared: &Shared) -> Resp {
    let mut rx = shared.next_rx.lock().await;
    shared.phase.send_if_modified(|p| {
        if matches!(p, Phase::Starting) {
            *p = Phase::Ready;
            true
        } else {
            false
        }
    });
    let Some(Pending { invocation, reply }) = rx.recv().await else {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            &error_json("ServiceException", "instance is shutting down"),
        );
    };
    drop(rx);
    if let Ok(mut c) = shared.current.lock() {
        *c = Some((invocation.request_id.clone(), reply));
    }
    let mut r = Response::new(Full::new(invocation.payload));
    let h = r.headers_mut();
    let pairs = [
        ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
        (
            "Lambda-Runtime-Deadline-Ms",
            invocation.deadline_ms.to_string(),
        ),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            invocation.function_arn,
        ),
        ("Lambda-Runtime-Trace-Id", invocation.trace_id),
    ];
    for (name, value) in pairs {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(cc) = invocation.client_context {
        if let Ok(v) = http::HeaderValue::from_str(&cc) {
            h.insert("Lambda-Runtime-Client-Context", v);
        }
    }
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
