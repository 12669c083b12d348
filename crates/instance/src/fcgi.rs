//! `php-8x-fpm` instances: one `php-cgi` worker per instance, reached over FastCGI on a Unix
//! socket with one kept-alive connection (see docs/decisions.md for php-cgi vs php-fpm).

use crate::process::{self, Process};
use crate::{ExitInfo, LaunchSpec, LogSink, StartError};
use bytes::Bytes;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tusk_fastcgi::{parse_cgi_response, CgiResponse, Connection, FastCgiError, Params};
use tusk_sandbox::InstanceSandbox;

#[derive(Debug, thiserror::Error)]
pub enum FcgiFailure {
    #[error("timed out")]
    Timeout,
    #[error("the PHP worker exited ({0})")]
    Exited(ExitInfo),
    #[error("FastCGI error: {0}")]
    Protocol(String),
}

/// What the PHP worker answered to one request. The CGI response is parsed here, next to the
/// exchange, so nothing above handles raw stdout; a malformed one is a typed error (the
/// gateway answers 502 and logs the reason), not a failed exchange: the worker stays usable.
pub struct WebReply {
    pub response: Result<CgiResponse, FastCgiError>,
    /// PHP's stderr for this request (its log messages).
    pub stderr: Bytes,
}

/// Most a web response (headers, body and PHP's stderr) may take in the node's memory:
/// Lambda's limit for streamed responses. The reader stops at the cap, the request fails
/// (502) and the worker is killed, so its half-sent output never reaches the next request.
pub const MAX_WEB_RESPONSE_BYTES: usize = 20 * 1024 * 1024;

pub(crate) struct FcgiWorker {
    socket: PathBuf,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

impl Drop for FcgiWorker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl FcgiWorker {
    pub(crate) async fn spawn(
        spec: &Arc<LaunchSpec>,
        id: &str,
        sink: Arc<dyn LogSink>,
        sandbox: Arc<InstanceSandbox>,
    ) -> Result<(FcgiWorker, Process), StartError> {
        let socket = spec.run_dir.join(format!("{id}.sock"));
        // php-cgi serves FastCGI on a listening socket handed over as its stdin (the classic
        // spawn-fcgi contract): no port to pick, no race between bind and connect, and no
        // path to expose inside the sandbox (only Tusk ever connects to it).
        let listener =
            std::os::unix::net::UnixListener::bind(&socket).map_err(StartError::Setup)?;
        let for_build = spec.clone();
        let instance_env = process::instance_env(spec, id);
        let build = move |_: &()| {
            let spec = for_build;
            let mut cmd = tokio::process::Command::new(&spec.php_cgi);
            cmd.args([
                "-d",
                "opcache.validate_timestamps=0",
                "-d",
                "expose_php=0",
                "-d",
                "cgi.fix_pathinfo=0",
            ]);
            cmd.env_clear()
                .envs(process::base_env(&spec))
                .envs(instance_env)
                .env("PHP_FCGI_CHILDREN", "0")
                .env("PHP_FCGI_MAX_REQUESTS", max_requests(spec.max_invocations))
                .current_dir(&spec.code_dir)
                .stdin(Stdio::from(OwnedFd::from(listener)));
            Ok(cmd)
        };
        let spawned = process::spawn(spec, sink, sandbox, &spec.php_cgi, || Ok(()), build).await;
        let process = match spawned {
            Ok(((), process)) => process,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                return Err(e);
            }
        };
        let setup =
            |e: tusk_fastcgi::FastCgiError| StartError::Setup(std::io::Error::other(e.to_string()));
        let mut conn = match Connection::connect_unix(&socket).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                return Err(setup(e));
            }
        };
        conn.set_max_response_size(Some(MAX_WEB_RESPONSE_BYTES));
        // The connect completes from the listen backlog at once; php-cgi answers FCGI_GET_VALUES
        // only once PHP has started. Waiting for it keeps the instance "starting" until it can
        // serve, so the pool's limit on parallel starts holds (a burst no longer starts a
        // worker per waiting request) and the first request does not pay for PHP's start.
        let ready = tokio::select! {
            r = conn.get_values(&["FCGI_MPXS_CONNS"]) => r.map(|_| ()).map_err(setup),
            info = process.exited() => Err(StartError::Exited(info)),
            _ = tokio::time::sleep(crate::INIT_TIMEOUT) => Err(StartError::InitTimeout),
        };
        if let Err(e) = ready {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
        Ok((
            FcgiWorker {
                socket,
                conn: tokio::sync::Mutex::new(Some(conn)),
            },
            process,
        ))
    }

    pub(crate) async fn request(
        &self,
        params: &Params,
        body: &[u8],
        process: &Process,
        timeout: Duration,
    ) -> Result<WebReply, FcgiFailure> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let mut conn = Connection::connect_unix(&self.socket)
                .await
                .map_err(|e| FcgiFailure::Protocol(e.to_string()))?;
            conn.set_max_response_size(Some(MAX_WEB_RESPONSE_BYTES));
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(FcgiFailure::Protocol("no connection".into()));
        };
        let result = tokio::select! {
            // A response that is complete wins over the worker exiting right after it
            // (max requests reached).
            biased;
            r = conn.request(params, body) => r.map_err(|e| FcgiFailure::Protocol(e.to_string())),
            info = process.exited() => Err(FcgiFailure::Exited(info)),
            _ = tokio::time::sleep(timeout) => Err(FcgiFailure::Timeout),
        };
        if result.is_err() {
            *guard = None;
            // The worker may have died while we read: report that rather than a broken pipe.
            if let (Err(FcgiFailure::Protocol(_)), Some(info)) = (&result, process.exit_info()) {
                return Err(FcgiFailure::Exited(info));
            }
        }
        result.map(|raw| WebReply {
            response: parse_cgi_response(raw.stdout),
            stderr: raw.stderr,
        })
    }
}

/// php-cgi recycles itself after PHP_FCGI_MAX_REQUESTS; the pool replaces exhausted instances
/// itself, so php-cgi's own limit only has to stay out of the way.
fn max_requests(max_invocations: u32) -> String {
    if max_invocations == 0 {
        "2000000000".to_string()
    } else {
        max_invocations.to_string()
    }
}
