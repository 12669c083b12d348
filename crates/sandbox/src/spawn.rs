//! Starting a process in fresh PID (and optionally network) namespaces.
//!
//! `unshare(CLONE_NEWPID)` does not move the caller; it decides the namespace of the caller's
//! *next children*, per thread. So each sandboxed spawn runs on a short-lived thread of its
//! own: it unshares, optionally brings up `lo` and binds sockets in the new network namespace
//! (a socket stays in the namespace it was created in), then forks. The child is PID 1 of its
//! namespace, and when it dies the kernel kills everything else in there.

use std::io;
use tokio::sync::oneshot;

/// Runs `job` on a new thread whose children start in a new PID namespace and, with
/// `new_net`, a new network namespace with `lo` up (in which `job` also runs).
pub(crate) fn in_new_namespaces<R: Send + 'static>(
    new_net: bool,
    job: impl FnOnce() -> io::Result<R> + Send + 'static,
) -> io::Result<oneshot::Receiver<io::Result<R>>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("tusk-sandbox-spawn".into())
        .spawn(move || {
            let result = enter(new_net).and_then(|()| job());
            let _ = tx.send(result);
        })?;
    Ok(rx)
}

fn enter(new_net: bool) -> io::Result<()> {
    let mut flags = libc::CLONE_NEWPID;
    if new_net {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare takes flags only. PID and network namespaces may be unshared by one
    // thread of a multi-threaded process; they affect this thread (and its children) only,
    // and the thread exits when the job is done.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if new_net {
        crate::net::loopback_up()?;
    }
    Ok(())
}

/// Blocks until the job ran (for synchronous callers such as the start-up self-test).
pub(crate) fn in_new_namespaces_blocking<R: Send + 'static>(
    new_net: bool,
    job: impl FnOnce() -> io::Result<R> + Send + 'static,
) -> io::Result<R> {
    // A plain join (not a tokio channel): callers may sit inside a runtime.
    std::thread::Builder::new()
        .name("tusk-sandbox-spawn".into())
        .spawn(move || enter(new_net).and_then(|()| job()))?
        .join()
        .map_err(|_| io::Error::other("the sandbox spawn thread died"))?
}
