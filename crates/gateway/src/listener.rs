//! The node's accept loop: hyper's HTTP/1.1 server with the limits `axum::serve` lacks.
//!
//! - A connection must deliver a request head within the header read timeout (the first one
//!   after accept, and each next one from its first byte on), else it is closed: slow-loris.
//! - A kept-alive connection with no request for the keep-alive timeout is closed.
//! - At most `max_connections` connections are served. Over the cap a few more (`RESERVE`)
//!   are accepted to answer `/_tusk/health` (and readiness) once, then closed; every other
//!   request there gets 503. Beyond those the connection is closed at once. So health checks
//!   keep working while the node is flooded, and the flood costs no more than the cap.
//! - On SIGTERM the loop stops accepting, asks every connection to finish its request in
//!   flight and close, and returns once all are closed (as `axum::serve` did).

use axum::extract::ConnectInfo;
use axum::Router;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// Connections over the cap that may still ask for `/_tusk/health`.
pub const RESERVE: usize = 32;
/// How long an over-cap connection has to send its one request.
const RESERVE_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener's limits (`tusk serve --header-read-timeout`, `--keepalive-timeout`,
/// `--max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// Where a connection is between requests; set by the service and the reader.
const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// One connection's phase and when it began, shared by its reader, its service and its
/// watchdog. Milliseconds since `epoch` keep it to two atomics.
struct Clock {
    epoch: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
        }
    }

    fn set(&self, phase: u8) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.since_ms.store(ms, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// When the current phase runs out; `None` while a request is being handled (its body
    /// and the app have their own timeouts).
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Acquire) {
            HEAD => limits.header_read_timeout,
            IDLE => limits.keepalive_timeout,
            _ => return None,
        };
        let since = Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        Some(self.epoch + since + limit)
    }
}

/// The TCP stream, noting when a kept-alive connection's next request starts arriving.
struct Watched {
    inner: tokio::net::TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.clock.phase.load(Ordering::Relaxed) == IDLE {
            // The first byte of the next request: its head now has the header timeout.
            self.clock.set(HEAD);
        }
        r
    }
}

impl Watched {
    /// A response still being written to a slow reader is no idle connection: the
    /// keep-alive time counts from the last byte written.
    fn wrote(&self, r: &Poll<std::io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0)
            && self.clock.phase.load(Ordering::Relaxed) == IDLE
        {
            self.clock.set(IDLE);
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Most connections `--max-connections` may allow (the drain counts them as semaphore permits).
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Serves `router` on `listener` until `shutdown` resolves, then drains the connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(RESERVE));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut emfile_logged: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors: wait a little instead of spinning; connections
                    // closing free descriptors. Other errors (a client gone before accept)
                    // concern that client only.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        if emfile_logged.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!(error = %e, "cannot accept connections: out of file descriptors; raise the hard open file limit (ulimit -Hn) or lower --max-connections");
                            emfile_logged = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let permit = slots.clone().try_acquire_owned();
        if permit.is_err() && last_full.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_full = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "the connection limit is reached: new connections get health checks only (raise --max-connections if these clients are legitimate)"
            );
        }
        if let Ok(permit) = permit {
            let router = router.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                serve_connection(stream, remote, router, limits, stop).await;
                drop(permit);
            });
        } else if let Ok(permit) = reserve.clone().try_acquire_owned() {
            let router = router.clone();
            tokio::spawn(async move {
                serve_over_cap(stream, remote, router).await;
                drop(permit);
            });
        } else {
            // Dropping the stream closes it: the cap holds even against a flood.
            drop(stream);
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is closed: having them all back means done.
    let _all = slots.acquire_many(limits.max_connections as u32).await;
    let _reserve = reserve.acquire_many(RESERVE as u32).await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(Clock::new());
    let io = Watched {
        inner: stream,
        clock: clock.clone(),
    };
    let on_request = clock.clone();
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            on_request.set(BUSY);
            req.extensions_mut().insert(ConnectInfo(remote));
            let mut router = router.clone();
            let clock = on_request.clone();
            async move {
                let r =
                    tower_service::Service::call(&mut router, req.map(axum::body::Body::new)).await;
                // The response is written from here on; the connection then waits for the next.
                clock.set(IDLE);
                r
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = clock.deadline(&limits);
        let watchdog = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watchdog => {
                // The phase may have moved on while we slept: only a deadline still passed
                // closes the connection.
                if clock.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
            // Re-read the deadline when a request starts or ends.
            _ = tokio::time::sleep(Duration::from_secs(1)), if deadline.is_none() => {}
        }
    }
}

/// A connection over the cap: one request, health and readiness only, then closed.
async fn serve_over_cap(stream: tokio::net::TcpStream, remote: SocketAddr, router: Router) {
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let mut router = router.clone();
            async move {
                if req.uri().path().starts_with("/_tusk/health") {
                    req.extensions_mut().insert(ConnectInfo(remote));
                    return tower_service::Service::call(
                        &mut router,
                        req.map(axum::body::Body::new),
                    )
                    .await;
                }
                let mut r = crate::respond::admin_error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "the node is at its connection limit (--max-connections); retry shortly",
                );
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                Ok(r)
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    // The whole exchange, head included, gets a few seconds: these slots must come back.
    let _ = tokio::time::timeout(RESERVE_HEAD_TIMEOUT, conn).await;
}

/// Raises the soft open-file limit to the hard one: every connection and instance pipe is a
/// descriptor, and distributions start services with a soft limit of 1024. Returns the soft
/// limit now in force.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = before,
                to = raised.rlim_cur,
                "raised the open file limit (RLIMIT_NOFILE) to its hard limit"
            );
            return Some(raised.rlim_cur);
        }
        tracing::warn!(
            soft = before,
            hard = lim.rlim_max,
            "cannot raise the open file limit"
        );
    }
    Some(before)
}

/// The connection cap when none is given: 10,000, or what the open-file limit leaves after
/// room for instances, logs and the databases.
pub fn default_max_connections(nofile: Option<u64>) -> usize {
    const DEFAULT: usize = 10_000;
    match nofile {
        Some(n) => (n.saturating_sub(512) as usize).clamp(64, DEFAULT),
        None => DEFAULT,
    }
}
