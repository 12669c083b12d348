#!/usr/bin/env python3
"""Framework apps under Tusk's worker mode vs the same apps under nginx + php-fpm.

    bench/frameworks.py [--tusk-bin target/release/tusk] [--rounds 5] [--seconds 10]
                        [--connections 8] [--workers 2] [--output BENCHMARKS.md]

For each example (examples/slim, examples/symfony, examples/laravel) it requests the app's
`/<framework>/page` route (a routed controller rendering a small HTML page) with wrk, on

  * Tusk: the example deployed as is (`runtime: php-82`, worker mode: booted once per
    instance), the node started with `--max-instances WORKERS`;
  * nginx + php-fpm: the same copy of the app through its classic front controller
    (`public/index.php`, booting the framework per request), `pm = static` with WORKERS
    children, opcache on with `validate_timestamps=0`.

Rounds alternate the two servers; the report gives the median requests/s and p50 latency of
the rounds and the ratio. `--output FILE` replaces the section between
`<!-- frameworks:begin -->` and `<!-- frameworks:end -->` in FILE (BENCHMARKS.md). Standard
library only; needs nginx, wrk and php-fpm8.2 (scripts/install-deps.sh with
TUSK_WITH_BENCH_TOOLS=1). Every process it starts is stopped on exit.
"""

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuskbench.clients import HttpConn, http_request  # noqa: E402
from tuskbench.loadgen import median, wrk  # noqa: E402
from tuskbench.procs import Procs, cpu_delta, cpu_seconds, install_signal_handlers, tree  # noqa: E402
from tuskbench.servers import Nginx, PhpFpm, TuskNode, fastcgi_location  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ["slim", "symfony", "laravel"]
BEGIN, END = "<!-- frameworks:begin -->", "<!-- frameworks:end -->"
# What php-fpm gets besides its php.ini: what Tusk gives php-cgi for read-only code.
FPM_FLAGS = ["opcache.enable=1", "opcache.validate_timestamps=0", "expose_php=0"]


def log(msg):
    print(f"[frameworks] {msg}", file=sys.stderr, flush=True)


def check(port, path, want=b"<h1>Hello"):
    c = HttpConn("127.0.0.1", port, timeout=30)
    try:
        r = c.request(http_request("GET", path, "127.0.0.1"))
    finally:
        c.close()
    if r.status != 200 or want not in r.body:
        raise RuntimeError(f"GET {path} on port {port}: {r.status} {r.body[:300]!r}")


def prepare_apps(work):
    """A copy of each example; Laravel gets its key from a .env, which both servers load."""
    out = {}
    for fw in FRAMEWORKS:
        dst = work / "apps" / fw
        shutil.copytree(ROOT / "examples" / fw, dst, ignore=shutil.ignore_patterns("*.php.cache"))
        out[fw] = dst
        # Tusk gives an instance CPU in proportion to memorySize, as Lambda does (1769 MB = one
        # core); a php-fpm child may use a whole core: give the instances the same.
        yml = dst / "serverless.yml"
        yml.write_text(re.sub(r"(?m)^(\s*)memorySize: .*$", r"\1memorySize: 1769", yml.read_text()))
    key = "base64:" + __import__("base64").b64encode(os.urandom(32)).decode()
    (out["laravel"] / ".env").write_text(f"APP_ENV=production\nAPP_KEY={key}\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tusk-bin", default=str(ROOT / "target/release/tusk"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="php-fpm children = Tusk --max-instances")
    ap.add_argument("--only", help="comma-separated frameworks (default: all)")
    ap.add_argument("--tusk-args", default="", help="extra `tusk serve` arguments, e.g. '--sandbox off'")
    ap.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke run")
    ap.add_argument("--output", help="write the results section into this markdown file")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1
    frameworks = args.only.split(",") if args.only else FRAMEWORKS
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not shutil.which(tool, path="/usr/sbin:/sbin"):
            sys.exit(f"{tool} is missing: TUSK_WITH_BENCH_TOOLS=1 scripts/install-deps.sh")
    if not Path(args.tusk_bin).exists():
        sys.exit(f"no tusk binary at {args.tusk_bin}: cargo build --release --bin tusk")

    install_signal_handlers()
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="tusk-frameworks-"))
    results = {}
    apps_dirs = {}
    try:
        apps = apps_dirs = prepare_apps(work)
        node = TuskNode(procs, args.tusk_bin, work / "tusk",
                        ["--max-instances", str(args.workers), *shlex.split(args.tusk_args)]).start()
        fpm = PhpFpm(procs, work / "fpm", "frameworks", args.workers, FPM_FLAGS).start()
        locations = "\n".join(
            fastcgi_location(f"/{fw}/", fpm.sock, apps[fw] / "public/index.php") for fw in frameworks
        )
        nginx = Nginx(procs, work / "fpm", "frameworks", locations).start()
        for fw in frameworks:
            node.deploy(apps[fw])
        for fw in frameworks:
            path = f"/{fw}/page?name=bench"
            check(node.port, path)
            check(nginx.port, path)
            # Warm-up: instances started and booted, opcache filled, php-fpm children busy once.
            for port in (node.port, nginx.port):
                wrk(f"http://127.0.0.1:{port}{path}", args.connections, 1)
            runs = {"tusk": [], "fpm": []}
            # The servers' whole process trees: node + instances; nginx + php-fpm master + children.
            pids = {"tusk": lambda: tree(node.proc.pid),
                    "fpm": lambda: tree(nginx.proc.pid) + tree(fpm.proc.pid)}
            for rnd in range(args.rounds):
                order = [("tusk", node.port), ("fpm", nginx.port)]
                if rnd % 2:
                    order.reverse()
                for name, port in order:
                    before = cpu_seconds(pids[name]())
                    r = wrk(f"http://127.0.0.1:{port}{path}", args.connections, args.seconds)
                    r["cpu_us"] = cpu_delta(before, cpu_seconds(pids[name]())) * 1e6 / max(1, r["requests"])
                    if r["errors"]:
                        raise RuntimeError(f"{fw} on {name}: {r['errors']} failed requests\n{r['raw']}")
                    runs[name].append(r)
                    log(f"{fw} round {rnd + 1}/{args.rounds} {name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                        f"CPU {r['cpu_us']:.0f} µs/request")
            results[fw] = {
                name: {"rps": median([r["rps"] for r in rs]), "p50": median([r["p50_ms"] for r in rs]),
                       "cpu": median([r["cpu_us"] for r in rs]), "all": [r["rps"] for r in rs]}
                for name, rs in runs.items()
            }
        nginx.stop()
        fpm.stop()
        node.stop()
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        # What the php-fpm side of the Symfony app compiled (Tusk's instances use their own /tmp).
        if "symfony" in apps_dirs:
            import hashlib
            shutil.rmtree(Path(tempfile.gettempdir()) / ("symfony-" + hashlib.md5(str(apps_dirs["symfony"]).encode()).hexdigest()[:12]),
                          ignore_errors=True)

    command = "bench/frameworks.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = render(results, args, command)
    print(text)
    if args.output:
        write_section(Path(args.output), text)
    return 0


def render(results, args, command):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.machine())
    load = os.getloadavg()[0]
    lines = [
        BEGIN,
        "## Frameworks: worker mode vs nginx + php-fpm",
        "",
        f"`{command.strip()}` — {datetime.date.today()}, {os.cpu_count()} × {cpu}, load average {load:.1f} at the end;",
        f"{args.rounds} rounds of {args.seconds} s, wrk with {args.connections} connections, {args.workers} PHP workers on",
        "each side (php-fpm `pm = static`, Tusk `--max-instances` with `memorySize: 1769`, i.e. one",
        "core per instance as a php-fpm child may use), the same copy of each example app,",
        "`GET /<framework>/page` (router, controller, a small HTML page). Medians of the rounds.",
        "",
        "| app | Tusk worker mode req/s | nginx + php-fpm req/s | req/s ratio | Tusk p50 | php-fpm p50 "
        "| CPU per request Tusk / nginx + php-fpm | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fw, r in results.items():
        t, f = r["tusk"], r["fpm"]
        ratio = t["rps"] / f["rps"] if f["rps"] else float("nan")
        cpu_ratio = f["cpu"] / t["cpu"] if t["cpu"] else float("nan")
        lines.append(f"| {fw} | {t['rps']:.0f} | {f['rps']:.0f} | **{ratio:.1f}×** | {t['p50']:.2f} ms | {f['p50']:.2f} ms "
                     f"| {t['cpu']:.0f} µs / {f['cpu']:.0f} µs | **{cpu_ratio:.1f}×** |")
    lines += [
        "",
        "CPU per request = utime + stime of the server's whole process tree during the wrk run",
        "(Tusk: the node and its instances; rival: nginx, php-fpm master and children) divided by",
        "the requests served; wrk's own CPU is not counted. On a machine shared with other work the",
        "req/s ratio moves with the load, the CPU ratio much less: it is the throughput ratio a",
        "dedicated, CPU-bound machine would show.",
        "",
        "Per-round req/s (Tusk / php-fpm): "
        + "; ".join(f"{fw} {[round(x) for x in r['tusk']['all']]} / {[round(x) for x in r['fpm']['all']]}" for fw, r in results.items()),
        "",
        "Why: php-fpm runs the whole front controller per request (autoloaders, configuration,",
        "container or providers, routes); worker mode pays that once per instance and then only",
        "routes and renders. Both sides keep opcache; Tusk adds its HTTP→event→Runtime API hop.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path, text):
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        new = head + text.rstrip("\n") + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
