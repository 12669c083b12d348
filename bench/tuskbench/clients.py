"""Small, predictable clients: HTTP/1.1 and FastCGI over raw sockets, requests encoded once.

Both clients do the same work per request (one sendall of pre-encoded bytes, recv until the
response is complete), so latency differences between an HTTP target and a FastCGI target
come from the servers, not from the clients. Times are time.perf_counter_ns().
"""

import selectors
import socket
import struct
import time


class Response:
    __slots__ = ("status", "headers", "body", "ttfb_ns", "total_ns")

    def __init__(self, status, headers, body, ttfb_ns, total_ns):
        self.status = status
        self.headers = headers
        self.body = body
        self.ttfb_ns = ttfb_ns
        self.total_ns = total_ns


# ---------------------------------------------------------------- HTTP/1.1

def http_request(method, path, host, headers=None, body=b""):
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_http(buf):
    """(status, headers, body, consumed) when buf holds a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    pos = end + 4
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < pos + n:
            return None
        return status, headers, buf[pos : pos + n], pos + n
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if trailer_end < 0 and buf[eol : eol + 4] != b"\r\n\r\n":
                    return None
                return status, headers, bytes(body), (trailer_end if trailer_end >= 0 else eol) + 4
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", pos
    return None  # body until close: not used by any target here


class HttpConn:
    """One kept-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host, port, timeout=60.0):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection(self.addr, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def request(self, raw):
        if self.sock is None:
            self._connect()
        sock = self.sock
        t0 = time.perf_counter_ns()
        sock.sendall(raw)
        chunk = sock.recv(65536)
        t_first = time.perf_counter_ns()
        buf = chunk
        while True:
            if not chunk:
                self.close()
                raise ConnectionError("server closed the connection mid-response")
            parsed = parse_http(buf)
            if parsed:
                break
            chunk = sock.recv(65536)
            buf += chunk
        t_end = time.perf_counter_ns()
        status, headers, body, consumed = parsed
        if consumed != len(buf):
            self.close()
            raise ConnectionError("unexpected bytes after the response")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body, t_first - t0, t_end - t0)


# ---------------------------------------------------------------- FastCGI

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 1, 3, 4, 5, 6, 7


def _record(rtype, content, req_id=1):
    pad = (-len(content)) % 8
    return struct.pack("!BBHHBx", 1, rtype, req_id, len(content), pad) + content + b"\0" * pad


def _nv_len(n):
    return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)


def fcgi_request(params, body=b""):
    """BEGIN_REQUEST (RESPONDER, KEEP_CONN) + PARAMS + STDIN, encoded once."""
    out = _record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", 1, 1))
    enc = b""
    for k, v in params:
        k, v = k.encode(), str(v).encode()
        enc += _nv_len(len(k)) + _nv_len(len(v)) + k + v
    for i in range(0, len(enc), 65528):
        out += _record(FCGI_PARAMS, enc[i : i + 65528])
    out += _record(FCGI_PARAMS, b"")
    for i in range(0, len(body), 65528):
        out += _record(FCGI_STDIN, body[i : i + 65528])
    return out + _record(FCGI_STDIN, b"")


def cgi_body(stdout):
    """(status, body) of a CGI response (headers, blank line, body)."""
    head, _, body = stdout.partition(b"\r\n\r\n")
    status = 200
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"status:"):
            status = int(line.split()[1])
    return status, body


class FcgiConn:
    """One kept-alive FastCGI connection (Unix socket path or (host, port))."""

    def __init__(self, addr, timeout=60.0):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)

    def close(self):
        self.sock.close()

    def request(self, raw):
        sock = self.sock
        t0 = time.perf_counter_ns()
        sock.sendall(raw)
        buf = sock.recv(65536)
        t_first = time.perf_counter_ns()
        stdout = bytearray()
        pos = 0
        while True:
            while len(buf) - pos >= 8:
                _, rtype, _, clen, pad = struct.unpack_from("!BBHHB", buf, pos)
                if len(buf) - pos < 8 + clen + pad:
                    break
                if rtype == FCGI_STDOUT:
                    stdout += buf[pos + 8 : pos + 8 + clen]
                pos += 8 + clen + pad
                if rtype == FCGI_END_REQUEST:
                    t_end = time.perf_counter_ns()
                    status, body = cgi_body(bytes(stdout))
                    return Response(status, {}, body, t_first - t0, t_end - t0)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("FastCGI server closed the connection")
            buf = buf[pos:] + chunk
            pos = 0


# ---------------------------------------------------------------- burst

def burst(host, port, raws, timeout=60.0):
    """Sends every request in `raws` at once, each on its own connection (all connected first).

    Returns [(status or error string, latency ns from the burst's start)], in request order.
    """
    socks = []
    for _ in raws:
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    sel = selectors.DefaultSelector()
    results = [None] * len(raws)
    bufs = [b""] * len(raws)
    t0 = time.perf_counter_ns()
    for i, (s, raw) in enumerate(zip(socks, raws)):
        s.sendall(raw)  # small requests: fits the socket buffer, never blocks
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    pending = len(raws)
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                i = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    chunk, err = b"", e
                else:
                    err = None
                now = time.perf_counter_ns()
                if not chunk:
                    results[i] = (f"connection closed{': ' + str(err) if err else ''}", now - t0)
                else:
                    bufs[i] += chunk
                    parsed = parse_http(bufs[i])
                    if not parsed:
                        continue
                    results[i] = (parsed[0], now - t0)
                sel.unregister(key.fileobj)
                pending -= 1
    finally:
        for s in socks:
            s.close()
        sel.close()
    end = time.perf_counter_ns() - t0
    return [r if r is not None else ("timeout", end) for r in results]
