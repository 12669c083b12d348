//! Test harness: spawns a real `php-cgi -b` (one process, no master) in a
//! temp document root, and builds the CGI params a front controller needs.
//!
//! Tests skip (with a message) when php-cgi is not installed, unless
//! TUSK_REQUIRE_PHP=1 is set, in which case they fail.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tusk_fastcgi::{Connection, Params};

/// PHP scripts every test server gets in its document root.
const SCRIPTS: &[(&str, &str)] = &[
    ("hello.php", r#"<?php echo "Hello, World!";"#),
    (
        "info.php",
        r#"<?php
header('Content-Type: text/plain');
$s = $_SERVER;
$out = [
    'pid' => getmypid(),
    'sapi' => PHP_SAPI,
    'method' => $s['REQUEST_METHOD'],
    'uri' => $s['REQUEST_URI'],
    'query' => $s['QUERY_STRING'],
    'get' => json_encode($_GET),
    'script_name' => $s['SCRIPT_NAME'],
    'php_self' => $s['PHP_SELF'],
    'host' => $s['HTTP_HOST'] ?? '',
    'x_custom' => $s['HTTP_X_CUSTOM'] ?? '',
    'remote_addr' => $s['REMOTE_ADDR'],
    'server_port' => $s['SERVER_PORT'],
];
foreach ($out as $k => $v) { echo $k, '=', $v, "\n"; }
"#,
    ),
    (
        "input.php",
        r#"<?php echo file_get_contents('php://input');"#,
    ),
    (
        "form.php",
        r#"<?php echo 'post=', json_encode($_POST), "\n", 'type=', $_SERVER['CONTENT_TYPE'], "\n";"#,
    ),
    (
        "upload.php",
        r#"<?php
$f = $_FILES['file'] ?? null;
if ($f === null) { http_response_code(400); echo "no file\n"; var_export($_FILES); exit; }
echo 'name=', $f['name'], "\n", 'type=', $f['type'], "\n", 'size=', $f['size'], "\n",
    'error=', $f['error'], "\n", 'field=', $_POST['field'] ?? '', "\n", "---\n";
readfile($f['tmp_name']);
"#,
    ),
    (
        "status.php",
        r#"<?php
if (($_GET['mode'] ?? '') === 'header') { header("Status: 418 I'm a teapot"); }
else { http_response_code(404); }
echo "status body";
"#,
    ),
    (
        "cookies.php",
        r#"<?php
setcookie('a', '1');
setcookie('b', '2', ['path' => '/p', 'httponly' => true]);
setcookie('c', '3');
echo "cookies";
"#,
    ),
    ("redirect.php", r#"<?php header('Location: /x');"#),
    (
        "big.php",
        r#"<?php
$block = '';
for ($i = 0; $i < 256; $i++) { $block .= chr($i); }
$mib = str_repeat($block, 4096);
header('Content-Type: application/octet-stream');
for ($i = 0; $i < 10; $i++) { echo $mib; }
"#,
    ),
    (
        "stderr.php",
        r#"<?php
error_log('elog-marker');
file_put_contents('php://stderr', "php-stderr-marker\n");
echo "ok";
"#,
    ),
    ("sleep.php", r#"<?php sleep(30); echo "woke";"#),
];

/// Where the FastCGI server listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running `php-cgi -b` child, killed on drop.
pub struct PhpCgi {
    child: Child,
    pub listen: Listen,
    pub root: TempDir,
    pub stderr_log: PathBuf,
}

/// Path of php-cgi (PHP_CGI overrides), or None when not installed.
pub fn php_cgi_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PHP_CGI") {
        return Some(PathBuf::from(p));
    }
    find_in_path("php-cgi")
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Prints why a test is skipped, or panics when PHP is required.
pub fn skip(what: &str) {
    if std::env::var_os("TUSK_REQUIRE_PHP").is_some_and(|v| v == "1") {
        panic!("{what} not found and TUSK_REQUIRE_PHP=1 (apt-get install php8.2-cgi php8.2-fpm)");
    }
    eprintln!("SKIPPED: {what} not found (apt-get install php8.2-cgi php8.2-fpm)");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the test scripts into a fresh document root.
pub fn docroot() -> TempDir {
    let root = tempfile::tempdir().unwrap();
    for (name, body) in SCRIPTS {
        fs::write(root.path().join(name), body).unwrap();
    }
    root
}

impl PhpCgi {
    pub fn spawn_tcp() -> Option<PhpCgi> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        PhpCgi::spawn(Listen::Tcp(addr), &[])
    }

    pub fn spawn_unix() -> Option<PhpCgi> {
        let root = docroot();
        let sock = root.path().join("php.sock");
        PhpCgi::spawn_in(root, Listen::Unix(sock), &[])
    }

    pub fn spawn(listen: Listen, extra_args: &[&str]) -> Option<PhpCgi> {
        PhpCgi::spawn_in(docroot(), listen, extra_args)
    }

    /// Spawns `php-cgi -n -b ADDR` with one process (no master) that never
    /// retires, stdout discarded and stderr captured to a file.
    pub fn spawn_in(root: TempDir, listen: Listen, extra_args: &[&str]) -> Option<PhpCgi> {
        let Some(bin) = php_cgi_binary() else {
            skip("php-cgi");
            return None;
        };
        let bind = match &listen {
            Listen::Tcp(addr) => addr.to_string(),
            Listen::Unix(path) => path.to_string_lossy().into_owned(),
        };
        let stderr_log = root.path().join("php-cgi.stderr");
        let child = Command::new(bin)
            .arg("-n")
            .args(extra_args)
            .arg("-b")
            .arg(&bind)
            .env("PHP_FCGI_CHILDREN", "0")
            .env("PHP_FCGI_MAX_REQUESTS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        Some(PhpCgi {
            child,
            listen,
            root,
            stderr_log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects, retrying while php-cgi starts up.
    pub async fn connect(&self) -> Connection {
        connect(&self.listen).await
    }

    pub fn params(&self, script: &str, req: &Req<'_>) -> Params {
        build_params(self.root.path(), script, req)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PhpCgi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Connects to `listen`, retrying for up to 10 s while the server starts.
pub async fn connect(listen: &Listen) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = match listen {
            Listen::Tcp(addr) => Connection::connect_tcp(*addr).await,
            Listen::Unix(path) => Connection::connect_unix(path).await,
        };
        match attempt {
            Ok(conn) => return conn,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot connect to {listen:?}: {e}"),
        }
    }
}

/// An HTTP request as the gateway would hand it over.
#[derive(Debug, Clone, Copy)]
pub struct Req<'a> {
    pub method: &'a str,
    /// Path plus optional `?query`.
    pub uri: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub headers: &'a [(&'a str, &'a str)],
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req {
            method: "GET",
            uri: "/",
            content_type: None,
            body: b"",
            headers: &[],
        }
    }
}

/// The CGI params a front controller needs (DESIGN.md section 5).
pub fn build_params(root: &Path, script: &str, req: &Req<'_>) -> Params {
    let (path, query) = req.uri.split_once('?').unwrap_or((req.uri, ""));
    let script_name = format!("/{script}");
    let mut p = Params::with_capacity(1024);
    p.push("GATEWAY_INTERFACE", "CGI/1.1")
        .push("SERVER_SOFTWARE", "tusk")
        .push("SERVER_PROTOCOL", "HTTP/1.1")
        .push("REQUEST_SCHEME", "http")
        .push("REQUEST_METHOD", req.method)
        .push("REQUEST_URI", req.uri)
        .push("DOCUMENT_URI", path)
        .push("QUERY_STRING", query)
        .push("DOCUMENT_ROOT", root.as_os_str().as_encoded_bytes())
        .push(
            "SCRIPT_FILENAME",
            root.join(script).as_os_str().as_encoded_bytes(),
        )
        .push("SCRIPT_NAME", &script_name)
        .push("PATH_INFO", "")
        .push("REMOTE_ADDR", "127.0.0.1")
        .push("REMOTE_PORT", "54321")
        .push("SERVER_ADDR", "127.0.0.1")
        .push("SERVER_PORT", "8080")
        .push("SERVER_NAME", "localhost")
        .push("REDIRECT_STATUS", "200")
        .push("CONTENT_LENGTH", req.body.len().to_string());
    if let Some(ct) = req.content_type {
        p.push("CONTENT_TYPE", ct);
    }
    for (name, value) in req.headers {
        let cgi_name = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        p.push(cgi_name, value);
    }
    p
}

/// Parses the `key=value` lines printed by info.php and friends.
pub fn kv(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn get<'a>(kv: &'a [(String, String)], key: &str) -> &'a str {
    kv.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {kv:?}"))
}
