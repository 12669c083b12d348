//! End-to-end tests against a real `php-cgi -b` worker.

mod common;

use std::time::Duration;

use common::{get, kv, Listen, PhpCgi, Req};
use tusk_fastcgi::{parse_cgi_response, CgiResponse, Connection, FastCgiError, RawResponse};

async fn call(php: &PhpCgi, conn: &mut Connection, script: &str, req: Req<'_>) -> CgiResponse {
    let raw = call_raw(php, conn, script, req).await;
    parse_cgi_response(raw.stdout).unwrap()
}

async fn call_raw(php: &PhpCgi, conn: &mut Connection, script: &str, req: Req<'_>) -> RawResponse {
    let params = php.params(script, &req);
    let raw = conn.request(&params, req.body).await.unwrap();
    assert_eq!(raw.app_status, 0);
    raw
}

#[tokio::test]
async fn get_with_query_string_and_headers() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let resp = call(
        &php,
        &mut conn,
        "info.php",
        Req {
            uri: "/info.php?a=1&b[]=x&b[]=y&c=%20sp",
            headers: &[("Host", "example.test"), ("X-Custom", "yes")],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain;charset=UTF-8")
    );
    let kv = kv(&resp.body);
    assert_eq!(get(&kv, "sapi"), "cgi-fcgi");
    assert_eq!(get(&kv, "method"), "GET");
    assert_eq!(get(&kv, "uri"), "/info.php?a=1&b[]=x&b[]=y&c=%20sp");
    assert_eq!(get(&kv, "query"), "a=1&b[]=x&b[]=y&c=%20sp");
    assert_eq!(get(&kv, "get"), r#"{"a":"1","b":["x","y"],"c":" sp"}"#);
    assert_eq!(get(&kv, "script_name"), "/info.php");
    assert_eq!(get(&kv, "host"), "example.test");
    assert_eq!(get(&kv, "x_custom"), "yes");
    assert_eq!(get(&kv, "remote_addr"), "127.0.0.1");
    assert_eq!(get(&kv, "server_port"), "8080");
    assert_eq!(get(&kv, "pid"), php.pid().to_string());
}

#[tokio::test]
async fn post_body_via_php_input() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let body = br#"{"hello":"world","bin":"\u0000"}"#;
    let resp = call(
        &php,
        &mut conn,
        "input.php",
        Req {
            method: "POST",
            content_type: Some("application/json"),
            body,
            ..Req::default()
        },
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.body[..], body);
}

#[tokio::test]
async fn large_binary_post_body_round_trips() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    // 3 MB: many STDIN records, written concurrently with reading the reply.
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(7) % 256) as u8)
        .collect();
    for _ in 0..2 {
        let resp = call(
            &php,
            &mut conn,
            "input.php",
            Req {
                method: "PUT",
                content_type: Some("application/octet-stream"),
                body: &body,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(resp.body.len(), body.len());
        assert!(resp.body == body);
        assert!(conn.is_reusable());
    }
}

#[tokio::test]
async fn urlencoded_form_fills_post() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let resp = call(
        &php,
        &mut conn,
        "form.php",
        Req {
            method: "POST",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"name=Jo+Doe&list%5B%5D=a&list%5B%5D=b&empty=&amp=%26",
            ..Req::default()
        },
    )
    .await;
    let kv = kv(&resp.body);
    assert_eq!(
        get(&kv, "post"),
        r#"{"name":"Jo Doe","list":["a","b"],"empty":"","amp":"&"}"#
    );
    assert_eq!(get(&kv, "type"), "application/x-www-form-urlencoded");
}

#[tokio::test]
async fn multipart_upload_with_binary_file() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    // Every byte value, CRLFs and boundary-like dashes included.
    let file: Vec<u8> = (0..100_000u32)
        .map(|i| (i % 256) as u8)
        .chain(*b"\r\n--not-the-boundary\r\n")
        .collect();
    let boundary = "----tuskBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue 1\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");

    let resp = call(
        &php,
        &mut conn,
        "upload.php",
        Req {
            method: "POST",
            content_type: Some(&content_type),
            body: &body,
            ..Req::default()
        },
    )
    .await;
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let sep = b"---\n";
    let at = resp
        .body
        .windows(sep.len())
        .position(|w| w == sep)
        .expect("separator");
    let kv = kv(&resp.body[..at]);
    assert_eq!(get(&kv, "name"), "blob.bin");
    assert_eq!(get(&kv, "type"), "application/octet-stream");
    assert_eq!(get(&kv, "size"), file.len().to_string());
    assert_eq!(get(&kv, "error"), "0");
    assert_eq!(get(&kv, "field"), "value 1");
    assert!(resp.body[at + sep.len()..] == file[..]);
}

#[tokio::test]
async fn status_from_http_response_code_and_status_header() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let resp = call(&php, &mut conn, "status.php", Req::default()).await;
    assert_eq!(resp.status, 404);
    assert_eq!(&resp.body[..], b"status body");
    assert!(resp.header("Status").is_none());

    let resp = call(
        &php,
        &mut conn,
        "status.php",
        Req {
            uri: "/status.php?mode=header",
            ..Req::default()
        },
    )
    .await;
    assert_eq!(resp.status, 418);
}

#[tokio::test]
async fn multiple_set_cookie_headers_are_kept() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let resp = call(&php, &mut conn, "cookies.php", Req::default()).await;
    let cookies: Vec<&str> = resp.headers_all("set-cookie").collect();
    assert_eq!(cookies, vec!["a=1", "b=2; path=/p; HttpOnly", "c=3"]);
}

#[tokio::test]
async fn location_header_gives_302() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let resp = call(&php, &mut conn, "redirect.php", Req::default()).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("/x"));
}

#[tokio::test]
async fn ten_megabyte_binary_response() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    for _ in 0..3 {
        let resp = call(&php, &mut conn, "big.php", Req::default()).await;
        assert_eq!(
            resp.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(resp.body.len(), 10 * 1024 * 1024);
        assert!(resp
            .body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 256) as u8));
    }
}

#[tokio::test]
async fn error_log_arrives_on_fastcgi_stderr() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let raw = call_raw(&php, &mut conn, "stderr.php", Req::default()).await;
    let stderr = String::from_utf8_lossy(&raw.stderr);
    assert!(stderr.contains("elog-marker"), "stderr: {stderr:?}");
    // php://stderr is the process's fd 2, not the FastCGI stream.
    assert!(!stderr.contains("php-stderr-marker"), "stderr: {stderr:?}");
    let resp = parse_cgi_response(raw.stdout).unwrap();
    assert_eq!(&resp.body[..], b"ok");
    let process_stderr = std::fs::read_to_string(&php.stderr_log).unwrap();
    assert!(
        process_stderr.contains("php-stderr-marker"),
        "{process_stderr:?}"
    );
}

#[tokio::test]
async fn thousand_requests_on_one_connection_same_worker() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let pid = php.pid().to_string();
    for i in 0..1000 {
        let uri = format!("/info.php?i={i}");
        let resp = call(
            &php,
            &mut conn,
            "info.php",
            Req {
                uri: &uri,
                ..Req::default()
            },
        )
        .await;
        let kv = kv(&resp.body);
        assert_eq!(
            get(&kv, "pid"),
            pid,
            "request {i} served by another process"
        );
        assert_eq!(get(&kv, "get"), format!(r#"{{"i":"{i}"}}"#));
    }
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn unix_socket_listener() {
    let Some(php) = PhpCgi::spawn_unix() else {
        return;
    };
    let Listen::Unix(path) = &php.listen else {
        unreachable!()
    };
    let mut conn = php.connect().await;
    assert!(path.exists());
    let pid = php.pid().to_string();
    for i in 0..100 {
        let uri = format!("/info.php?n={i}");
        let resp = call(
            &php,
            &mut conn,
            "info.php",
            Req {
                uri: &uri,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(get(&kv(&resp.body), "pid"), pid);
    }
    let resp = call(
        &php,
        &mut conn,
        "input.php",
        Req {
            method: "POST",
            body: b"over unix",
            ..Req::default()
        },
    )
    .await;
    assert_eq!(&resp.body[..], b"over unix");
}

#[tokio::test]
async fn worker_killed_mid_request_is_closed_early() {
    let Some(mut php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    // Proves the connection works, then the next request hangs in sleep().
    call(&php, &mut conn, "hello.php", Req::default()).await;
    let params = php.params("sleep.php", &Req::default());
    let pending = conn.request(&params, b"");
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        php.kill();
    };
    let (result, ()) = tokio::join!(pending, killer);
    assert!(
        matches!(result, Err(FastCgiError::ClosedEarly)),
        "{result:?}"
    );
    assert!(!conn.is_reusable());
    assert!(!php.is_running());
}

#[tokio::test]
async fn sequential_connections_are_served_after_a_close() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    // php-cgi has one process: it must go back to accept() after we hang up.
    for _ in 0..5 {
        let mut conn = php.connect().await;
        let resp = call(&php, &mut conn, "hello.php", Req::default()).await;
        assert_eq!(&resp.body[..], b"Hello, World!");
    }
}

#[tokio::test]
async fn unread_large_body_does_not_break_keep_alive() {
    let Some(php) = PhpCgi::spawn_tcp() else {
        return;
    };
    let mut conn = php.connect().await;
    let body = vec![b'q'; 2_000_000];
    for _ in 0..3 {
        // hello.php never reads its body; PHP drains it, or we reconnect.
        let resp = call(
            &php,
            &mut conn,
            "hello.php",
            Req {
                method: "POST",
                content_type: Some("application/octet-stream"),
                body: &body,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(&resp.body[..], b"Hello, World!");
    }
    let resp = call(&php, &mut conn, "hello.php", Req::default()).await;
    assert_eq!(&resp.body[..], b"Hello, World!");
}
