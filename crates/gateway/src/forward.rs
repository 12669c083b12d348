//! Forwarding a synchronous invocation to another node of the cluster when this node has no
//! free instance for the function. The receiving node sees `X-Tusk-Forwarded` and runs the
//! call only if it has a free slot at once (else 429 right away), and never forwards it on;
//! when no node takes it, the call waits in this node's own queue as on a single node.
//!
//! Requests to `php-8x-fpm` web apps are forwarded as they came (method, path, headers, body)
//! to the other node's own route, with the cluster-wide admin token in `X-Tusk-Forward-Token`
//! (the app may use `Authorization` itself) and the client's address in
//! `X-Tusk-Forwarded-For`; the receiving node trusts and strips both, so PHP sees neither.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

pub const FORWARDED_HEADER: &str = "x-tusk-forwarded";
/// A forwarded web request: the cluster-wide admin token.
pub const FORWARD_TOKEN_HEADER: &str = "x-tusk-forward-token";
/// A forwarded web request: the client's address as the first node saw it.
pub const FORWARDED_FOR_HEADER: &str = "x-tusk-forwarded-for";

/// Most of a forwarded answer the node holds: a web response's cap plus room for its headers.
const MAX_FORWARDED_BODY: usize = tusk_instance::MAX_WEB_RESPONSE_BYTES + 1024 * 1024;

/// Headers that describe one connection rather than the request or response (and the length,
/// which the body sets again): the same rule as for apps' own responses.
fn hop_by_hop(name: &http::HeaderName) -> bool {
    tusk_fastcgi::is_framing_header(name.as_str())
}

fn forwarding_header(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    name == FORWARDED_HEADER || name == FORWARD_TOKEN_HEADER || name == FORWARDED_FOR_HEADER
}

/// Whether `headers` carry a web request another node forwarded (with the right token); the
/// forwarding headers are removed either way, so a client cannot smuggle them to PHP.
pub fn take_web_forwarding(
    headers: &mut HeaderMap,
    token: &str,
) -> Option<Option<std::net::SocketAddr>> {
    let given = headers.remove(FORWARD_TOKEN_HEADER);
    let client = headers.remove(FORWARDED_FOR_HEADER);
    headers.remove(FORWARDED_HEADER);
    let given = given?;
    if token.is_empty() || !ct_eq(given.as_bytes(), token.as_bytes()) {
        return None;
    }
    Some(client.and_then(|c| c.to_str().ok()?.parse().ok()))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sends a web request as it came to `peer`'s own route; the answer comes back whole.
#[allow(clippy::too_many_arguments)]
pub async fn web(
    peer: &str,
    method: &http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    client: std::net::SocketAddr,
    token: &str,
    timeout: Duration,
) -> Result<Forwarded, ForwardError> {
    let (mut sender, authority) = connect(peer).await?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path_and_query)
        .header(FORWARD_TOKEN_HEADER, token)
        .header(FORWARDED_FOR_HEADER, client.to_string());
    for (name, value) in headers {
        if !hop_by_hop(name) && !forwarding_header(name) {
            request = request.header(name, value.clone());
        }
    }
    if !headers.contains_key(http::header::HOST) {
        request = request.header(http::header::HOST, authority.as_str());
    }
    let keep = |name: &http::HeaderName| !hop_by_hop(name) && name != http::header::DATE;
    send(&mut sender, request, body, peer, timeout, keep).await
}

/// Headers of the caller's request the other node needs.
const PASSED: [&str; 3] = ["x-amz-log-type", "x-amz-client-context", "content-type"];
/// Headers of the other node's answer the caller gets.
const RETURNED: [&str; 6] = [
    "content-type",
    "x-amz-executed-version",
    "x-amzn-requestid",
    "x-amz-function-error",
    "x-amz-log-result",
    "retry-after",
];

pub enum ForwardError {
    /// The node could not be reached: nothing ran there.
    Unreachable(String),
    /// The node went away with the call: it may or may not have run.
    Lost(String),
}

pub struct Forwarded {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// POSTs the invocation to `peer` (a base URL such as `http://10.0.0.2:8080`).
pub async fn invoke(
    peer: &str,
    function: &str,
    headers: &HeaderMap,
    body: Bytes,
    token: &str,
    timeout: Duration,
) -> Result<Forwarded, ForwardError> {
    let (mut sender, authority) = connect(peer).await?;
    let mut request = Request::post(format!("/2015-03-31/functions/{function}/invocations"))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(FORWARDED_HEADER, "1");
    for name in PASSED {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.clone());
        }
    }
    let keep = |name: &http::HeaderName| RETURNED.contains(&name.as_str());
    send(&mut sender, request, body, peer, timeout, keep).await
}

/// Sends the request and collects the whole answer, with the headers `keep` lets through.
async fn send(
    sender: &mut Sender,
    request: http::request::Builder,
    body: Bytes,
    peer: &str,
    timeout: Duration,
    keep: impl Fn(&http::HeaderName) -> bool,
) -> Result<Forwarded, ForwardError> {
    let request = request
        .body(Full::new(body))
        .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ForwardError::Lost(e.to_string()))?;
        let (parts, body) = response.into_parts();
        // A peer never sends more than a web response may hold; stop reading a bigger one.
        let body = http_body_util::Limited::new(body, MAX_FORWARDED_BODY)
            .collect()
            .await
            .map_err(|e| ForwardError::Lost(e.to_string()))?
            .to_bytes();
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if keep(name) {
                headers.append(name, value.clone());
            }
        }
        headers.insert("x-tusk-served-by", header_value(peer));
        Ok(Forwarded {
            status: parts.status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ForwardError::Lost("no answer in time".into())),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One HTTP/1.1 connection to `peer`; `Unreachable` when nothing could be sent there.
async fn connect(peer: &str) -> Result<(Sender, String), ForwardError> {
    let authority = peer
        .strip_prefix("http://")
        .unwrap_or(peer)
        .trim_end_matches('/')
        .to_string();
    let connect = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority.clone()),
    )
    .await;
    let stream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ForwardError::Unreachable(e.to_string())),
        Err(_) => return Err(ForwardError::Unreachable("connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, authority))
}

/// The version of `function` that `peer` serves (`None` when it serves none).
async fn served_version(
    peer: &str,
    function: &str,
    token: &str,
) -> Result<Option<u64>, ForwardError> {
    let (mut sender, authority) = connect(peer).await?;
    let request = Request::get(format!("/_tusk/functions/{function}"))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ForwardError::Lost(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Ok(None);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ForwardError::Lost(e.to_string()))?
            .to_bytes();
        let info: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ForwardError::Lost(e.to_string()))?;
        Ok(info.get("version").and_then(|v| v.as_u64()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err(ForwardError::Lost("no answer in time".into())))
}

/// Waits until every reachable peer serves `version` (or newer) of `function`, for at most
/// `patience`; returns the peers that still do not.
pub async fn wait_for_version(
    peers: Vec<String>,
    function: &str,
    version: u64,
    token: &str,
    patience: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + patience;
    let waits = peers.into_iter().map(|peer| async move {
        loop {
            match served_version(&peer, function, token).await {
                Ok(Some(v)) if v >= version => return None,
                // Gone since it last announced itself: it loads the registry when it is back.
                Err(ForwardError::Unreachable(_)) => return None,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(peer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    futures_util::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("peer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_are_trusted_only_with_the_token_and_always_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(FORWARD_TOKEN_HEADER, HeaderValue::from_static("s3cret"));
        headers.insert(
            FORWARDED_FOR_HEADER,
            HeaderValue::from_static("10.1.2.3:4567"),
        );
        headers.insert("cookie", HeaderValue::from_static("a=1"));
        assert_eq!(
            take_web_forwarding(&mut headers, "s3cret"),
            Some(Some("10.1.2.3:4567".parse().unwrap()))
        );
        assert_eq!(headers.len(), 1);

        let mut forged = HeaderMap::new();
        forged.insert(FORWARD_TOKEN_HEADER, HeaderValue::from_static("guess"));
        forged.insert(
            FORWARDED_FOR_HEADER,
            HeaderValue::from_static("10.1.2.3:4567"),
        );
        forged.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
        assert_eq!(take_web_forwarding(&mut forged, "s3cret"), None);
        assert!(forged.is_empty());
        assert_eq!(take_web_forwarding(&mut HeaderMap::new(), "s3cret"), None);
    }

    /// A peer's answer is re-framed: its framing headers never reach the client, and the body
    /// is what the peer's own framing delimited.
    #[tokio::test]
    async fn forwarded_answers_lose_their_framing_headers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\
                  Keep-Alive: timeout=99\r\nUpgrade: h2c\r\nTrailer: x\r\n\
                  Proxy-Connection: keep-alive\r\nX-App: 1\r\n\r\nhelloHTTP/1.1 200 OK\r\n",
            )
            .await
            .unwrap();
        });
        let answer = web(
            &peer,
            &http::Method::GET,
            "/",
            &HeaderMap::new(),
            Bytes::new(),
            "127.0.0.1:1".parse().unwrap(),
            "token",
            Duration::from_secs(5),
        )
        .await;
        let Ok(answer) = answer else {
            panic!("the fake peer was not reached");
        };
        assert_eq!(&answer.body[..], b"hello");
        let mut names: Vec<&str> = answer.headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["x-app", "x-tusk-served-by"]);
    }
}
