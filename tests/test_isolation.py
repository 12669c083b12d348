"""Hostile functions against the sandbox (issue 3): each attack is contained and reported, a
well-behaved function keeps answering throughout, and the node stays up.

Runs a node of its own with `--sandbox full` (needs root; skipped otherwise). docs/isolation.md
has the table of what these tests observe.
"""

import base64
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import Node, write_project

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="full isolation needs root")

UID_BASE = 1_500_000_000

CANARY = {
    "serverless.yml": """
service: canary
provider:
  name: aws
  runtime: php-82
functions:
  hello:
    handler: hello.php
""",
    "hello.php": "<?php return fn ($e) => ['n' => $e['n'] ?? null];",
}

VICTIM = {
    "serverless.yml": """
service: victim
provider:
  name: aws
  runtime: php-82
functions:
  api:
    handler: api.php
""",
    "api.php": "<?php return fn ($e) => ['api' => getenv('AWS_LAMBDA_RUNTIME_API'), 'got' => $e];",
    "secret.txt": "victim-secret-3f9a1c\n",
}

HOSTILE = {
    "serverless.yml": """
service: hostile
provider:
  name: aws
  runtime: php-82
  timeout: 10
functions:
  read:
    handler: read.php
  steal:
    handler: steal.php
  write:
    handler: write.php
  filltmp:
    handler: filltmp.php
    ephemeralStorageSize: 512
  oom:
    handler: oom.php
    memorySize: 128
  forkbomb:
    handler: forkbomb.php
    timeout: 3
  spin:
    handler: spin.php
    timeout: 2
  cpushare:
    handler: cpushare.php
    memorySize: 128
  killall:
    handler: killall.php
  stdout:
    handler: stdout.php
    timeout: 60
  sleep:
    handler: sleep.php
    timeout: 1
  exit:
    handler: exit.php
  offline:
    handler: net.php
    network: none
  online:
    handler: net.php
""",
    # Reads each path; reports what it got or the error PHP saw.
    "read.php": r"""<?php return function ($e) {
    $out = [];
    foreach ($e['paths'] as $p) {
        $c = @file_get_contents($p);
        $out[$p] = $c === false ? 'ERR ' . (error_get_last()['message'] ?? '?') : 'READ ' . substr($c, 0, 60);
    }
    foreach ($e['globs'] ?? [] as $g) {
        $out['glob ' . $g] = glob($g) ?: [];
    }
    $out['proc'] = array_values(array_filter(scandir('/proc'), 'ctype_digit'));
    $out['root'] = array_values(array_diff(scandir('/'), ['.', '..']));
    $out['uid'] = posix_getuid();
    return $out;
};""",
    # Talks to a Runtime API that is not its own.
    "steal.php": r"""<?php return function ($e) {
    $s = @stream_socket_client('tcp://' . $e['api'], $errno, $err, 2);
    if ($s === false) { return ['connected' => false, 'error' => $err]; }
    stream_set_timeout($s, 2);
    fwrite($s, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n");
    $reply = (string) fread($s, 4096);
    return ['connected' => true, 'reply' => $reply, 'eof' => feof($s)];
};""",
    "write.php": r"""<?php return function ($e) {
    $out = [];
    foreach (['/var/task/x', '/opt/x', '/etc/x', '/usr/x', '/x', '/dev/x', '/proc/sys/kernel/hostname', '/tmp/x'] as $p) {
        $ok = @file_put_contents($p, 'pwned');
        $out[$p] = $ok === false ? 'ERR ' . (error_get_last()['message'] ?? '?') : "WROTE $ok";
    }
    return $out;
};""",
    "filltmp.php": r"""<?php return function ($e) {
    $chunk = str_repeat('x', 1 << 20);
    $f = fopen('/tmp/fill', 'w');
    $written = 0; $error = null;
    for ($i = 0; $i < 700; $i++) {
        $n = @fwrite($f, $chunk);
        if ($n === false || $n < strlen($chunk)) { $written += (int) $n; $error = error_get_last()['message'] ?? 'short write'; break; }
        $written += $n;
    }
    @fflush($f); fclose($f);
    return ['written_mb' => round($written / 1048576, 1), 'error' => $error, 'tmp_total_mb' => round(disk_total_space('/tmp') / 1048576)];
};""",
    "oom.php": r"""<?php return function ($e) {
    ini_set('memory_limit', '-1');
    $a = [];
    for ($i = 0; $i < 100; $i++) { $a[] = str_repeat(chr(65 + $i % 26), 10 << 20); }
    return count($a);
};""",
    "forkbomb.php": r"""<?php return function ($e) {
    exec("sh -c 'f() { f | f & }; f' >/dev/null 2>&1 &");
    sleep(30);
    return 'the bomb did not stop me';
};""",
    "spin.php": "<?php return function ($e) { while (true) {} };",
    "cpushare.php": r"""<?php return function ($e) {
    $cpu = function () { $r = getrusage(); return $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6; };
    $c0 = $cpu(); $t0 = microtime(true);
    while (microtime(true) - $t0 < 1.5) {}
    return ['cpu_s' => $cpu() - $c0, 'wall_s' => microtime(true) - $t0];
};""",
    "killall.php": r"""<?php return function ($e) {
    // pid => state (R, S, Z...) of every process the instance can see.
    $ps = function () {
        $out = [];
        foreach (array_filter(scandir('/proc'), 'ctype_digit') as $p) {
            $stat = @file_get_contents("/proc/$p/stat");
            if ($stat !== false) { $out[$p] = explode(' ', substr($stat, strrpos($stat, ')') + 2))[0]; }
        }
        return $out;
    };
    exec('sleep 100 >/dev/null 2>&1 &');
    $before = $ps();
    exec('kill -9 -1 2>&1', $out, $rc);
    usleep(100000);
    return ['rc' => $rc, 'before' => $before, 'after' => $ps(), 'alive' => true];
};""",
    "stdout.php": r"""<?php return function ($e) {
    $line = str_repeat('x', 1023) . "\n";
    for ($i = 0; $i < 102400; $i++) { echo $line; }
    return 'printed 100 MB';
};""",
    "sleep.php": "<?php return function ($e) { sleep(5); return 'woke up'; };",
    "exit.php": r"""<?php return function ($e) { echo "half a response\n"; exit(1); };""",
    "net.php": r"""<?php return function ($e) {
    $s = @stream_socket_client('tcp://' . $e['target'], $errno, $err, 2);
    $devs = array_map(fn ($l) => trim(explode(':', $l)[0]), array_slice(file('/proc/net/dev'), 2));
    $api = @stream_socket_client('tcp://' . getenv('AWS_LAMBDA_RUNTIME_API'), $e2, $m2, 2);
    return ['reached' => $s !== false, 'error' => $err, 'interfaces' => $devs, 'own_api' => $api !== false];
};""",
}

BACKGROUND = {
    "serverless.yml": """
service: leftover
provider:
  name: aws
  runtime: php-82
functions:
  bg:
    handler: bg.php
""",
    "bg.php": r"""<?php return function ($e) {
    exec("sh -c 'while :; do :; done' >/dev/null 2>&1 &");
    exec('sleep 1000 >/dev/null 2>&1 &');
    return ['uid' => posix_getuid()];
};""",
}

CRASHWEB = {
    "serverless.yml": """
service: crashweb
provider:
  name: aws
  runtime: php-82-fpm
functions:
  web:
    handler: public/index.php
    events:
      - httpApi: '*'
""",
    "public/index.php": r"""<?php
if (isset($_GET['exit'])) { echo 'partial'; exit(1); }
if (!isset($_GET['crash'])) { echo 'fine'; return; }
echo str_repeat('partial ', 1000);
flush();
// Recursion through an internal function grows the C stack: PHP 8.2 dies with SIGSEGV in the
// middle of the response.
function down($n) { return array_map('down', [$n + 1]); }
down(0);
""",
}


@pytest.fixture(scope="module")
def iso(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation")
    n = Node(root / "data", extra_args=["--sandbox", "full"]).start()
    for name, files in [("canary", CANARY), ("victim", VICTIM), ("hostile", HOSTILE), ("crashweb", CRASHWEB)]:
        n.deploy(write_project(root / name, files))
    n.root = root
    yield n
    n.stop()


class Canary:
    """Invokes a well-behaved function in a loop while an attack runs."""

    def __init__(self, node):
        self.node = node
        self.ok = 0
        self.failures = []
        self.worst_ms = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        s = requests.Session()
        i = 0
        while not self.stop.is_set():
            i += 1
            t = time.perf_counter()
            try:
                r = s.post(
                    f"{self.node.url}/2015-03-31/functions/canary-dev-hello/invocations",
                    data=json.dumps({"n": i}),
                    headers=self.node.auth(),
                    timeout=30,
                )
                if r.status_code == 200 and r.json() == {"n": i}:
                    self.ok += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                self.failures.append(repr(e))
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - t) * 1000)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)
        assert not self.failures, self.failures[:5]
        assert self.ok > 0
        assert self.node.proc.poll() is None, "the node died"
        assert requests.get(self.node.url + "/_tusk/health", timeout=5).status_code == 200
        print(f"  canary: {self.ok} ok, 0 failed, worst {self.worst_ms:.0f} ms")


def invoke(node, name, payload=None):
    r = node.invoke(name, payload or {}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.status_code == 200, r.text
    log = base64.b64decode(r.headers.get("X-Amz-Log-Result", "")).decode(errors="replace")
    return r, log


def sandbox_processes():
    """(pid, uid, state) of every process running as an instance uid, seen from the host."""
    out = subprocess.run(["ps", "-eo", "pid=,uid=,stat="], capture_output=True, text=True).stdout
    rows = [l.split() for l in out.splitlines()]
    return [(int(p), int(u), s) for p, u, s in rows if int(u) >= UID_BASE]


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def test_host_secrets_and_other_functions_are_invisible(iso):
    data = iso.data_dir
    victim_code = [p for p in (data / "code").glob("*/secret.txt")]
    assert victim_code, "the victim's package should be unpacked on the host"
    paths = [
        "/etc/shadow",
        "/root/.bashrc",
        str(data / "admin.token"),
        str(data / "tusk.db"),
        str(victim_code[0]),
        "/var/task/../../" + str(victim_code[0]).lstrip("/"),
        "/proc/1/root/etc/shadow",
        "/etc/passwd",
    ]
    globs = [str(data / "code" / "*"), "/var/task/../*", "/proc/*/root/var/task/secret.txt", "/home/*", "/opt/*"]
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-read", {"paths": paths, "globs": globs})
    out = r.json()
    print("  read:", json.dumps(out)[:1500])
    for p in paths[:-1]:
        assert out[p].startswith("ERR"), (p, out[p])
        assert "No such file or directory" in out[p]
    assert "sbx_user" in out["/etc/passwd"] or "root:x:0:0" in out["/etc/passwd"]
    assert "victim-secret" not in json.dumps(out)
    assert out["glob " + str(data / "code" / "*")] == []
    assert out["glob /home/*"] == []
    assert "/opt/bootstrap.php" in out["glob /opt/*"]
    # Its own PID namespace: only its own processes.
    assert out["proc"] == ["1"], out["proc"]
    assert set(out["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr", "var"}
    assert out["uid"] >= UID_BASE


def test_runtime_api_of_another_instance_refuses(iso):
    api = iso.invoke("victim-dev-api", {"warm": 1}).json()["api"]
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-steal", {"api": api})
    out = r.json()
    print("  steal:", out)
    # The listener is reachable on the host network, but it hangs up on strangers.
    assert out["connected"] is False or (out["reply"] == "" and out["eof"]), out
    assert iso.invoke("victim-dev-api", {"after": 1}).json()["got"] == {"after": 1}


def test_writes_outside_tmp_fail(iso):
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-write")
    out = r.json()
    print("  write:", out)
    for p, result in out.items():
        if p == "/tmp/x":
            assert result == "WROTE 5"
        else:
            assert result.startswith("ERR"), (p, result)
            assert re.search(r"Read-only file system|Permission denied|No such file", result), (p, result)


def test_tmp_is_capped_at_ephemeral_storage_size(iso):
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-filltmp")
    out = r.json()
    print("  filltmp:", out)
    assert out["tmp_total_mb"] == 512
    assert out["written_mb"] <= 512
    assert "No space left on device" in (out["error"] or "")


def test_memory_limit_reports_out_of_memory(iso):
    with Canary(iso):
        r, log = invoke(iso, "hostile-dev-oom")
    body = r.json()
    print("  oom:", body, "|", [l for l in log.splitlines() if l.startswith("REPORT")])
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    report = [l for l in log.splitlines() if l.startswith("REPORT")][0]
    used = int(re.search(r"Max Memory Used: (\d+) MB", report).group(1))
    assert used <= 129, report
    # A fresh instance takes the next invocation (which runs out of memory the same way).
    r2, _ = invoke(iso, "hostile-dev-oom")
    assert r2.json()["errorType"] == "Runtime.OutOfMemory"


def test_fork_bomb_is_contained(iso):
    peak = [0, None]  # (processes, uid) of the busiest instance
    done = threading.Event()

    def sample():
        # The bombing instance is the uid with the most processes.
        while not done.is_set():
            per_uid = {}
            for _, uid, _ in sandbox_processes():
                per_uid[uid] = per_uid.get(uid, 0) + 1
            for uid, n in per_uid.items():
                if n > peak[0]:
                    peak[:] = [n, uid]
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    with Canary(iso):
        sampler.start()
        r, _ = invoke(iso, "hostile-dev-forkbomb")
        done.set()
        sampler.join()
    body = r.json()
    print("  forkbomb:", body, "peak processes of the instance:", peak[0])
    assert body["errorType"] == "Sandbox.Timedout"
    assert 64 < peak[0] <= 128, peak[0]
    deadline = time.time() + 5
    while time.time() < deadline and any(p[1] == peak[1] for p in sandbox_processes()):
        time.sleep(0.1)
    assert not [p for p in sandbox_processes() if p[1] == peak[1]], "the bomb's processes outlived the instance"


def test_spinning_is_stopped_by_the_timeout(iso):
    with Canary(iso):
        r, log = invoke(iso, "hostile-dev-spin")
    body = r.json()
    print("  spin:", body["errorType"], body["errorMessage"])
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]


def test_cpu_share_follows_memory(iso):
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-cpushare")
    out = r.json()
    share = out["cpu_s"] / out["wall_s"]
    print(f"  cpushare at 128 MB: {share:.3f} of a core (Lambda: {128 / 1769:.3f})")
    assert share < 0.2, out


def test_kill_minus_one_stays_inside(iso):
    with Canary(iso):
        r, _ = invoke(iso, "hostile-dev-killall")
    out = r.json()
    print("  killall:", out)
    assert out["alive"] is True
    assert len(out["before"]) >= 2, out
    # Only the instance's own processes died (zombies until the instance goes); PID 1, the
    # runtime, cannot be killed from inside its namespace.
    assert {p: s for p, s in out["after"].items() if s != "Z"} == {"1": out["after"]["1"]}, out


def test_background_processes_are_frozen_then_killed(iso, tmp_path):
    with Canary(iso):
        iso.deploy(write_project(tmp_path / "leftover", BACKGROUND))
        uid = iso.invoke("leftover-dev-bg").json()["uid"]
        time.sleep(0.3)
        procs = [p for p in sandbox_processes() if p[1] == uid]
        print("  background after return:", procs)
        assert len(procs) >= 3, procs  # php, the busy loop, sleep
        pids = [p[0] for p in procs]
        before = cpu_ticks(pids)
        time.sleep(1.0)
        spent = cpu_ticks(pids) - before
        print(f"  CPU ticks used by the idle instance in 1 s: {spent}")
        assert spent <= 2, "a frozen instance used CPU"
        iso.cli("remove", str(tmp_path / "leftover"))
        deadline = time.time() + 10
        while time.time() < deadline and any(p[1] == uid for p in sandbox_processes()):
            time.sleep(0.1)
        assert not [p for p in sandbox_processes() if p[1] == uid], "background processes outlived the instance"


def test_100_mb_of_stdout(iso):
    with Canary(iso):
        t = time.perf_counter()
        r, log = invoke(iso, "hostile-dev-stdout")
        took = time.perf_counter() - t
    print(f"  stdout: {r.json()} in {took:.1f} s, tail bytes: {len(log)}")
    assert r.json() == "printed 100 MB"
    assert len(log) <= 8192


def test_sleep_past_the_timeout(iso):
    with Canary(iso):
        r, log = invoke(iso, "hostile-dev-sleep")
    body = r.json()
    print("  sleep:", body)
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in log


def test_back_to_back_timeouts_are_each_reported_as_timeouts(iso):
    """An instance killed by a timeout is never handed the next event: every one of many
    concurrent, back-to-back timeouts reports Sandbox.Timedout (not an exit error)."""
    import concurrent.futures

    def three_in_a_row(_):
        return [invoke(iso, "hostile-dev-sleep")[0].json().get("errorType") for _ in range(3)]

    with Canary(iso):
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            kinds = [k for batch in pool.map(three_in_a_row, range(6)) for k in batch]
    assert kinds == ["Sandbox.Timedout"] * 18, kinds


def test_exit_in_the_middle_of_an_invocation(iso):
    with Canary(iso):
        r, log = invoke(iso, "hostile-dev-exit")
    body = r.json()
    print("  exit:", body)
    assert body["errorType"] == "Runtime.ExitError"
    assert "half a response" in log


def test_web_app_dying_mid_response(iso):
    with Canary(iso):
        r = requests.get(iso.url + "/?exit=1", timeout=30)
        print("  web exit():", r.status_code, r.text[:120])
        assert (r.status_code, r.text) == (200, "partial")
        r = requests.get(iso.url + "/?crash=1", timeout=30)
        print("  web crash:", r.status_code, r.text[:120])
        assert r.status_code == 502
        assert requests.get(iso.url + "/", timeout=30).text == "fine"


def test_network_none(iso):
    target = f"127.0.0.1:{iso.port}"
    with Canary(iso):
        off = iso.invoke("hostile-dev-offline", {"target": target}).json()
        on = iso.invoke("hostile-dev-online", {"target": target}).json()
    print("  network none:", off, "| default:", on)
    assert off["reached"] is False and off["own_api"] is True
    assert off["interfaces"] == ["lo"]
    assert on["reached"] is True
