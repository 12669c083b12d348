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
        ("/status?code=99", "Status header"),
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
    assert after - before < 100 * 1024, f"node RSS grew {(after - before) // 1024} MB"
    assert "larger than the limit" in log_text(web_node)
    # The next request gets a clean instance, not the rest of the abandoned stream.
    r = requests.get(web_node.url + "/", timeout=30)
    assert (r.status_code, r.text) == (200, "real")
    # Up to the cap is fine.
    r = requests.get(web_node.url + "/huge?mb=10", timeout=60)
    assert r.status_code == 200 and len(r.content) == 10 * 1048576
