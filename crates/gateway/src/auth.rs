//! Who may call the node's APIs, and reading their request bodies: the admin token or a
//! Signature V4 signature is checked before (or, for SigV4, right after) a body is read, under
//! node-wide budgets. Handlers take [`Authorized`] or call [`authorized_body`]; this module
//! never routes or answers a request itself.

use crate::respond::{admin_error, lambda_error};
use crate::state::{AppState, UNVERIFIED_BODY_BUDGET};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::json;
use std::sync::Arc;

fn check(
    state: &AppState,
    req: &http::request::Parts,
    body: &[u8],
) -> Result<(), tusk_auth::AuthError> {
    let parts = tusk_auth::RequestParts {
        method: req.method.as_str(),
        raw_path: req.uri.path(),
        raw_query: req.uri.query().unwrap_or(""),
        headers: &req.headers,
        body,
    };
    tusk_auth::authenticate(&parts, &state.credentials, std::time::SystemTime::now()).map(|_| ())
}

fn auth_response(e: &tusk_auth::AuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    let message = e.to_string();
    lambda_error(
        status,
        e.aws_error_type(),
        json!({"Type": "User", "message": message, "error": message}),
    )
}

/// Extractor for body-less admin and Lambda API calls (GET, HEAD, DELETE): rejects the request
/// unless it carries the admin token or a valid signature over an empty body.
pub struct Authorized;

impl axum::extract::FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match reject_unauthorized(state, parts, b"") {
            Some(r) => Err(r),
            None => Ok(Authorized),
        }
    }
}

/// `Some(error response)` unless the request carries the admin token or a valid signature.
pub fn reject_unauthorized(
    state: &AppState,
    req: &http::request::Parts,
    body: &[u8],
) -> Option<Response> {
    check(state, req, body).err().map(|e| auth_response(&e))
}

/// Why a request body was not handed over.
pub enum BodyError {
    /// Answer this (authentication failed, too busy, too slow).
    Rejected(Response),
    /// The body is over the caller's limit; the caller says so its own way.
    TooLarge,
}

/// Reads a body of at most `limit` bytes. Like nginx's `client_body_timeout`, the timeout is
/// between two reads: a slow upload is fine, a stalled one gets 408. `whole` applies it to the
/// whole body instead (for bodies read before their signature is checked).
pub async fn read_body(
    state: &AppState,
    body: axum::body::Body,
    limit: usize,
    whole: bool,
) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let timeout = state.body_timeout;
    let stalled = || {
        BodyError::Rejected(admin_error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body did not arrive within {} s; send it without pausing",
                timeout.as_secs()
            ),
        ))
    };
    let deadline = tokio::time::Instant::now() + timeout;
    // The declared length (capped) sizes the buffer once instead of doubling it as it grows.
    let expected = (http_body::Body::size_hint(&body).lower() as usize).min(limit);
    let mut body = http_body_util::Limited::new(body, limit);
    // One chunk (the common case) is handed on as it is; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    loop {
        let until = if whole {
            deadline
        } else {
            tokio::time::Instant::now() + timeout
        };
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => return Err(stalled()),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(BodyError::TooLarge);
                }
                return Err(BodyError::Rejected(admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {e}"),
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match (&mut first, &mut joined) {
            (_, Some(j)) => j.extend_from_slice(&data),
            (Some(f), None) => {
                let mut j = bytes::BytesMut::with_capacity(expected.max(f.len() + data.len()));
                j.extend_from_slice(f);
                j.extend_from_slice(&data);
                joined = Some(j);
            }
            (None, None) => first = Some(data),
        }
    }
    Ok(match (first, joined) {
        (_, Some(j)) => j.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// The body of an API request (`/_tusk/*`, Lambda, SQS), read only once its credentials
/// allow: a bad or missing token is refused before a byte of the body is read. A SigV4
/// request's signature covers its body, so that body is read first, under the node-wide
/// [`UNVERIFIED_BODY_BUDGET`] (over it: 429, retry), then verified.
pub async fn authorized_body(
    state: &AppState,
    parts: &http::request::Parts,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let request = tusk_auth::RequestParts {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: b"",
    };
    let now = std::time::SystemTime::now();
    match tusk_auth::precheck(&request, &state.credentials, now) {
        Err(e) => Err(BodyError::Rejected(auth_response(&e))),
        Ok(tusk_auth::Precheck::Authenticated(_)) => read_body(state, body, limit, false).await,
        Ok(tusk_auth::Precheck::NeedsBody) => {
            let declared = http_body::Body::size_hint(&body)
                .exact()
                .map(|n| n as usize);
            if declared.is_some_and(|n| n > limit) {
                return Err(BodyError::TooLarge);
            }
            // Reserve what the body may take: its declared length, else the limit.
            let want = declared.unwrap_or(limit).min(UNVERIFIED_BODY_BUDGET) as u32;
            let Ok(_permit) = state.unverified_bodies.try_acquire_many(want) else {
                let mut r = lambda_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    json!({"Type": "User", "message": "Too many signed request bodies are being received at once; retry shortly", "Reason": "SlowDown"}),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Err(BodyError::Rejected(r));
            };
            let body = read_body(state, body, limit, true).await?;
            match check(state, parts, &body) {
                Ok(()) => Ok(body),
                Err(e) => Err(BodyError::Rejected(auth_response(&e))),
            }
        }
    }
}
