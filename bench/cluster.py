#!/usr/bin/env python3
"""Sync throughput of 1, 2 and 3 Tusk nodes over a 3-server NATS JetStream cluster, on this
machine: wrk drives the Lambda Invoke API of a PHP hello function, the same total number of
connections split evenly over the nodes. Also one node without --cluster, for the cost of
publishing every log line to JetStream. Results go in docs/cluster.md.

    bench/cluster.py [--seconds 10] [--connections 16] [--tusk-bin target/release/tusk]
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from tuskbench.loadgen import post_script, wrk  # noqa: E402
from conftest import Node, free_port, write_project  # noqa: E402
from test_cluster import NatsServer  # noqa: E402

TOKEN = "bench-cluster-token-0123456789"
APP = {
    "serverless.yml": "service: b\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  hello:\n    handler: index.php\n",
    "index.php": "<?php return fn ($e) => ['hello' => $e['name'] ?? 'world'];",
}


def run(nodes, connections, seconds, work):
    script = post_script(work / "post.lua", '{"name":"bench"}', {"Authorization": f"Bearer {TOKEN}"})
    results = [None] * len(nodes)
    share = max(1, connections // len(nodes))

    def one(i, n):
        results[i] = wrk(f"{n.url}/2015-03-31/functions/b-dev-hello/invocations", share, seconds,
                         threads=1, script=script)

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rps = sum(r["rps"] for r in results)
    errors = sum(r["errors"] for r in results)
    p99 = max(r["p99_ms"] for r in results)
    return rps, errors, p99


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--tusk-bin", default=str(ROOT / "target" / "release" / "tusk"))
    args = ap.parse_args()
    os.environ["TUSK_BIN"] = args.tusk_bin
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-cluster-"))
    servers, nodes = [], []
    try:
        ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        (work / "nats").mkdir()
        for i, (port, cport, mport) in enumerate(ports):
            routes = [c for j, (_, c, _) in enumerate(ports) if j != i]
            servers.append(NatsServer(work / "nats", f"n{i}", port, cport, mport, routes).start())
        while not all(s.healthy() for s in servers):
            time.sleep(0.2)
        project = write_project(work / "app", APP)
        rows = []

        single = Node(work / "single" / "data", env={"TUSK_ADMIN_TOKEN": TOKEN}).start()
        nodes.append(single)
        single.deploy(project)
        run([single], args.connections, 2, work)  # warm up
        rows.append(("1 node, no --cluster", *run([single], args.connections, args.seconds, work)))
        single.stop()
        nodes.remove(single)

        env = {"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": ",".join(s.url for s in servers)}
        for i in range(3):
            nodes.append(Node(work / f"node{i}" / "data", env=env).start())
            if i == 0:
                nodes[0].deploy(project)
            while nodes[-1].invoke("b-dev-hello").status_code != 200:
                time.sleep(0.1)
            run(nodes, args.connections, 2, work)  # warm up the new node's instances
            rows.append((f"{i + 1} node{'s' if i else ''}, --cluster", *run(nodes, args.connections, args.seconds, work)))

        print(f"\n{args.connections} connections in all, {args.seconds:.0f} s per run, {os.cpu_count()} CPUs\n")
        print("| setup | requests/s | errors | worst p99 |")
        print("|---|---|---|---|")
        for name, rps, errors, p99 in rows:
            print(f"| {name} | {rps:.0f} | {errors} | {p99:.1f} ms |")
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        for s in servers:
            s.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
