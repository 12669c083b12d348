//! The one invocation path of every synchronous entry point (user routes, php-fpm and function,
//! and the Invoke API): run the call on an instance here when the pool has a free slot, else
//! offer it to a peer with room, else throttle when this node has no share of the function,
//! else wait in this node's queue; then the exchange with the pool. Entry points only translate
//! their wire format into a call here and the [`Ran`] back into their wire format.
//!
//! It lives in the gateway, not in `tusk-control`, because offering to a peer is an HTTP call
//! (`forward`). Async events and queues do not come here: JetStream spreads them over the
//! nodes and `tusk_control::pool_invoker` runs them. It must never shape a response: no
//! status code, header or body is chosen here.

use crate::forward::{self, ForwardError, Forwarded};
use crate::state::AppState;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tusk_instance::Params;
use tusk_pool::{AcquireError, FunctionPool, InvokeResult, WebResult};

/// Lambda's synchronous payload limit (Invoke API payloads and function routes' bodies).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;

/// How long a peer may take beyond the function's own timeout (connect, queue, answer).
const PEER_MARGIN: Duration = Duration::from_secs(10);

/// Where a call may go when this node's pool is full.
pub enum Peer<'a> {
    /// Another node sent it because it was full: it runs only with a slot free now, else it is
    /// throttled; it is never offered on.
    Forwarded,
    /// Not offered to peers (the Invoke API on a web app is rare); only the share rule holds.
    Never,
    /// Offered as an Invoke API call with `event` as its payload.
    Invoke {
        function: &'a str,
        /// The caller's headers (the ones a peer needs are passed on).
        headers: &'a HeaderMap,
        /// Only a 200 counts as taken: any other answer (say, the function is not deployed
        /// there yet) runs the call here. Without it, every answer but 429 is the caller's.
        only_success: bool,
    },
    /// Offered as the same HTTP request on the peer's own route.
    Web {
        method: &'a http::Method,
        /// Path and query, as the client sent them.
        target: &'a str,
        headers: &'a HeaderMap,
        body: &'a Bytes,
        /// The client's address, which the peer hands to PHP.
        client: SocketAddr,
    },
}

/// How a call ended, for the entry point to put in its wire format.
pub enum Ran<T> {
    /// It ran on an instance here.
    Here(T),
    /// A peer ran it; its answer, whole.
    Peer(Forwarded),
    /// The peer that took it went away with it: it may or may not have run. Why.
    PeerLost(String),
    /// No slot here nor on a peer (429).
    Throttled,
    /// This node could not run it for another reason than load.
    Failed(AcquireError),
}

/// One event through a Runtime API instance (a function route's API Gateway event or an
/// Invoke API payload).
pub async fn event(
    state: &AppState,
    pool: &Arc<FunctionPool>,
    payload: Bytes,
    client_context: Option<String>,
    peer: Peer<'_>,
) -> Ran<InvokeResult> {
    if let Some(elsewhere) = admit(state, pool, peer, &payload).await {
        return elsewhere;
    }
    ran(pool.invoke(payload, client_context).await)
}

/// One FastCGI request through a php-cgi worker; `request_id` is the one in `params`.
pub async fn web(
    state: &AppState,
    pool: &Arc<FunctionPool>,
    request_id: String,
    params: Params,
    body: Bytes,
    peer: Peer<'_>,
) -> Ran<WebResult> {
    if let Some(elsewhere) = admit(state, pool, peer, &body).await {
        return elsewhere;
    }
    ran(pool.http(request_id, params, body).await)
}

fn ran<T>(result: Result<T, AcquireError>) -> Ran<T> {
    match result {
        Ok(r) => Ran::Here(r),
        Err(AcquireError::Throttled) => Ran::Throttled,
        Err(e) => Ran::Failed(e),
    }
}

/// The admission policy: `None` when the call is to run here (a free slot, or a place in the
/// queue), else how it ended elsewhere. `payload` is what an `Invoke` offer sends.
async fn admit<T>(
    state: &AppState,
    pool: &FunctionPool,
    peer: Peer<'_>,
    payload: &Bytes,
) -> Option<Ran<T>> {
    if !pool.saturated() {
        return None;
    }
    let timeout = pool.spec().timeout + PEER_MARGIN;
    let offered = match peer {
        Peer::Forwarded => return Some(Ran::Throttled),
        Peer::Never => None,
        Peer::Invoke {
            function,
            headers,
            only_success,
        } => offer_invoke(state, function, headers, payload, timeout, only_success).await,
        Peer::Web {
            method,
            target,
            headers,
            body,
            client,
        } => offer_web(state, method, target, headers, body, client, timeout).await,
    };
    if offered.is_some() {
        return offered;
    }
    if no_share_here(state, pool) {
        return Some(Ran::Throttled);
    }
    None
}

/// True on a cluster node whose share of the function's `reservedConcurrency` is 0 (fewer
/// than there are nodes): a call no other node took is throttled at once instead of waiting
/// for a slot that only a change of the nodes up could bring.
fn no_share_here(state: &AppState, pool: &FunctionPool) -> bool {
    state.peers.is_some() && pool.share() == 0
}

/// Offers an invocation to the other nodes in turn; `None` when none took it (or there is no
/// cluster).
async fn offer_invoke<T>(
    state: &AppState,
    function: &str,
    headers: &HeaderMap,
    payload: &Bytes,
    timeout: Duration,
    only_success: bool,
) -> Option<Ran<T>> {
    let peers = state.peers.as_ref()?;
    let token = &state.credentials.secret_access_key;
    for peer in peers.list() {
        match forward::invoke(&peer, function, headers, payload.clone(), token, timeout).await {
            Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => continue,
            Ok(answer) if only_success && answer.status != StatusCode::OK => return None,
            Ok(answer) => return Some(Ran::Peer(answer)),
            Err(ForwardError::Unreachable(e)) => {
                tracing::debug!(%peer, error = %e, "cannot forward a call there");
            }
            Err(ForwardError::Lost(e)) => return Some(Ran::PeerLost(e)),
        }
    }
    None
}

/// Offers a web request to the other nodes in turn; `None` when none took it (or there is no
/// cluster).
async fn offer_web<T>(
    state: &AppState,
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
    client: SocketAddr,
    timeout: Duration,
) -> Option<Ran<T>> {
    let peers = state.peers.as_ref()?;
    let token = &state.credentials.secret_access_key;
    for peer in peers.list() {
        let sent = forward::web(
            &peer,
            method,
            target,
            headers,
            body.clone(),
            client,
            token,
            timeout,
        )
        .await;
        match sent {
            Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => continue,
            Ok(answer) => return Some(Ran::Peer(answer)),
            Err(ForwardError::Unreachable(e)) => {
                tracing::debug!(%peer, error = %e, "cannot forward a web request there");
            }
            Err(ForwardError::Lost(e)) => {
                tracing::warn!(%peer, error = %e, "a forwarded web request was lost");
                return Some(Ran::PeerLost(e));
            }
        }
    }
    None
}
