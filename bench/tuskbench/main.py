"""bench/run: the benchmark suite of issue 5 (see BENCHMARKS.md for how to run and read it)."""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import report
from .procs import Procs, install_signal_handlers
from .scenarios import SCENARIOS
from .servers import WEB_FLAGS, which

ROOT = Path(__file__).resolve().parents[2]

# Debian packages the suite needs beyond scripts/install-deps.sh (which brings PHP, and nginx-light
# + wrk with TUSK_WITH_BENCH_TOOLS=1): the Symfony components of scenario 3.
SYMFONY_DEBS = ["php-symfony-http-kernel", "php-symfony-http-foundation", "php-symfony-routing",
                "php-symfony-event-dispatcher"]


class Config:
    def __init__(self, args):
        q = args.quick
        self.quick = q
        self.rounds = args.rounds or (1 if q else 5)
        self.wrk_seconds = args.seconds or (1 if q else 10)
        self.workers = args.workers
        self.seq_count = 300 if q else 5000
        self.seq_warmup = 50 if q else 500
        self.gw_count = 500 if q else 5000
        self.cold_total = 10 if q else 150
        self.cold_gap = 0.02
        self.burst_size = 64
        self.burst_rounds = self.rounds
        self.burst_max_instances = 32  # tusk serve's default --max-instances
        self.burst_timeout = 60
        self.idle_services = 10
        self.idle_functions = 100
        self.profile = args.profile
        self.tusk_args = shlex.split(args.tusk_args or "")


class Suite:
    def __init__(self, cfg, tusk_bin, work):
        self.cfg = cfg
        self.tusk_bin = tusk_bin
        self.work = work
        self.procs = Procs()
        self.php_flags = None  # (cli flags, php-cgi flags) Tusk uses, discovered once
        self.problems = []  # scenarios that ran but got no successful response somewhere
        self.sandbox = None
        self.t0 = time.monotonic()

    def node(self, root):
        """A started Tusk node with the suite's extra `tusk serve` arguments."""
        from .servers import TuskNode
        n = TuskNode(self.procs, self.tusk_bin, root, self.cfg.tusk_args).start()
        if self.sandbox is None:
            self.sandbox = n.sandbox() or "(the node's log does not say)"
        return n

    def problem(self, msg):
        self.problems.append(msg)
        self.log("PROBLEM: " + msg)

    def log(self, msg):
        print(f"[{time.monotonic() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def install_deps(log):
    env = {**os.environ, "TUSK_WITH_BENCH_TOOLS": "1"}
    p = subprocess.run([str(ROOT / "scripts/install-deps.sh")], env=env)
    if p.returncode != 0:
        raise RuntimeError("scripts/install-deps.sh failed")
    missing = [d for d in SYMFONY_DEBS
               if "install ok installed" not in sh(["dpkg-query", "-W", "-f=${Status}", d]).stdout]
    if missing:
        log(f"installing {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", *missing],
                       check=True, stdout=subprocess.DEVNULL)
    for tool in ("wrk", "nginx", "php-fpm8.2", "php-cgi", "php"):
        which(tool)


def build(log):
    log("cargo build --release --bin tusk")
    p = subprocess.run(["cargo", "build", "--release", "--bin", "tusk"], cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError("cargo build --release --bin tusk failed")
    return ROOT / "target/release/tusk"


def _first_line(argv):
    try:
        p = sh(argv, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (p.stdout + p.stderr).strip()
    return text.splitlines()[0] if text else "?"


OPCACHE_KEYS = ["opcache.enable", "opcache.enable_cli", "opcache.memory_consumption", "opcache.interned_strings_buffer",
                "opcache.max_accelerated_files", "opcache.validate_timestamps", "opcache.jit", "opcache.jit_buffer_size",
                "opcache.file_cache", "opcache.preload"]


def _norm(v):
    v = (v or "").strip()
    return {"On": "1", "Off": "0", "no value": "", "<i>no value</i>": ""}.get(v, v) or "(empty)"


def opcache_settings(work, web_flags, cli_flags):
    """{setting: (php-cgi, php-fpm, php CLI)} as each binary sees it with the flags used."""
    probe = work / "opcache-probe.php"
    probe.write_text("<?php echo json_encode(['loaded' => extension_loaded('Zend OPcache')] + array_map('strval', "
                     "array_combine(%s, array_map('ini_get', %s))));" % (json.dumps(OPCACHE_KEYS), json.dumps(OPCACHE_KEYS)))
    out = {}
    d = lambda flags: [x for f in flags for x in ("-d", f)]  # noqa: E731
    try:
        cgi = json.loads(sh([which("php-cgi8.2", "php-cgi"), "-q", *d(web_flags), str(probe)], timeout=30).stdout)
        cli = json.loads(sh([which("php8.2", "php"), *d(cli_flags), str(probe)], timeout=30).stdout)
        fpm_text = sh([which("php-fpm8.2", "php-fpm"), "-i", *d(web_flags)], timeout=30).stdout
    except (ValueError, OSError, subprocess.TimeoutExpired) as e:
        return {"probe failed": (str(e), "", "")}
    for k in OPCACHE_KEYS:
        m = re.search(rf"^{re.escape(k)} => (.*?) => ", fpm_text, re.M)
        out[k] = (_norm(cgi.get(k)), _norm(m.group(1) if m else ""), _norm(cli.get(k)))
    out["Zend OPcache loaded"] = (str(cgi["loaded"]).lower(), str("Zend OPcache" in fpm_text).lower(), str(cli["loaded"]).lower())
    return out


def environment(tusk_bin):
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next((line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "?")
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT).stdout.strip() or "?"
    dirty = sh(["git", "status", "--porcelain", "--", ".", ":!bench", ":!BENCHMARKS.md"], cwd=ROOT).stdout.strip()
    ini_same = (Path("/etc/php/8.2/cgi/php.ini").read_bytes() == Path("/etc/php/8.2/fpm/php.ini").read_bytes()
                and sorted(os.listdir("/etc/php/8.2/cgi/conf.d")) == sorted(os.listdir("/etc/php/8.2/fpm/conf.d")))
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": commit + (" + uncommitted changes" if dirty else ""),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "php": _first_line([which("php8.2", "php"), "-v"]),
        "nginx": _first_line([which("nginx"), "-v"]),
        "php-fpm": _first_line([which("php-fpm8.2", "php-fpm"), "-v"]),
        "wrk": _first_line([which("wrk"), "-v"]),
        "tusk": _first_line([str(tusk_bin), "version"]) + f" (`{tusk_bin}`)",
        "ini": ("identical php.ini and conf.d (Debian's /etc/php/8.2/cgi and /etc/php/8.2/fpm)" if ini_same
                else "**different** php.ini or conf.d in /etc/php/8.2/cgi and /etc/php/8.2/fpm"),
    }


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 1 short round; checks that every scenario runs")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 5; --quick 1)")
    ap.add_argument("--seconds", type=float, help="seconds per wrk run (default 10; --quick 1)")
    ap.add_argument("--workers", type=int, default=4, help="PHP workers on each side in scenarios 1-2 (default 4)")
    ap.add_argument("--only", help="scenario numbers to run, e.g. 1,3")
    ap.add_argument("--tusk-bin", help="use this tusk binary instead of building target/release/tusk")
    ap.add_argument("--tusk-args", help="extra `tusk serve` arguments for every node, e.g. \"--sandbox off\"")
    ap.add_argument("--no-install", action="store_true", help="do not install missing Debian packages")
    ap.add_argument("--output", help="markdown file whose results section is rewritten (default BENCHMARKS.md; "
                                     "with --quick: none, the report goes to stdout)")
    ap.add_argument("--json", help="also write the raw measurements to this JSON file")
    ap.add_argument("--from-json", help="only re-render the report from a file written by --json (no runs)")
    ap.add_argument("--profile", action="store_true",
                    help="also perf-record the node during one extra wrk run in scenarios 1 and 2 (top frames go in the report)")
    ap.add_argument("--strict", action="store_true",
                    help="also exit non-zero when any request failed (by default only scenarios that cannot run fail)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs of every server)")
    args = ap.parse_args(argv)
    command = "bench/run" + ("" if not (argv or sys.argv[1:]) else " " + shlex.join(argv or sys.argv[1:]))

    install_signal_handlers()
    cfg = Config(args)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        cfg.rounds = saved.get("rounds", cfg.rounds)
        md = report.render(saved["results"], saved["env"], cfg, saved.get("command", command), saved.get("problems", []))
        out = args.output or str(ROOT / "BENCHMARKS.md")
        report.write_section(out, md)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    only = set(args.only.split(",")) if args.only else {k for k, _, _ in SCENARIOS}
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-"))
    os.chmod(work, 0o755)
    suite = None
    results = {}
    failed = []
    try:
        t0 = time.monotonic()
        log = lambda m: print(f"[{time.monotonic() - t0:7.1f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
        if not args.no_install:
            install_deps(log)
        tusk_bin = Path(args.tusk_bin).resolve() if args.tusk_bin else build(log)
        suite = Suite(cfg, tusk_bin, work)
        suite.t0 = t0
        env = environment(tusk_bin)
        load_before = loadavg()
        for key, title, fn in SCENARIOS:
            if key not in only:
                continue
            log(f"scenario {key}: {title}")
            started = time.monotonic()
            load = " ".join(loadavg())
            try:
                results[key] = fn(suite)
                results[key]["seconds_taken"] = time.monotonic() - started
                results[key]["load"] = f"{load} → {' '.join(loadavg())}"
            except Exception:
                tb = traceback.format_exc()
                log(f"scenario {key} FAILED:\n{tb}")
                results[key] = {"error": tb}
                failed.append(key)
            finally:
                suite.procs.stop_all()
            log(f"scenario {key} done in {time.monotonic() - started:.0f} s")
        env["tusk serve"] = ("`tusk serve " + shlex.join(cfg.tusk_args) + "`; " if cfg.tusk_args else "defaults; ") + \
            f"instance isolation: {suite.sandbox or '–'}"
        env["load"] = f"load average {' '.join(load_before)} before, {' '.join(loadavg())} after"
        cli_flags, web_flags = suite.php_flags or (None, None)
        if not web_flags:
            web_flags = results.get("1", {}).get("php_flags") or WEB_FLAGS
        cli_flags = cli_flags or ["opcache.enable_cli=1"]
        env["web_flags"] = web_flags
        env["cli_flags"] = cli_flags
        env["opcache"] = opcache_settings(work, web_flags, cli_flags)
        md = report.render(results, env, cfg, command, suite.problems)
        out = args.output or (None if args.quick else str(ROOT / "BENCHMARKS.md"))
        if out:
            report.write_section(out, md)
            log(f"wrote {out}")
        else:
            print(md)
        if args.json:
            Path(args.json).write_text(json.dumps({"env": env, "results": results, "command": command, "rounds": cfg.rounds,
                                                   "problems": suite.problems}, indent=1, default=str))
        log(f"total {time.monotonic() - t0:.0f} s; " + (f"FAILED scenarios: {', '.join(failed)}" if failed else "all scenarios ran"))
        for p in suite.problems:
            log(f"PROBLEM: {p}")
        request_errors = report.request_errors(results)
        if request_errors:
            log(f"request errors (reported, {'failing because of --strict' if args.strict else 'not failing the run'}): "
                + "; ".join(request_errors))
        return 1 if failed or suite.problems or (args.strict and request_errors) else 0
    finally:
        if suite:
            suite.procs.stop_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
