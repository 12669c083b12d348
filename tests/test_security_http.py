"""Issue 11, items 2-4: what an app, an anonymous client or a slow client can do to the node's
HTTP side. Apps cannot frame the response (no desync of a kept-alive connection), a response
cannot take unbounded memory, request bodies are read only after authentication, and idle or
slow connections are closed and capped."""

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import Node, write_project

FORGED = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged"

WEB_APP = {
    "serverless.yml": """
service: framing
provider:
  name: aws
  runtime: php-82-fpm
  timeout: 20
functions:
  web:
    handler: public/index.php
    events:
      - httpApi: '*'
""",
    "public/index.php": r"""<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
switch ($path) {
    case '/poison':
        // A body that forges a second HTTP response behind a lying Content-Length.
        header('Content-Length: 1');
        header('Connection: keep-alive');
        header('Transfer-Encoding: identity');
        echo 'A' . "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged";
        break;
    case '/chunked':
        header('Transfer-Encoding: chunked');
        echo "5\r\nhello\r\n0\r\n\r\n" . "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
        break;
    case '/status':
        header('Status: ' . $_GET['code']);
        echo 'odd status';
        break;
    case '/bigheader':
        header('X-Big: ' . str_repeat('a', 70000));
        echo 'big header';
        break;
    case '/manyheaders':
        for ($i = 0; $i < 1100; $i++) { header("X-H$i: v"); }
        echo 'many headers';
        break;
    case '/huge':
        // 200 MB of output, produced in 1 MB pieces so PHP's own memory stays small.
        $mb = str_repeat('x', 1048576);
        for ($i = 0; $i < (int)($_GET['mb'] ?? 200); $i++) { echo $mb; }
        break;
    case '/sleep':
        sleep(2);
        echo 'slept';
        break;
    default:
        header('Content-Type: text/plain');
        echo 'real';
}
""",
}

FUNCTION_APP = {
    "serverless.yml": """
service: framingfn
provider:
  name: aws
  runtime: php-82
  timeout: 10
functions:
  v2:
    handler: v2.php
    events:
      - httpApi: 'GET /v2/{what}'
  v1:
    handler: v1.php
    events:
      - http: 'GET /v1/{what}'
""",
    "v2.php": r"""<?php
return function (array $event) {
    $what = $event['pathParameters']['what'] ?? '';
    $forged = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged";
    if ($what === 'poison') {
        return ['statusCode' => 200, 'headers' => ['Content-Length' => '1', 'Connection' => 'keep-alive'], 'body' => 'A' . $forged];
    }
    if ($what === 'chunked') {
        return ['statusCode' => 200, 'headers' => ['transfer-encoding' => 'chunked'], 'body' => "5\r\nhello\r\n0\r\n\r\n" . $forged];
    }
    if ($what === 'status') {
        return ['statusCode' => 65736, 'body' => 'wraps to 200'];
    }
    if ($what === 'bigheader') {
        return ['statusCode' => 200, 'headers' => ['x-big' => str_repeat('a', 70000)], 'body' => 'x'];
    }
    if ($what === 'manyheaders') {
        $h = [];
        for ($i = 0; $i < 1100; $i++) { $h["x-h$i"] = 'v'; }
        return ['statusCode' => 200, 'headers' => $h, 'body' => 'x'];
    }
    return ['statusCode' => 200, 'headers' => ['content-type' => 'text/plain'], 'body' => 'real'];
};
""",
    "v1.php": r"""<?php
return function (array $event) {
    $what = $event['pathParameters']['what'] ?? '';
    if ($what === 'poison') {
        return ['statusCode' => 200, 'multiValueHeaders' => ['Content-Length' => ['1']],
            'body' => "AHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged"];
    }
    return ['statusCode' => 200, 'headers' => ['content-type' => 'text/plain'], 'body' => 'real'];
};
""",
}


# --- raw HTTP/1.1 over a socket, the way an attacker's client sees the connection ---------

def read_response(sock, method="GET"):
    """Reads one HTTP/1.1 response off `sock` by its own framing; returns (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed inside the response head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, headers, body
    length = int(headers.get("content-length", ["0"])[0])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def raw_get(sock, port, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return read_response(sock)


def two_on_one_connection(node, first, second="/"):
    """Sends `first` then `second` on one kept-alive connection; returns both responses."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as s:
        r1 = raw_get(s, node.port, first)
        r2 = raw_get(s, node.port, second)
        return r1, r2


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def log_text(node):
    return node.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def web_node(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec-http")
    n = Node(root / "data").start()
    n.deploy(write_project(root / "web", WEB_APP))
    n.deploy(write_project(root / "fn", FUNCTION_APP))
    yield n
    n.stop()


# --- 1. framing ----------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["/poison", "/chunked"])
def test_fpm_app_cannot_desync_a_kept_alive_connection(web_node, first):
    (s1, h1, b1), (s2, h2, b2) = two_on_one_connection(web_node, first, "/second")
    assert s1 == 200
    assert "transfer-encoding" not in h1
    assert h1.get("content-length") == [str(len(b1))]
    # The whole body the app wrote arrives as the first response's body.
    assert b"forged" in b1
    assert (s2, b2) == (200, b"real"), f"second response was forged: {s2} {b2!r}"


@pytest.mark.parametrize("first", ["/v2/poison", "/v2/chunked", "/v1/poison"])
def test_api_gateway_result_cannot_desync_a_kept_alive_connection(web_node, first):
    second = "/v2/second" if first.startswith("/v2") else "/v1/second"
    (s1, h1, b1), (s2, h2, b2) = two_on_one_connection(web_node, first, second)
    assert s1 == 200
    assert b"forged" in b1
    assert h1.get("content-length") == [str(len(b1))]
    assert (s2, b2) == (200, b"real"), f"second response was forged: {s2} {b2!r}"


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/status?code=999", "Status header"),
        ("/status?code=101", "Status header"),
        ("/status?code=600", "Status header"),
        ("/bigheader", "header line is"),
        ("/manyheaders", "more than 1000 header lines"),
        ("/v2/status", "statusCode"),
        ("/v2/bigheader", "bytes; at most"),
        ("/v2/manyheaders", "more than 1000 headers"),
    ],
)
def test_malformed_app_responses_are_502_with_a_reason(web_node, path, reason):
    r = requests.get(web_node.url + path, timeout=30)
    assert r.status_code == 502, (r.status_code, r.headers, r.text[:200])
    deadline = time.time() + 5
    while reason not in log_text(web_node) and time.time() < deadline:
        time.sleep(0.1)
    lines = [l for l in log_text(web_node).splitlines() if reason in l]
    assert lines, f"no log line saying {reason!r}"
    assert "WARN" in lines[-1] and "framing" in lines[-1], lines[-1]
    # The app keeps working.
    home = "/v2/ok" if path.startswith("/v2") else "/"
    assert requests.get(web_node.url + home, timeout=30).text == "real"


# --- 2. bounded response memory ------------------------------------------------------------

def test_huge_web_response_is_cut_at_the_cap_not_buffered(web_node):
    requests.get(web_node.url + "/", timeout=30)
    before = rss_kb(web_node.proc.pid)
    started = time.time()
    r = requests.get(web_node.url + "/huge?mb=200", timeout=60)
    took = time.time() - started
    after = rss_kb(web_node.proc.pid)
    assert r.status_code == 502, r.status_code
    assert took < 20, f"took {took:.1f}s: the node read the whole response"
    print(f"200 MB echo: 502 in {took:.2f}s, node RSS grew {(after - before) / 1024:.0f} MB")
    assert after - before < 100 * 1024, f"node RSS grew {(after - before) // 1024} MB"
    assert "larger than the limit" in log_text(web_node)
    # The next request gets a clean instance, not the rest of the abandoned stream.
    r = requests.get(web_node.url + "/", timeout=30)
    assert (r.status_code, r.text) == (200, "real")
    # Up to the cap is fine.
    r = requests.get(web_node.url + "/huge?mb=10", timeout=60)
    assert r.status_code == 200 and len(r.content) == 10 * 1048576


# --- 3. request bodies only after authentication -------------------------------------------

SIXTEEN_MB = 16 * 1024 * 1024


def _post_head(node, path, extra=""):
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {SIXTEEN_MB}\r\n{extra}\r\n"
    ).encode()


class PeakRss:
    """Samples the node's RSS in the background; `peak_growth_mb` after `stop`."""

    def __init__(self, pid):
        self.pid, self.base, self.peak, self.done = pid, rss_kb(pid), 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.done = True
        self.t.join()
        return (self.peak - self.base) / 1024


def _status_of(data):
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return int(m.group(1)) if m else None


def test_unauthenticated_uploads_are_refused_before_their_body(web_node):
    chunk = b"x" * (1024 * 1024)

    def one(auth):
        with socket.create_connection(("127.0.0.1", web_node.port), timeout=10) as s:
            s.sendall(_post_head(web_node, "/_tusk/deployments", auth))
            # The node must answer without waiting for the 16 MB announced.
            started = time.time()
            data = s.recv(4096)
            took = time.time() - started
            try:
                s.sendall(chunk)  # and it does not read them afterwards either
            except OSError:
                pass
            return _status_of(data), took

    peak = PeakRss(web_node.proc.pid)
    results = []
    lock = threading.Lock()

    def worker(i):
        auth = ["", "Authorization: Bearer wrong\r\n", "Authorization: Basic eDp5\r\n"][i % 3]
        r = one(auth)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grew = peak.stop()
    print(f"60 unauthenticated 16 MB uploads: slowest answer {max(t for _, t in results):.3f}s, node RSS grew {grew:.0f} MB")
    statuses = sorted({s for s, _ in results})
    assert statuses and set(statuses) <= {401, 403}, statuses
    assert max(t for _, t in results) < 3
    assert grew < 100, f"node RSS grew {grew:.0f} MB"


def test_bogus_signed_uploads_are_read_under_a_budget(web_node):
    """A SigV4 header with the public access key id and a fresh date passes the pre-check, so
    its body is read before the signature fails: only 64 MB of such bodies at once."""
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    auth = (
        f"X-Amz-Date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=tusk/{date[:8]}/us-east-1/lambda/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}\r\n"
    )
    body = b"x" * SIXTEEN_MB
    results = []
    lock = threading.Lock()

    def worker():
        with socket.create_connection(("127.0.0.1", web_node.port), timeout=30) as s:
            s.sendall(_post_head(web_node, "/_tusk/deployments", auth))
            s.settimeout(1.5)
            try:
                data = s.recv(4096)  # refused at once when over the budget
            except socket.timeout:
                s.settimeout(30)
                s.sendall(body)
                data = s.recv(4096)
        with lock:
            results.append(_status_of(data))

    peak = PeakRss(web_node.proc.pid)
    threads = [threading.Thread(target=worker) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grew = peak.stop()
    print(f"60 bogus signed 16 MB uploads: {results.count(429)} got 429, node RSS grew {grew:.0f} MB")
    assert results.count(429) >= 40, results
    assert set(results) <= {403, 429}, results
    assert 403 in results  # read, then the signature failed
    assert grew < 100, f"node RSS grew {grew:.0f} MB"
    # An honest caller still gets in.
    r = requests.get(web_node.url + "/_tusk/functions", headers=web_node.auth(), timeout=10)
    assert r.status_code == 200


def test_anonymous_large_web_uploads_share_a_node_wide_budget(web_node):
    """Web apps take anonymous uploads up to 64 MB; many at once must not take the node's
    memory: large bodies share a 256 MB budget (the rest wait, then get 503)."""
    body = b"x" * (64 * 1024 * 1024)
    results = []
    lock = threading.Lock()

    def worker():
        try:
            with socket.create_connection(("127.0.0.1", web_node.port), timeout=60) as s:
                s.sendall(
                    f"POST /upload-sink HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                )
                try:
                    s.sendall(body)
                except OSError:
                    pass  # refused early: the answer is already there
                status = _status_of(s.recv(4096))
        except OSError as e:
            status = repr(e)
        with lock:
            results.append(status)

    peak = PeakRss(web_node.proc.pid)
    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grew = peak.stop()
    assert all(r in (200, 503) for r in results), results
    assert 200 in results
    print(f"20 x 64 MB anonymous uploads: {results.count(503)} got 503, node RSS grew {grew:.0f} MB")
    assert grew < 450, f"node RSS grew {grew:.0f} MB for 20 uploads of 64 MB"


# --- 4. connections -------------------------------------------------------------------------

class LimitedNode(Node):
    """A node started with a low soft open-file limit (as `ulimit -Sn 1024` would)."""

    def __init__(self, *a, nofile=None, **kw):
        super().__init__(*a, **kw)
        self.nofile = nofile

    def start(self):
        import resource
        import subprocess as sp

        real_popen = sp.Popen
        nofile = self.nofile

        def limited(*a, **kw):
            def pre():
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
            return real_popen(*a, preexec_fn=pre, **kw)

        sp.Popen = limited
        try:
            return super().start()
        finally:
            sp.Popen = real_popen


def _open_idle(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _raise_own_nofile(need):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= need


def test_health_answers_with_1100_idle_connections_under_ulimit_1024(tmp_path):
    import resource
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096 or not _raise_own_nofile(4096):
        pytest.skip("the hard open-file limit is too low to open 1,100 connections")
    n = LimitedNode(tmp_path / "data", nofile=1024).start()
    socks = []
    try:
        socks = _open_idle(n.port, 1100)
        time.sleep(0.5)
        r = requests.get(n.url + "/_tusk/health", timeout=5)
        assert r.status_code == 200
        # The idle ones are still being served, not dropped.
        raw = raw_get(socks[-1], n.port, "/_tusk/health")
        assert raw[0] == 200
        assert "raised the open file limit" in log_text(n)
    finally:
        for s in socks:
            s.close()
        n.stop()


def test_connection_cap_keeps_health_answerable(tmp_path):
    assert _raise_own_nofile(1024)
    n = Node(tmp_path / "data", extra_args=["--max-connections", "50"]).start()
    socks = []
    try:
        socks = _open_idle(n.port, 50)
        time.sleep(0.3)
        # Over the cap: health still answers, other requests get 503 and a close.
        r = requests.get(n.url + "/_tusk/health", timeout=5)
        assert r.status_code == 200
        r = requests.get(n.url + "/_tusk/functions", headers=n.auth(), timeout=5)
        assert r.status_code == 503 and "connection limit" in r.text
        # A flood far over the cap (and over the reserve) is closed, not queued.
        extra = _open_idle(n.port, 100)
        socks += extra
        time.sleep(0.5)
        closed = 0
        for s in extra:
            s.settimeout(0.05)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (socket.timeout, ConnectionResetError):
                pass
        assert closed >= 50, closed
        # Freed slots are served again.
        for s in socks[:50]:
            s.close()
        time.sleep(0.5)
        r = requests.get(n.url + "/_tusk/functions", headers=n.auth(), timeout=5)
        assert r.status_code == 200
    finally:
        for s in socks:
            s.close()
        n.stop()


@pytest.fixture(scope="module")
def quick_node(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec-timeouts")
    n = Node(root / "data", extra_args=[
        "--header-read-timeout", "2", "--keepalive-timeout", "3", "--body-timeout", "2",
    ]).start()
    n.deploy(write_project(root / "web", WEB_APP))
    yield n
    n.stop()


def _closed_after(sock, limit):
    """Seconds until the node closes `sock` (reading and discarding what it sends)."""
    started = time.time()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (socket.timeout, ConnectionResetError):
        return None if time.time() - started >= limit else time.time() - started
    return time.time() - started


def test_idle_connection_is_closed_after_the_header_timeout(quick_node):
    with socket.create_connection(("127.0.0.1", quick_node.port)) as s:
        took = _closed_after(s, 10)
    assert took is not None and 1.5 < took < 5, took


def test_slow_loris_is_closed_after_the_header_timeout(quick_node):
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {'a' * 100}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", quick_node.port)) as s:
        started = time.time()
        closed = False
        for b in head:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
            if time.time() - started > 8:
                break
        took = time.time() - started
        if not closed:
            closed = _closed_after(s, 2) is not None
    assert closed and took < 6, (closed, took)


def test_kept_alive_connection_is_closed_after_the_keepalive_timeout(quick_node):
    with socket.create_connection(("127.0.0.1", quick_node.port), timeout=10) as s:
        assert raw_get(s, quick_node.port, "/")[2] == b"real"
        # Idle longer than the header timeout but within the keep-alive one: still open.
        time.sleep(2.5)
        assert raw_get(s, quick_node.port, "/")[2] == b"real"
        took = _closed_after(s, 10)
    assert took is not None and 2.5 < took < 6, took


@pytest.mark.parametrize("path", ["/form", "/_tusk/deployments"])
def test_stalled_body_gets_408(quick_node, path):
    auth = f"Authorization: Bearer {quick_node.token}\r\n" if path.startswith("/_tusk") else ""
    with socket.create_connection(("127.0.0.1", quick_node.port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":".encode()
        )
        started = time.time()
        status = _status_of(s.recv(4096))
        took = time.time() - started
    assert status == 408 and 1.5 < took < 5, (status, took)


def test_sigterm_finishes_requests_in_flight_and_closes_idle_connections(tmp_path):
    n = Node(tmp_path / "data").start()
    n.deploy(write_project(tmp_path / "web", WEB_APP))
    idle = _open_idle(n.port, 5)
    kept = socket.create_connection(("127.0.0.1", n.port), timeout=10)
    assert raw_get(kept, n.port, "/")[2] == b"real"
    result = {}

    def slow():
        result["r"] = requests.get(n.url + "/sleep", timeout=30)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.7)
    started = time.time()
    n.proc.send_signal(15)
    t.join()
    assert result["r"].status_code == 200 and result["r"].text == "slept"
    # Idle and kept-alive connections do not hold the node up.
    n.proc.wait(timeout=15)
    assert time.time() - started < 10
    assert _closed_after(kept, 5) is not None
    for s in idle + [kept]:
        s.close()
