//! `php-8x-fpm` web apps: static files straight from the package, everything else to the front
//! controller over FastCGI with the CGI parameters php-fpm behind nginx would give.

use crate::apigw::HttpResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use tusk_instance::{LaunchSpec, Params};

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

/// The front controller's directory is the document root (`public/index.php` → `public/`),
/// on the host (for static files).
pub fn document_root(spec: &LaunchSpec) -> (PathBuf, String) {
    document_root_under(spec, &spec.code_dir)
}

/// The document root as PHP sees it: under the instance's task root (`/var/task` when
/// sandboxed).
fn php_document_root(spec: &LaunchSpec) -> (PathBuf, String) {
    document_root_under(spec, &spec.task_root())
}

fn document_root_under(spec: &LaunchSpec, base: &Path) -> (PathBuf, String) {
    let handler = Path::new(&spec.handler);
    let script = handler
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index.php".into());
    let dir = handler.parent().unwrap_or(Path::new(""));
    (base.join(dir), script)
}

/// A file under the document root for `path`, when one exists and is not PHP source.
pub async fn static_file(spec: &LaunchSpec, path: &str) -> Option<PathBuf> {
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
    let (root, _) = document_root(spec);
    let full = root.join(rel);
    let meta = tokio::fs::metadata(&full).await.ok()?;
    meta.is_file().then_some(full)
}

pub async fn serve_static(path: &Path, method: &str, headers: &HeaderMap) -> HttpResponse {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let body = match tokio::fs::read(path).await {
        Ok(b) => Bytes::from(b),
        Err(_) => {
            return HttpResponse {
                status: StatusCode::NOT_FOUND,
                headers: vec![],
                body: Bytes::from_static(b"Not Found"),
            }
        }
    };
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
