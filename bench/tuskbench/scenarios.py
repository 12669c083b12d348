"""The six scenarios of issue 5. Each takes the Suite and returns a dict of raw measurements;
report.py turns them into tables. A scenario raises when it cannot run (that fails the suite)."""

import json
import subprocess
import time

from . import apps
from .clients import FcgiConn, HttpConn, burst, fcgi_request, http_request
from .loadgen import fcgi_loop, http_loop, percentile, post_script, wrk
from .procs import cpu_delta, cpu_seconds, descendants, pss_kb, rss_kb, tree
from .servers import (WEB_FLAGS, Nginx, PhpFpm, fastcgi_location, flags_of,
                      spawn_php_cgi, which)

HOST = "127.0.0.1"
FN_BODY = '{"name":"bench"}'


def _check_status(r, want=200, body=None):
    if r.status != want:
        raise RuntimeError(f"unexpected HTTP status {r.status}: {r.body[:300]!r}")
    if body is not None and r.body != body:
        raise RuntimeError(f"unexpected body {r.body[:300]!r} (want {body!r})")


def _handler_ns(r):
    _check_status(r)
    return json.loads(r.body)["handler_ns"]


def _lat_stats(samples_ns):
    """p50/p99/mean in µs of a list of ns."""
    s = sorted(samples_ns)
    return {"p50_us": percentile(s, 50) / 1e3, "p99_us": percentile(s, 99) / 1e3,
            "mean_us": (sum(s) / len(s) / 1e3) if s else float("nan"), "n": len(s)}


def _php_cgi_flags(node):
    """The -d flags of one of the node's php-cgi workers (the same go to php-fpm)."""
    for pid, kind, cmd in node.instances():
        if kind == "php-cgi":
            return flags_of(pid), cmd
    return list(WEB_FLAGS), "(no php-cgi instance found; Tusk's documented flags used)"


def _measured_wrk(groups, url, conns, seconds, script=None):
    """A wrk run plus the CPU time each process group used during it, in µs per request."""
    before = {k: cpu_seconds(f()) for k, f in groups.items()}
    res = wrk(url, conns, seconds, script=script)
    for k, f in groups.items():
        res[f"cpu_{k}_us"] = cpu_delta(before[k], cpu_seconds(f())) * 1e6 / max(1, res["requests"])
    return res


def _profile(suite, pid, url, conns, script=None):
    """perf record (call graphs) of the node during one extra wrk run; returns the top Tusk frames
    by inclusive CPU share, or None when perf is missing or not allowed."""
    import re
    import shutil
    import threading
    if not shutil.which("perf"):
        return None
    data = suite.work / f"perf-{pid}-{conns}.data"
    seconds = max(3, suite.cfg.wrk_seconds)
    result = {}
    t = threading.Thread(target=lambda: result.update(wrk(url, conns, seconds + 1, script=script)))
    t.start()
    time.sleep(0.5)
    rec = subprocess.run(["perf", "record", "-F", "499", "-g", "--call-graph", "dwarf,16384", "-p", str(pid), "-o", str(data),
                          "--", "sleep", str(seconds - 1)], capture_output=True, text=True, timeout=seconds + 60)
    t.join()
    if rec.returncode != 0:
        return [f"perf record failed: {rec.stderr.strip()[-300:]}"]
    rep = subprocess.run(["perf", "report", "-i", str(data), "--children", "--sort", "sym", "--stdio", "-g", "none"],
                         capture_output=True, text=True, timeout=600)
    lines, seen = [], set()
    for line in rep.stdout.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(.*)$", line)
        if not m or not re.search(r"tusk_|sqlite3_step|std::fs::|uuid|serde_json", m.group(3)):
            continue
        sym = m.group(3)
        if "(inlined)" in sym or "{closure_env" in sym or "poll<" in sym or "catch_unwind" in sym:
            continue
        if " as " not in sym:
            sym = re.sub(r"<[^<>]*(<[^<>]*>[^<>]*)*>", "<…>", sym)
        sym = sym[:110]
        if sym in seen:
            continue
        seen.add(sym)
        lines.append(f"{float(m.group(1)):5.1f}%  {sym}")
        if len(lines) >= 18:
            break
    data.unlink(missing_ok=True)
    return [f"{result.get('rps', float('nan')):,.0f} req/s while profiled (perf -F 499, dwarf call graphs; inclusive % of the node's CPU samples)"] + lines


def _alternate(items, rnd):
    """Round-robin start so every side is measured first as often as the others."""
    k = rnd % len(items)
    return items[k:] + items[:k]


# ------------------------------------------------------------------ 1. web hello world

def s1_web_hello(suite):
    cfg, root = suite.cfg, suite.work / "s1"
    n = cfg.workers
    app = apps.web_hello(root / "app", "webhello", route="*", workers=n)
    node = suite.node(root / "tusk")
    node.deploy(app)
    flags, cgi_cmd = _php_cgi_flags(node)
    fpm = PhpFpm(suite.procs, root, "s1", n, flags).start()
    nginx = Nginx(suite.procs, root, "s1", fastcgi_location("/", fpm.sock, app / "public/index.php")).start()
    sides = {"tusk": node.url + "/", "rival": nginx.url + "/"}
    cpu = {"tusk": {"gateway": lambda: [node.pid], "php": lambda: [p for p, _ in descendants(node.pid)]},
           "rival": {"gateway": lambda: tree(nginx.proc.pid), "php": lambda: tree(fpm.proc.pid)}}
    for url in sides.values():
        port = int(url.rsplit(":", 1)[1].strip("/"))
        c = HttpConn(HOST, port)
        _check_status(c.request(http_request("GET", "/", HOST)), body=b"Hello")
        c.close()
    for url in sides.values():  # warm every worker's opcache and the connection paths
        wrk(url, 16, 1)
    cold_before = node.metric("tusk_cold_starts_total")
    runs = []
    for rnd in range(cfg.rounds):
        for conns in (16, 64):
            for side in _alternate(list(sides), rnd):
                suite.log(f"  s1 round {rnd + 1}/{cfg.rounds} c{conns} {side}")
                res = _measured_wrk(cpu[side], sides[side], conns, cfg.wrk_seconds)
                runs.append({"round": rnd, "conns": conns, "side": side,
                             **{k: res[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "errors", "non2xx",
                                                    "socket_errors", "cpu_gateway_us", "cpu_php_us")}})
    for side in sides:
        if not sum(r["requests"] - r["non2xx"] for r in runs if r["side"] == side):
            suite.problem(f"scenario 1: no successful response from {side}")
    prof = _profile(suite, node.pid, sides["tusk"], 16) if cfg.profile else None
    return {
        "workers": n,
        "profile": prof,
        "runs": runs,
        "php_cgi_cmdline": cgi_cmd,
        "php_flags": flags,
        "fpm_workers": len(fpm.worker_pids()),
        "tusk_instances_started_during_runs": node.metric("tusk_cold_starts_total") - cold_before,
        "tusk_errors_total": node.metric("tusk_errors_total"),
        "tusk_throttles_total": node.metric("tusk_throttles_total"),
        "tusk_error_lines": node.error_lines("webhello-dev-web") if node.metric("tusk_errors_total") else [],
        "node_rss_kb_after": node.rss_kb(),
        "seconds": cfg.wrk_seconds,
    }


# ------------------------------------------------------------------ 2. warm function invoke

def s2_warm_invoke(suite):
    cfg, root = suite.cfg, suite.work / "s2"
    n = cfg.workers
    app = apps.function_hello(root / "app", "fn", route="POST /hello", workers=n)
    node = suite.node(root / "tusk")
    node.deploy(app)
    fname = "fn-dev-hello"
    nginx = Nginx(suite.procs, root, "s2", """    location / {
      default_type application/json;
      return 200 '{"message":"Hello","handler_ns":0}';
    }""").start()
    auth = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    targets = {
        "invoke": (node.port, http_request("POST", f"/2015-03-31/functions/{fname}/invocations", HOST, auth, FN_BODY)),
        "httpApi": (node.port, http_request("POST", "/hello", HOST, {"Content-Type": "application/json"}, FN_BODY)),
        "floor": (nginx.port, http_request("POST", "/floor", HOST, {"Content-Type": "application/json"}, FN_BODY)),
    }
    seq = {k: [] for k in targets}
    per_round = {k: [] for k in targets}
    handler_ns = []
    throughput = []
    invoke_lua = post_script(root / "invoke.lua", FN_BODY, auth)
    route_lua = post_script(root / "route.lua", FN_BODY, {"Content-Type": "application/json"})
    wrk_targets = {"invoke": (f"{node.url}/2015-03-31/functions/{fname}/invocations", invoke_lua),
                   "httpApi": (f"{node.url}/hello", route_lua)}
    for url, script in wrk_targets.values():
        wrk(url, 16, 1, script=script)
    cpu = {"gateway": lambda: [node.pid], "php": lambda: [p for p, _ in descendants(node.pid)]}
    cold_before = node.metric("tusk_cold_starts_total", fname)
    for rnd in range(cfg.rounds):
        for name in _alternate(list(targets), rnd):
            suite.log(f"  s2 round {rnd + 1}/{cfg.rounds} sequential {name}")
            port, raw = targets[name]
            rs = http_loop(HOST, port, raw, cfg.seq_count, cfg.seq_warmup, check=_handler_ns)
            over = []
            for r in rs:
                h = json.loads(r.body)["handler_ns"]
                handler_ns.append(h)
                over.append(r.total_ns - h)
            seq[name] += over
            per_round[name].append(_lat_stats(over))
        for name in _alternate(list(wrk_targets), rnd):
            suite.log(f"  s2 round {rnd + 1}/{cfg.rounds} wrk c16 {name}")
            url, script = wrk_targets[name]
            res = _measured_wrk(cpu, url, 16, cfg.wrk_seconds, script=script)
            throughput.append({"round": rnd, "target": name, **{k: res[k] for k in (
                "rps", "p50_ms", "p99_ms", "errors", "requests", "cpu_gateway_us", "cpu_php_us")}})
    for name in wrk_targets:
        if not sum(r["requests"] - r["errors"] for r in throughput if r["target"] == name):
            suite.problem(f"scenario 2: no successful response from {name} under wrk")
    prof = _profile(suite, node.pid, wrk_targets["invoke"][0], 16, wrk_targets["invoke"][1]) if cfg.profile else None
    return {
        "workers": n,
        "profile": prof,
        "per_round": per_round,
        "pooled": {k: _lat_stats(v) for k, v in seq.items()},
        "handler_ns_p50": percentile(sorted(handler_ns), 50),
        "throughput": throughput,
        "instances_started_during_runs": node.metric("tusk_cold_starts_total", fname) - cold_before,
        "errors_total": node.metric("tusk_errors_total", fname),
        "error_lines": node.error_lines(fname) if node.metric("tusk_errors_total", fname) else [],
        "seq_count": cfg.seq_count,
    }


# ------------------------------------------------------------------ 3. cold starts

def _discover_flags(suite, node, root):
    """(php CLI flags, php-cgi flags) Tusk starts its instances with, read from live ones."""
    if suite.php_flags is None:
        probe = apps.write_service(
            root / "flags-probe", "flagsprobe",
            {"hello": {"handler": "index.php", "provisioned": 1},
             "web": {"handler": "public/index.php", "runtime": "php-82-fpm", "provisioned": 1,
                     "route": "GET /flags-probe"}},
            {"index.php": apps.FUNCTION_HELLO, "public/index.php": apps.WEB_HELLO},
        )
        node.deploy(probe)
        cli = web = None
        for pid, kind, cmd in node.instances():
            if kind == "php" and cli is None:
                cli = flags_of(pid)
            elif kind == "php-cgi" and web is None:
                web = flags_of(pid)
        node.remove(probe)
        if cli is None or web is None:
            raise RuntimeError("cannot find the flag probe's PHP instances under the node")
        suite.php_flags = (cli, web)
    return suite.php_flags


def s3_cold_start(suite):
    cfg, root = suite.cfg, suite.work / "s3"
    loop1 = {"BREF_LOOP_MAX": "1"}
    fn_app = apps.function_hello(root / "fn", "coldfn", env=loop1)
    web_app = apps.web_hello(root / "web", "coldweb", route="GET /web", env=loop1)
    sf_app = apps.web_hello(root / "sf", "coldsf", route="GET /symfony/{name}", env=loop1, script=apps.SYMFONY_APP)
    node = suite.node(root / "tusk")
    for a in (fn_app, web_app, sf_app):
        node.deploy(a)
    auth = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    kinds = {
        "function": ("coldfn-dev-hello", http_request("POST", "/2015-03-31/functions/coldfn-dev-hello/invocations", HOST, auth, FN_BODY),
                     lambda r: _handler_ns(r)),
        "web": ("coldweb-dev-web", http_request("GET", "/web", HOST), lambda r: _check_status(r, body=b"Hello")),
        "symfony": ("coldsf-dev-web", http_request("GET", "/symfony/bench", HOST), lambda r: _check_status(r, body=b"Hello bench")),
    }
    # The PHP floor: the same PHP started without Tusk (php-cgi + first FastCGI request; php +
    # handler), with the -d flags Tusk gives its instances.
    cli_flags, web_flags = _discover_flags(suite, node, root)
    conn = HttpConn(HOST, node.port)
    kinds["web"][2](conn.request(kinds["web"][1]))
    kinds["function"][2](conn.request(kinds["function"][1]))
    time.sleep(0.2)
    cold_before = {k: node.metric("tusk_cold_starts_total", v[0]) for k, v in kinds.items()}
    per_kind = max(1, -(-cfg.cold_total // cfg.rounds))
    ttfb = {k: [] for k in kinds}
    floor = {k: [] for k in kinds}
    errors = {k: [] for k in kinds}
    floor_env = {"TUSK_BENCH": "1"}
    # Interleaved sample by sample (Tusk, PHP alone, next app, ...) so drifting load on a shared
    # machine hits both alike.
    for rnd in range(cfg.rounds):
        suite.log(f"  s3 round {rnd + 1}/{cfg.rounds}: {per_kind} cold starts per app through Tusk and PHP alone")
        for i in range(per_kind):
            for kind in _alternate(list(kinds), i):
                fn, raw, check = kinds[kind]
                for side in _alternate(["tusk", "floor"], i + rnd):
                    if side == "tusk":
                        try:
                            r = conn.request(raw)
                            check(r)
                            ttfb[kind].append(r.ttfb_ns)
                        except (RuntimeError, ValueError, KeyError, OSError) as e:  # OSError: ConnectionError, timeouts
                            errors[kind].append(str(e)[:200])
                            conn.close()
                    else:
                        floor[kind].append(_php_floor(suite, kind, root, fn_app, web_app, sf_app, cli_flags, web_flags, floor_env))
                    time.sleep(cfg.cold_gap)
    conn.close()
    for k, v in ttfb.items():
        if not v:
            raise RuntimeError(f"cold start {k}: every request failed: {errors[k][:3]}")
    cold = {k: node.metric("tusk_cold_starts_total", v[0]) - cold_before[k] for k, v in kinds.items()}
    error_lines = {k: node.error_lines(v[0]) for k, v in kinds.items() if errors[k]}
    return {
        "per_kind": per_kind * cfg.rounds,
        "tusk": {k: _lat_stats(v) for k, v in ttfb.items()},
        "floor": {k: _lat_stats(v) for k, v in floor.items()},
        "instances_started": cold,
        "requests": {k: len(v) + len(errors[k]) for k, v in ttfb.items()},
        "errors": errors,
        "error_lines": error_lines,
        "gap_ms": cfg.cold_gap * 1000,
        "cli_flags": cli_flags,
    }


def _php_floor(suite, kind, root, fn_app, web_app, sf_app, cli_flags, web_flags, env):
    """Start PHP without Tusk and time spawn → first response byte (ns)."""
    if kind == "function":
        argv = [which("php8.2", "php")]
        for f in cli_flags:
            argv += ["-d", f]
        argv.append(str(fn_app / "floor.php"))
        t0 = time.perf_counter_ns()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=fn_app,
                             env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env})
        first = p.stdout.read(1)
        t = time.perf_counter_ns() - t0
        rest = p.stdout.read()
        p.wait(timeout=30)
        if not json.loads(first + rest).get("message"):
            raise RuntimeError("php floor: unexpected output")
        return t
    app = web_app if kind == "web" else sf_app
    path = "/web" if kind == "web" else "/symfony/bench"
    sock = root / f"floor-{kind}.sock"
    params = _fcgi_params(app / "public", path)
    raw = fcgi_request(params)
    t0 = time.perf_counter_ns()
    p = spawn_php_cgi(suite.procs, sock, web_flags, app, root / "floor-php-cgi.log")
    try:
        c = FcgiConn(str(sock))
        sent = time.perf_counter_ns()
        r = c.request(raw)
        t = sent - t0 + r.ttfb_ns
        c.close()
        want = b"Hello" if kind == "web" else b"Hello bench"
        if r.body != want:
            raise RuntimeError(f"php-cgi floor: unexpected body {r.body[:200]!r}")
        return t
    finally:
        suite.procs.stop(p, timeout=2)


def _fcgi_params(docroot, uri, port=80):
    """The parameters Tusk sends (crates/gateway/src/web.rs) for GET `uri`."""
    return [
        ("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_SOFTWARE", "bench"), ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"), ("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri),
        ("DOCUMENT_URI", "/index.php"), ("SCRIPT_NAME", "/index.php"),
        ("SCRIPT_FILENAME", f"{docroot}/index.php"), ("DOCUMENT_ROOT", str(docroot)), ("PATH_INFO", ""),
        ("QUERY_STRING", ""), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
        ("SERVER_ADDR", "127.0.0.1"), ("SERVER_PORT", str(port)), ("SERVER_NAME", "127.0.0.1"),
        ("REDIRECT_STATUS", "200"), ("CONTENT_TYPE", ""), ("CONTENT_LENGTH", "0"), ("HTTP_HOST", "127.0.0.1"),
    ]


# ------------------------------------------------------------------ 4. burst

def s4_burst(suite):
    cfg, root = suite.cfg, suite.work / "s4"
    node = suite.node(root / "tusk")
    size = cfg.burst_size
    rounds = []
    _, web_flags = _discover_flags(suite, node, root)
    for rnd in range(cfg.burst_rounds):
        svc = f"burst{rnd}"
        app = apps.write_service(
            root / svc, svc,
            {"hello": {"handler": "index.php"},
             "web": {"handler": "public/index.php", "runtime": "php-82-fpm", "route": f"GET /{svc}/web"}},
            {"index.php": apps.FUNCTION_HELLO, "public/index.php": apps.WEB_HELLO},
        )
        node.deploy(app)
        fn = f"{svc}-dev-hello"
        live = node.metric("tusk_instances_idle", fn) + node.metric("tusk_instances_busy", fn)
        if live:
            raise RuntimeError(f"burst: {fn} has {live} instances before the burst")
        auth = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
        fn_raw = http_request("POST", f"/2015-03-31/functions/{fn}/invocations", HOST, auth, FN_BODY)
        web_raw = http_request("GET", f"/{svc}/web", HOST)
        # The rival: nginx + php-fpm pm=ondemand (children forked on demand from zero), as many
        # children at most as Tusk starts instances for one function (--max-instances).
        fpm = PhpFpm(suite.procs, root / f"fpm{rnd}", "burst", cfg.burst_max_instances, web_flags, pm="ondemand").start()
        nginx = Nginx(suite.procs, root / f"fpm{rnd}", "burst", fastcgi_location("/", fpm.sock, app / "public/index.php")).start()
        out = {"round": rnd}
        for name, port, raw in _alternate([("function", node.port, fn_raw), ("web", node.port, web_raw),
                                           ("rival", nginx.port, http_request("GET", "/", HOST))], rnd):
            suite.log(f"  s4 round {rnd + 1}/{cfg.burst_rounds}: {size} concurrent requests, cold {name}")
            before = node.metric("tusk_cold_starts_total", fn if name == "function" else f"{svc}-dev-web")
            res = burst(HOST, port, [raw] * size, timeout=cfg.burst_timeout)
            started = (node.metric("tusk_cold_starts_total", fn if name == "function" else f"{svc}-dev-web") - before
                       if name != "rival" else len(fpm.worker_pids()))
            lat = sorted(t for s, t in res if s == 200)
            errs = [s for s, _ in res if s != 200]
            fname = fn if name == "function" else f"{svc}-dev-web"
            out[name] = {"ok": len(lat), "errors": len(errs), "error_kinds": sorted({str(e) for e in errs}),
                         "error_lines": node.error_lines(fname) if errs and name != "rival" else [],
                         "p50_ms": percentile(lat, 50) / 1e6, "p99_ms": percentile(lat, 99) / 1e6,
                         "max_ms": (max(t for _, t in res) / 1e6) if res else float("nan"),
                         "instances_started": started}
        for name in ("function", "web", "rival"):
            if not out[name]["ok"]:
                suite.problem(f"scenario 4: every request of the {name} burst failed: {out[name]['error_kinds']}")
        rounds.append(out)
        nginx.stop()
        fpm.stop()
        node.remove(app)
    return {"size": size, "rounds": rounds, "max_instances": cfg.burst_max_instances}


# ------------------------------------------------------------------ 5. idle cost

def s5_idle_cost(suite):
    cfg, root = suite.cfg, suite.work / "s5"
    node = suite.node(root / "tusk")
    time.sleep(1)
    rss_empty = node.rss_kb()
    t0 = time.monotonic()
    total = 0
    for s in range(cfg.idle_services):
        fns = {f"f{i:03d}": {"handler": "index.php"} for i in range(cfg.idle_functions)}
        node.deploy(apps.write_service(root / f"idle{s}", f"idle{s}", fns, {"index.php": apps.FUNCTION_HELLO}))
        total += len(fns)
    deploy_s = time.monotonic() - t0
    time.sleep(2)
    listed = node.functions()
    functions = len(listed)
    live = sum(f["instances"]["idle"] + f["instances"]["busy"] for f in listed)
    rss_idle = node.rss_kb()
    procs_idle = len(node.instances())

    # A warm instance of each kind, after 100 requests, and a php-fpm child for comparison.
    fn = "idle0-dev-f000"
    c = HttpConn(HOST, node.port)
    auth = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    raw = http_request("POST", f"/2015-03-31/functions/{fn}/invocations", HOST, auth, FN_BODY)
    for _ in range(100):
        _handler_ns(c.request(raw))
    web = apps.web_hello(root / "web", "memweb", route="GET /mem")
    node.deploy(web)
    for _ in range(100):
        _check_status(c.request(http_request("GET", "/mem", HOST)), body=b"Hello")
    c.close()
    time.sleep(0.5)
    inst = {}
    for pid, kind, cmd in node.instances():
        kind = {"php-cgi": "php-cgi", "php": "function"}.get(kind)
        if kind and kind not in inst:
            inst[kind] = {"rss_kb": rss_kb(pid), "pss_kb": pss_kb(pid), "cmdline": cmd}
    flags, _ = _php_cgi_flags(node)
    fpm = PhpFpm(suite.procs, root, "mem", 1, flags).start()
    fc = FcgiConn(str(fpm.sock))
    raw = fcgi_request(_fcgi_params(web / "public", "/mem"))
    for _ in range(100):
        r = fc.request(raw)
        if r.body != b"Hello":
            raise RuntimeError(f"php-fpm: unexpected body {r.body!r}")
    fc.close()
    child = fpm.worker_pids()[0]
    rival = {"child_rss_kb": rss_kb(child), "child_pss_kb": pss_kb(child),
             "master_rss_kb": rss_kb(fpm.proc.pid), "master_pss_kb": pss_kb(fpm.proc.pid)}
    fpm.stop()
    return {
        "functions_deployed": total, "functions_listed": functions, "live_instances_idle": live,
        "node_processes_idle": procs_idle, "deploy_seconds": deploy_s,
        "rss_empty_kb": rss_empty, "rss_idle_kb": rss_idle, "rss_after_warm_kb": node.rss_kb(),
        "instances": inst, "rival": rival, "services": cfg.idle_services,
        "per_service": cfg.idle_functions,
    }


# ------------------------------------------------------------------ 6. the gateway itself

def s6_gateway(suite):
    cfg, root = suite.cfg, suite.work / "s6"
    app = apps.web_hello(root / "app", "gw", route="*", workers=1)
    node = suite.node(root / "tusk")
    node.deploy(app)
    flags, _ = _php_cgi_flags(node)
    docroot = app / "public"
    cgi_sock = root / "direct-cgi.sock"
    spawn_php_cgi(suite.procs, cgi_sock, flags, app, root / "direct-php-cgi.log")
    fpm = PhpFpm(suite.procs, root, "gw", 1, flags).start()
    nginx = Nginx(suite.procs, root, "gw", fastcgi_location("/", fpm.sock, docroot / "index.php")).start()
    raw_fcgi = fcgi_request(_fcgi_params(docroot, "/"))
    raw_http = http_request("GET", "/", HOST)

    def ok(r):
        _check_status(r, body=b"Hello")

    targets = {
        "tusk": lambda: http_loop(HOST, node.port, raw_http, cfg.gw_count, cfg.seq_warmup, ok),
        "php-cgi": lambda: fcgi_loop(str(cgi_sock), raw_fcgi, cfg.gw_count, cfg.seq_warmup, ok),
        "nginx": lambda: http_loop(HOST, nginx.port, raw_http, cfg.gw_count, cfg.seq_warmup, ok),
        "php-fpm": lambda: fcgi_loop(str(fpm.sock), raw_fcgi, cfg.gw_count, cfg.seq_warmup, ok),
    }
    deadline = time.monotonic() + 10
    while not cgi_sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    per_round = {k: [] for k in targets}
    pooled = {k: [] for k in targets}
    for rnd in range(cfg.rounds):
        for name in _alternate(list(targets), rnd):
            suite.log(f"  s6 round {rnd + 1}/{cfg.rounds} {name}")
            samples = [r.total_ns for r in targets[name]()]
            per_round[name].append(_lat_stats(samples))
            pooled[name] += samples
    return {"per_round": per_round, "pooled": {k: _lat_stats(v) for k, v in pooled.items()},
            "count": cfg.gw_count, "php_flags": flags}


SCENARIOS = [
    ("1", "Web hello world: Tusk vs nginx + php-fpm", s1_web_hello),
    ("2", "Warm function invoke: Invoke API and httpApi", s2_warm_invoke),
    ("3", "Cold start", s3_cold_start),
    ("4", "Burst 0 -> 64 on a cold function", s4_burst),
    ("5", "Idle cost", s5_idle_cost),
    ("6", "The gateway itself", s6_gateway),
]
