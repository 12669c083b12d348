//! Round-trip latency of a hello-world request over one kept-alive
//! connection: php-cgi -b (TCP and Unix socket) vs php-fpm (pm=static, one
//! child), plus an in-process fake server to show the client's own cost.
//!
//! Ignored by default; run with
//! `cargo test --release -p tusk-fastcgi --test bench -- --ignored --nocapture --test-threads=1`

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_params, connect, docroot, find_in_path, free_port, Listen, PhpCgi, Req};
use tusk_fastcgi::{parse_cgi_response, record, Connection, Params};

const WARMUP: usize = 2_000;
/// Timed requests per scenario; TUSK_BENCH_ROUNDS overrides.
fn rounds() -> usize {
    std::env::var("TUSK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
/// The same PHP settings for both servers: no php.ini, opcache on.
const PHP_FLAGS: &[&str] = &["-d", "zend_extension=opcache.so", "-d", "opcache.enable=1"];

struct Stats {
    median: Duration,
    p90: Duration,
    p99: Duration,
    per_sec: f64,
}

async fn measure(conn: &mut Connection, params: &Params) -> Stats {
    for _ in 0..WARMUP {
        let raw = conn.request(params, b"").await.unwrap();
        assert_eq!(
            &parse_cgi_response(raw.stdout).unwrap().body[..],
            b"Hello, World!"
        );
    }
    let rounds = rounds();
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let raw = conn.request(params, b"").await.unwrap();
        std::hint::black_box(parse_cgi_response(raw.stdout).unwrap());
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    samples.sort();
    Stats {
        median: samples[rounds / 2],
        p90: samples[rounds * 9 / 10],
        p99: samples[rounds * 99 / 100],
        per_sec: rounds as f64 / total.as_secs_f64(),
    }
}

fn report(name: &str, runtime: &str, s: &Stats) {
    println!(
        "{name:<28} {runtime:<13} median {:>6.1} µs  p90 {:>6.1} µs  p99 {:>6.1} µs  {:>7.0} req/s",
        s.median.as_secs_f64() * 1e6,
        s.p90.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.per_sec
    );
}

/// Runs `f` once on a current-thread runtime and once on a multi-thread one
/// (what the gateway uses, where wakeups can cross threads).
fn on_both_runtimes(name: &str, listen: &Listen, params: &Params) {
    for (label, rt) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi-thread",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        let listen = listen.clone();
        let params = params.clone();
        let stats = rt.block_on(async move {
            tokio::spawn(async move {
                let mut conn = connect(&listen).await;
                measure(&mut conn, &params).await
            })
            .await
            .unwrap()
        });
        report(name, label, &stats);
    }
}

fn hello_params(root: &Path) -> Params {
    build_params(
        root,
        "hello.php",
        &Req {
            uri: "/hello.php",
            headers: &[
                ("Host", "localhost"),
                ("User-Agent", "bench"),
                ("Accept", "*/*"),
            ],
            ..Req::default()
        },
    )
}

#[test]
#[ignore = "benchmark: prints numbers"]
fn round_trip_php_cgi() {
    let tcp: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let Some(php) = PhpCgi::spawn(Listen::Tcp(tcp), PHP_FLAGS) else {
        return;
    };
    on_both_runtimes(
        "php-cgi -b TCP",
        &php.listen,
        &hello_params(php.root.path()),
    );
    drop(php);

    let root = docroot();
    let sock = root.path().join("php.sock");
    let Some(php) = PhpCgi::spawn_in(root, Listen::Unix(sock), PHP_FLAGS) else {
        return;
    };
    on_both_runtimes(
        "php-cgi -b unix",
        &php.listen,
        &hello_params(php.root.path()),
    );
}

/// php-fpm master + one static child, killed on drop.
struct Fpm(Child);

impl Drop for Fpm {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must take its child down with it,
        // a killed master leaves the worker orphaned.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_fpm(dir: &Path, listen: &str) -> Option<Fpm> {
    let Some(bin) = find_in_path("php-fpm8.2").or_else(|| find_in_path("php-fpm")) else {
        common::skip("php-fpm8.2");
        return None;
    };
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let user = if is_root {
        "user = root\ngroup = root\n"
    } else {
        ""
    };
    let conf = dir.join("fpm.conf");
    fs::write(
        &conf,
        format!(
            "[global]\nerror_log = {log}\npid = {pid}\ndaemonize = no\n\n\
             [bench]\n{user}listen = {listen}\npm = static\npm.max_children = 1\n\
             pm.max_requests = 0\n",
            log = dir.join("fpm.log").display(),
            pid = dir.join("fpm.pid").display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-n").arg("-y").arg(&conf).arg("-F").args(PHP_FLAGS);
    if is_root {
        cmd.arg("-R");
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Fpm(child))
}

#[test]
#[ignore = "benchmark: prints numbers"]
fn round_trip_php_fpm() {
    let root = docroot();
    let sock = root.path().join("fpm.sock");
    let Some(fpm) = spawn_fpm(root.path(), &sock.to_string_lossy()) else {
        return;
    };
    on_both_runtimes(
        "php-fpm unix",
        &Listen::Unix(sock),
        &hello_params(root.path()),
    );
    drop(fpm);

    let root = docroot();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let Some(_fpm) = spawn_fpm(root.path(), &addr.to_string()) else {
        return;
    };
    on_both_runtimes(
        "php-fpm TCP",
        &Listen::Tcp(addr),
        &hello_params(root.path()),
    );
}

/// A blocking thread that answers every request with a fixed reply: the
/// round trip minus PHP, i.e. the client's and the kernel's share.
#[test]
#[ignore = "benchmark: prints numbers"]
fn round_trip_fake_server() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut reply = Vec::new();
    let stdout = b"Content-type: text/html; charset=UTF-8\r\n\r\nHello, World!";
    for (kind, content) in [(record::STDOUT, &stdout[..]), (record::STDOUT, &[][..])] {
        let h = record::Header {
            kind,
            request_id: 1,
            content_len: content.len() as u16,
            padding_len: 0,
        };
        reply.extend_from_slice(&h.encode());
        reply.extend_from_slice(content);
    }
    let end = record::Header {
        kind: record::END_REQUEST,
        request_id: 1,
        content_len: 8,
        padding_len: 0,
    };
    reply.extend_from_slice(&end.encode());
    reply.extend_from_slice(&[0; 8]);

    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = vec![0u8; 65536];
            let mut pending = Vec::new();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                // A request ends with an empty STDIN record.
                let empty_stdin = [1, record::STDIN, 0, 1, 0, 0, 0, 0];
                if pending.ends_with(&empty_stdin) {
                    pending.clear();
                    if s.write_all(&reply).is_err() {
                        break;
                    }
                }
            }
        }
    });
    on_both_runtimes(
        "fake server unix",
        &Listen::Unix(sock),
        &hello_params(dir.path()),
    );
}
