//! `php-8x-fpm` web apps: static files straight from the package, everything else to the front
//! controller over FastCGI with the CGI parameters php-fpm behind nginx would give.

use crate::apigw::HttpResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use tusk_instance::{CgiResponse, LaunchSpec, Params};

pub struct WebRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body_len: usize,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub request_id: &'a str,
}

/// PHP's CGI response as the HTTP response to send (the one place CGI becomes HTTP). The
/// parser already refused bad names, control characters and statuses outside 200-599 and
/// dropped framing headers; a `HEAD` answer keeps the headers and drops the body.
pub fn cgi_response(cgi: CgiResponse, head: bool) -> HttpResponse {
    let mut headers = Vec::with_capacity(cgi.headers.len());
    for (n, v) in cgi.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.push((n, v));
        }
    }
    HttpResponse {
        status: StatusCode::from_u16(cgi.status).unwrap_or(StatusCode::OK),
        headers,
        body: if head { Bytes::new() } else { cgi.body },
    }
}

/// The document root as PHP sees it: under the instance's task root (`/var/task` when
/// sandboxed).
fn php_document_root(spec: &LaunchSpec) -> (PathBuf, String) {
    document_root_under(spec, &spec.task_root())
}

/// The front controller's directory is the document root (`public/index.php` → `public/`),
/// under `base`.
fn document_root_under(spec: &LaunchSpec, base: &Path) -> (PathBuf, String) {
    let handler = Path::new(&spec.handler);
    let script = handler
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index.php".into());
    // Only plain names: the node refuses absolute or `..` handlers at deploy, and a record
    // stored before that check must not move the document root out of the package either.
    let dir: PathBuf = handler
        .parent()
        .unwrap_or(Path::new(""))
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    (base.join(dir), script)
}

/// A static file read for serving, and its name (for the content type).
pub struct StaticFile {
    body: Bytes,
    name: PathBuf,
}

/// The file under the document root for `path`, when one exists, is not PHP source and could
/// be read by an instance: opened beneath the package root so no symlink leads out of the
/// package, a regular file, world-readable.
pub async fn static_file(spec: &LaunchSpec, path: &str) -> Option<StaticFile> {
    if path.ends_with('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let rel = Path::new(decoded.trim_start_matches('/'));
    // Only plain names: no `..`, no absolute parts, no hidden files.
    if rel.components().any(|c| match c {
        Component::Normal(n) => n.to_string_lossy().starts_with('.'),
        _ => true,
    }) {
        return None;
    }
    if rel
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("php"))
    {
        return None;
    }
    let (root, _) = document_root_under(spec, Path::new(""));
    let rel = root.join(rel);
    let code_dir = spec.code_dir.clone();
    // Open, check and read in one blocking task: one hop to the blocking pool per request.
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = beneath::open_file(&code_dir, &rel).ok()?;
        let mut body = Vec::new();
        file.read_to_end(&mut body).ok()?;
        Some(StaticFile {
            body: Bytes::from(body),
            name: rel,
        })
    })
    .await
    .ok()
    .flatten()
}

pub async fn serve_static(file: &StaticFile, method: &str, headers: &HeaderMap) -> HttpResponse {
    let mime = mime_guess::from_path(&file.name).first_or_octet_stream();
    let body = file.body.clone();
    let etag = format!("\"{:x}-{:x}\"", body.len(), fxhash(&body));
    let mut out = vec![(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(mime.as_ref())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    )];
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.push((http::header::ETAG, v));
    }
    let not_modified = headers
        .get(http::header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    HttpResponse {
        status: if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        },
        headers: out,
        body: if not_modified || method == "HEAD" {
            Bytes::new()
        } else {
            body
        },
    }
}

/// Opening files so that no path component, symlinks included, leads out of a directory.
mod beneath {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path};

    /// Opens `rel` under `root` read-only: a regular file, readable by others (what an
    /// instance, running as an unprivileged uid, could read too).
    pub fn open_file(root: &Path, rel: &Path) -> io::Result<std::fs::File> {
        let root_fd = open_dir(root)?;
        let fd = match openat2_beneath(&root_fd, rel) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk_nofollow(&root_fd, rel)?,
            other => other?,
        };
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o004 == 0 {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(file)
    }

    fn cstr(p: &[u8]) -> io::Result<CString> {
        CString::new(p).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn open_dir(root: &Path) -> io::Result<OwnedFd> {
        let path = cstr(root.as_os_str().as_bytes())?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        owned(fd)
    }

    /// `openat2` with RESOLVE_BENEATH: `..`, absolute symlinks and links leading out of
    /// `root` fail with EXDEV; magic links (/proc/self/fd/...) are refused too.
    fn openat2_beneath(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
        let path = cstr(rel.as_os_str().as_bytes())?;
        // SAFETY: `open_how` is plain data; all-zero is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: `path` and `how` live across the call; the size passed is `how`'s own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(fd as libc::c_int)
    }

    /// Kernels before 5.6: one component at a time, never following a symlink.
    fn walk_nofollow(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
        let parts: Vec<&std::ffi::OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
            })
            .collect::<io::Result<_>>()?;
        let Some((last, dirs)) = parts.split_last() else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let mut dir: Option<OwnedFd> = None;
        for name in dirs {
            let at = dir.as_ref().unwrap_or(root).as_raw_fd();
            let c = cstr(name.as_bytes())?;
            // SAFETY: `at` is an open directory fd and `c` a valid C string.
            let fd = unsafe {
                libc::openat(
                    at,
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            dir = Some(owned(fd)?);
        }
        let at = dir.as_ref().unwrap_or(root).as_raw_fd();
        let c = cstr(last.as_bytes())?;
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                at,
                c.as_ptr(),
                libc::O_RDONLY
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY,
            )
        };
        owned(fd)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::os::unix::fs::{symlink, PermissionsExt};

        fn tree() -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("pkg");
            std::fs::create_dir_all(root.join("public/css")).unwrap();
            std::fs::write(root.join("public/css/a.css"), "a").unwrap();
            std::fs::write(root.join("styles.css"), "s").unwrap();
            std::fs::write(dir.path().join("secret"), "host").unwrap();
            for f in ["public/css/a.css", "styles.css"] {
                std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
            symlink("../styles.css", root.join("public/in.css")).unwrap();
            symlink("../../secret", root.join("public/out")).unwrap();
            symlink("/", root.join("public/root")).unwrap();
            dir
        }

        #[test]
        fn openat2_stays_beneath_the_root() {
            let dir = tree();
            let root = dir.path().join("pkg");
            let fd = open_dir(&root).unwrap();
            assert!(open_file(&root, Path::new("public/css/a.css")).is_ok());
            assert!(open_file(&root, Path::new("public/in.css")).is_ok());
            for bad in [
                "public/out",
                "public/root/etc/passwd",
                "../secret",
                "public/css",
            ] {
                assert!(open_file(&root, Path::new(bad)).is_err(), "{bad}");
            }
            // The fallback never follows a link at all.
            assert!(walk_nofollow(&fd, Path::new("public/css/a.css")).is_ok());
            for bad in [
                "public/in.css",
                "public/out",
                "public/root/etc/passwd",
                "../secret",
            ] {
                assert!(walk_nofollow(&fd, Path::new(bad)).is_err(), "{bad}");
            }
        }

        #[test]
        fn only_world_readable_files_are_served() {
            let dir = tree();
            let root = dir.path().join("pkg");
            std::fs::set_permissions(
                root.join("styles.css"),
                std::fs::Permissions::from_mode(0o640),
            )
            .unwrap();
            assert!(open_file(&root, Path::new("styles.css")).is_err());
        }
    }
}

/// A cheap content hash for ETags (not security relevant).
fn fxhash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// `X-Custom-Header` → `X_CUSTOM_HEADER` (after `HTTP_`).
fn cgi_byte(b: u8) -> u8 {
    match b {
        b'-' => b'_',
        b => b.to_ascii_uppercase(),
    }
}

pub fn fastcgi_params(spec: &LaunchSpec, req: &WebRequest<'_>) -> Params {
    let (root, script) = php_document_root(spec);
    let root_s = root.display().to_string();
    // ~1 KB covers a typical request's params: one allocation instead of several doublings.
    let mut p = Params::with_capacity(1024);
    let request_uri = if req.raw_query.is_empty() {
        req.path.to_string()
    } else {
        format!("{}?{}", req.path, req.raw_query)
    };
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let server_name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let https = req
        .headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    p.push("GATEWAY_INTERFACE", "CGI/1.1");
    p.push("SERVER_SOFTWARE", "Tusk");
    p.push("SERVER_PROTOCOL", "HTTP/1.1");
    p.push("REQUEST_SCHEME", if https { "https" } else { "http" });
    if https {
        p.push("HTTPS", "on");
    }
    p.push("REQUEST_METHOD", req.method);
    p.push("REQUEST_URI", &request_uri);
    p.push("DOCUMENT_URI", format!("/{script}"));
    p.push("SCRIPT_NAME", format!("/{script}"));
    p.push("SCRIPT_FILENAME", format!("{root_s}/{script}"));
    p.push("DOCUMENT_ROOT", &root_s);
    p.push("PATH_INFO", "");
    p.push("QUERY_STRING", req.raw_query);
    p.push("REMOTE_ADDR", req.remote.ip().to_string());
    p.push("REMOTE_PORT", req.remote.port().to_string());
    p.push("SERVER_ADDR", req.local.ip().to_string());
    p.push("SERVER_PORT", req.local.port().to_string());
    p.push("SERVER_NAME", server_name);
    p.push("REDIRECT_STATUS", "200");
    p.push("LAMBDA_REQUEST_ID", req.request_id);
    if let Some(ct) = req.headers.get(http::header::CONTENT_TYPE) {
        p.push("CONTENT_TYPE", ct.as_bytes());
    } else {
        p.push("CONTENT_TYPE", "");
    }
    p.push("CONTENT_LENGTH", req.body_len.to_string());
    // `keys()` yields each name once, however many values it has.
    for name in req.headers.keys() {
        // httpoxy: a client-sent Proxy header must not become HTTP_PROXY.
        if name == "proxy"
            || name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
        {
            continue;
        }
        let sep: &[u8] = if name == http::header::COOKIE {
            b"; "
        } else {
            b", "
        };
        let mut cgi_name = [0u8; 128];
        let long_name;
        let cgi_name: &[u8] = if name.as_str().len() + 5 <= cgi_name.len() {
            cgi_name[..5].copy_from_slice(b"HTTP_");
            for (slot, b) in cgi_name[5..].iter_mut().zip(name.as_str().bytes()) {
                *slot = cgi_byte(b);
            }
            &cgi_name[..5 + name.as_str().len()]
        } else {
            long_name = b"HTTP_"
                .iter()
                .copied()
                .chain(name.as_str().bytes().map(cgi_byte))
                .collect::<Vec<u8>>();
            &long_name
        };
        let mut values = req.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            // Nearly every header comes once: no joined copy.
            (Some(only), None) => {
                p.push(cgi_name, only.as_bytes());
            }
            _ => {
                let mut value = Vec::new();
                for (i, v) in req.headers.get_all(name).iter().enumerate() {
                    if i > 0 {
                        value.extend_from_slice(sep);
                    }
                    value.extend_from_slice(v.as_bytes());
                }
                p.push(cgi_name, value);
            }
        }
    }
    p
}

#[cfg(test)]
mod cgi_tests {
    use super::*;

    fn cgi(status: u16, body: &'static str) -> CgiResponse {
        CgiResponse {
            status,
            headers: vec![
                ("Set-Cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
                ("X-App".into(), "yes".into()),
            ],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn a_cgi_answer_keeps_its_status_headers_in_order_and_body() {
        let r = cgi_response(cgi(404, "gone"), false);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let cookies: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n == http::header::SET_COOKIE)
            .map(|(_, v)| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.headers.len(), 3);
        assert_eq!(&r.body[..], b"gone");
    }

    #[test]
    fn a_head_answer_keeps_the_headers_and_drops_the_body() {
        let r = cgi_response(cgi(200, "body"), true);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers.len(), 3);
        assert!(r.body.is_empty());
    }
}
