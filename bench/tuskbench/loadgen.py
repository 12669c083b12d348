"""wrk runs (throughput) and sequential latency loops, plus the statistics the report uses."""

import math
import re
import subprocess

from .clients import FcgiConn, HttpConn


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def median(values):
    v = sorted(x for x in values if x == x)  # drop NaN
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url, connections, seconds, threads=2, script=None, timeout_s=10):
    """One wrk run: {rps, p50_ms, p99_ms, requests, errors, non2xx, socket_errors, raw}."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s", "--latency"]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = p.stdout
    if p.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({p.returncode}): {out}{p.stderr}")
    res = {"raw": out, "non2xx": 0, "socket_errors": 0}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[key] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        # read errors also count connections the server closed after a response (keepalive
        # limits), so they are reported apart from the failed requests.
        res["socket_errors"] = sum(int(x) for x in m.groups())
        res["timeouts"] = int(m.group(4)) + int(m.group(1))
    res["errors"] = res["non2xx"] + res.get("timeouts", 0)
    # Throughput counts successful responses only: a server failing fast must not look fast.
    res["rps_all"] = res["rps"]
    res["rps"] = res["rps_all"] * (res["requests"] - res["non2xx"]) / max(1, res["requests"])
    return res


def post_script(path, body, headers):
    """A wrk Lua script sending POST `body` with `headers` on every request."""
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_str(body)}"]
    for k, v in headers.items():
        lines.append(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def http_loop(host, port, raw, count, warmup, check=None):
    """Sequential keep-alive requests on one connection: [(ttfb ns, total ns, body)]."""
    conn = HttpConn(host, port)
    try:
        for _ in range(warmup):
            r = conn.request(raw)
            if check:
                check(r)
        out = []
        for _ in range(count):
            r = conn.request(raw)
            out.append(r)
        for r in out:
            if check:
                check(r)
        return out
    finally:
        conn.close()


def fcgi_loop(addr, raw, count, warmup, check=None):
    conn = FcgiConn(addr)
    try:
        for _ in range(warmup):
            r = conn.request(raw)
            if check:
                check(r)
        out = [conn.request(raw) for _ in range(count)]
        for r in out:
            if check:
                check(r)
        return out
    finally:
        conn.close()
