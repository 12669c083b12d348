#!/usr/bin/env python3
"""What loading the distribution's PHP extensions costs a cold start: CPU time (user + system,
from rusage) per `php -r ''` with Debian's conf.d against the copy a Tusk node writes for its
instances (DATA_DIR/runtime/php/conf.d/cli: the same files minus the opt-in extensions).
Rounds alternate the two, so load from other work hits both alike.

    bench/php-start-cost.py [--tusk-bin target/debug/tusk] [--starts 60] [--rounds 5]
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def cpu_ms_per_start(env, starts):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(starts):
        subprocess.run(["php", "-r", ""], env=env, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return used / starts * 1000


def node_ini_copy(tusk_bin, work):
    """Starts a node just long enough for it to write its copy of conf.d."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = work / "data"
    node = subprocess.Popen([tusk_bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                             "--sandbox", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        copy = data / "runtime" / "php" / "conf.d" / "cli"
        deadline = time.time() + 30
        while time.time() < deadline and not any(copy.glob("*.ini")):
            time.sleep(0.1)
        kept = work / "conf.d"
        shutil.copytree(copy, kept)
        return kept
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tusk-bin", default="target/debug/tusk")
    ap.add_argument("--starts", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tusk-php-start-") as tmp:
        work = Path(tmp)
        copy = node_ini_copy(args.tusk_bin, work)
        base = {k: v for k, v in os.environ.items() if k != "PHP_INI_SCAN_DIR"}
        sides = {"distribution conf.d": base, "node's copy": {**base, "PHP_INI_SCAN_DIR": str(copy)}}
        runs = {name: [] for name in sides}
        for r in range(args.rounds):
            for name, env in sides.items():
                runs[name].append(cpu_ms_per_start(env, args.starts))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in runs.items()))
        dist, node = (statistics.median(v) for v in runs.values())
        print(f"CPU per PHP start, median of {args.rounds} rounds x {args.starts} starts: distribution conf.d "
              f"{dist:.1f} ms, node's copy {node:.1f} ms, saved {dist - node:.1f} ms ({(dist - node) / dist:.0%})")


if __name__ == "__main__":
    main()
