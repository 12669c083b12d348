"""Three Tusk nodes over a three-server NATS JetStream cluster, all on loopback.

Deploy on one node, invoke on all three, drive sync and async load through all three, then
kill -9 one Tusk node and one nats-server mid-run, and check: no async event lost, no schedule
tick doubled, every log line visible from a surviving node. Recovery times are printed (run
with -s to see them; TUSK_CLUSTER_LOG=info,tusk_cluster=trace for the nodes' NATS traffic).
Instances run with `--sandbox off` so the functions can leave markers in the test's directory.
The nats-servers require a token (`authorization { token: ... }`); the nodes get it from
TUSK_CLUSTER_TOKEN.
"""

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import Node, free_port, write_project
from test_events import sqs_client

TOKEN = "cluster-test-token-0123456789"
NATS_TOKEN = "nats-test-secret-9876543210"

APP = {
    "serverless.yml": """
service: ev
provider:
  name: aws
  runtime: php-82
  environment:
    MARK_DIR: ${env:MARK_DIR}
functions:
  work:
    handler: work.php
    timeout: 3
    maximumRetryAttempts: 2
    # Cluster-wide: 4 at a time per node of three, so the load lasts and the killed node
    # holds events.
    reservedConcurrency: 12
  hello:
    handler: hello.php
  tick:
    handler: tick.php
    maximumRetryAttempts: 0
    events:
      - schedule: rate(1 second)
constructs:
  jobs:
    type: queue
    batchSize: 5
    worker:
      handler: job.php
      # Visibility timeout 6 x 2 s: messages a dead node held come back after 12 s.
      timeout: 2
""",
    # Each finished event leaves a marker naming the worker's ancestors (one is the node).
    "ancestors.php": """<?php
function ancestors(): string {
    $pid = getmypid();
    $chain = [];
    for ($k = 0; $k < 8 && $pid > 1; $k++) {
        $stat = @file_get_contents("/proc/$pid/stat");
        if ($stat === false) { break; }
        $pid = (int) explode(' ', substr($stat, strrpos($stat, ')') + 2))[1];
        $chain[] = $pid;
    }
    return implode(',', $chain);
}
""",
    "work.php": """<?php
require_once __DIR__ . '/ancestors.php';
return function ($e) {
    $i = $e['i'];
    file_put_contents(getenv('MARK_DIR') . "/start-$i", ancestors() . "\\n", FILE_APPEND);
    usleep(($e['ms'] ?? 100) * 1000);
    file_put_contents(getenv('MARK_DIR') . "/work-$i", ancestors() . "\\n", FILE_APPEND);
    fwrite(STDERR, "done $i\\n");
    return ['i' => $i];
};
""",
    "hello.php": "<?php return fn ($e) => ['hello' => $e['name'] ?? 'world'];",
    "job.php": """<?php
require_once __DIR__ . '/ancestors.php';
return function ($event) {
    $dir = getenv('MARK_DIR');
    foreach ($event['Records'] as $r) { file_put_contents("$dir/jobstart-{$r['body']}", ancestors() . "\n", FILE_APPEND); }
    usleep(1000000);
    foreach ($event['Records'] as $r) { file_put_contents("$dir/job-{$r['body']}", ancestors() . "\n", FILE_APPEND); }
    return ['batchItemFailures' => []];
};
""",
    "tick.php": """<?php
require_once __DIR__ . '/ancestors.php';
return function ($e) {
    $t = $e['time'];
    file_put_contents(getenv('MARK_DIR') . "/tick-$t", $e['id'] . ' ' . ancestors() . "\\n", FILE_APPEND);
    fwrite(STDERR, "tick $t {$e['id']}\\n");
    return 'ok';
};
""",
}


def nats_bin():
    path = shutil.which("nats-server")
    if not path:
        pytest.skip("nats-server is not installed (scripts/install-deps.sh installs it)")
    return path


class NatsServer:
    def __init__(self, root: Path, name: str, port: int, cluster_port: int, monitor_port: int, routes,
                 authorization=f'token: "{NATS_TOKEN}"'):
        self.root, self.name = root, name
        self.authorization = authorization
        self.port, self.cluster_port, self.monitor_port = port, cluster_port, monitor_port
        self.routes = routes
        self.url = f"nats://127.0.0.1:{port}"
        self.proc = None

    def start(self):
        store = self.root / self.name / "js"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.root / f"{self.name}.conf"
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
        cluster = f"""
cluster {{
  name: tusk-test
  listen: 127.0.0.1:{self.cluster_port}
  routes: [{routes}]
}}
""" if self.routes else ""
        conf.write_text(f"""
server_name: {self.name}
listen: 127.0.0.1:{self.port}
http: 127.0.0.1:{self.monitor_port}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
authorization {{
  {self.authorization}
}}
{cluster}""")
        self.log = open(self.root / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen([nats_bin(), "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_nats_cluster(root: Path):
    """Three servers, or None when one could not start (a port picked by free_port() was
    taken meanwhile, e.g. as another server's outgoing route port)."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    servers = []
    for i, (port, cport, mport) in enumerate(ports):
        routes = [c for j, (_, c, _) in enumerate(ports) if j != i]
        servers.append(NatsServer(root, f"n{i}", port, cport, mport, routes).start())
    deadline = time.time() + 30
    while not all(s.healthy() for s in servers):
        if time.time() > deadline or any(s.proc.poll() is not None for s in servers):
            for s in servers:
                s.kill()
            return None
        time.sleep(0.2)
    return servers


@pytest.fixture
def nats_cluster(tmp_path):
    servers = None
    for attempt in range(3):
        root = tmp_path / f"nats{attempt}"
        root.mkdir()
        servers = start_nats_cluster(root)
        if servers:
            break
    assert servers, "the NATS cluster did not become healthy"
    yield servers
    for s in servers:
        s.kill()


def cluster_env(nats, **extra):
    """What every node of these tests gets: the admin token, the servers, the NATS token."""
    return {"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": ",".join(s.url for s in nats),
            "TUSK_CLUSTER_TOKEN": NATS_TOKEN, **extra}


@contextlib.contextmanager
def running_nodes(nats, tmp_path, count, **env):
    """`count` Tusk nodes of the cluster (`--sandbox off`, so functions can leave markers in
    the test's directory), killed when the block ends."""
    # APP ticks every second, which only a node started for tests accepts.
    args = ["--sandbox", "off", "--allow-second-schedules"]
    nodes = [Node(tmp_path / f"node{i}" / "data", extra_args=args, env=cluster_env(nats, **env))
             for i in range(count)]
    try:
        for n in nodes:
            n.start()
        yield nodes
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)


def collect_logs(node, function):
    """Every log line of `function` the node can read, paging by id."""
    lines, after = [], 0
    while True:
        r = requests.get(f"{node.url}/_tusk/functions/{function}/logs", params={"after_id": after, "limit": 5000},
                         headers=node.auth(), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        if not body["lines"]:
            return lines
        lines.extend(l["line"] for l in body["lines"])
        after = body["last_id"]


def wait_until(predicate, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_three_nodes_survive_a_tusk_and_a_nats_failure(nats_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with running_nodes(nats_cluster, tmp_path, 3, RUST_LOG=os.environ.get("TUSK_CLUSTER_LOG", "info")) as nodes:
        run(nodes, nats_cluster, marks, tmp_path)


def run(nodes, nats, marks, tmp_path):
    a, b, c = nodes
    # -- deploy on one node; it goes live on the others ---------------------------------------
    os.environ["MARK_DIR"] = str(marks)
    project = write_project(tmp_path / "app", APP)
    time.sleep(2.5)  # the nodes have heard each other announce themselves
    a.deploy(project)
    deployed = time.time()
    # `tusk deploy` answers once the other nodes serve the new version too.
    for n in (b, c):
        info = requests.get(f"{n.url}/_tusk/functions/ev-dev-hello", headers=n.auth(), timeout=10)
        assert info.status_code == 200 and info.json()["version"] == 1, info.text
    for n in (b, c):
        assert wait_until(lambda: n.invoke("ev-dev-hello", {"name": "x"}).status_code == 200, 30), \
            f"the deploy did not reach {n.url}"
    print(f"\ndeploy: every node served the new version when `tusk deploy` returned; "
          f"first calls answered {time.time() - deployed:.2f} s later")
    for n in nodes:
        r = n.invoke("ev-dev-hello", {"name": n.url})
        assert r.status_code == 200 and r.json() == {"hello": n.url}, r.text
        assert "ev-dev-work" in n.cli("ls").stdout

    # -- load: sync calls and async events through all three ----------------------------------
    total = int(os.environ.get("TUSK_CLUSTER_EVENTS", "600"))
    stop_sync = threading.Event()
    sync_log = []  # (time, node index, ok)

    def sync_load(i, node):
        s = requests.Session()
        url = f"{node.url}/2015-03-31/functions/ev-dev-hello/invocations"
        while not stop_sync.is_set():
            t = time.time()
            try:
                ok = s.post(url, data=b'{"name":"s"}', headers=node.auth(), timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            sync_log.append((t, i, ok))
            time.sleep(0.05)

    sync_threads = [threading.Thread(target=sync_load, args=(i, n), daemon=True) for i, n in enumerate(nodes)]
    for t in sync_threads:
        t.start()

    accepted = set()
    lock = threading.Lock()

    accept_log = []  # (start, seconds until accepted, refusals before)

    def send(i, targets):
        body = json.dumps({"i": i, "ms": 300})
        started = time.time()
        for attempt in range(50):
            node = targets[(i + attempt) % len(targets)]
            try:
                r = requests.post(f"{node.url}/2015-03-31/functions/ev-dev-work/invocations", data=body,
                                  headers={**node.auth(), "X-Amz-Invocation-Type": "Event"}, timeout=10)
                if r.status_code == 202:
                    with lock:
                        accepted.add(i)
                        accept_log.append((started, time.time() - started, attempt))
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"event {i} was never accepted")

    # Queue messages (SQS API, any node), taken by the `jobs` worker on every node.
    jobs_total = int(os.environ.get("TUSK_CLUSTER_JOBS", "600"))
    sqs = [sqs_client(n) for n in nodes]
    jobs_url = sqs[0].get_queue_url(QueueName="ev-dev-jobs")["QueueUrl"]

    def send_jobs(first, last, clients):
        for k, start in enumerate(range(first, last, 10)):
            entries = [{"Id": str(i), "MessageBody": str(i)} for i in range(start, min(start + 10, last))]
            for attempt in range(40):
                try:
                    if not clients[(k + attempt) % len(clients)].send_message_batch(
                            QueueUrl=jobs_url, Entries=entries).get("Failed"):
                        break
                except Exception:  # noqa: BLE001 (a node or NATS server going away)
                    pass
                time.sleep(0.25)
            else:
                raise AssertionError(f"queue messages {start}.. were never accepted")

    send_jobs(0, jobs_total // 2, sqs)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: send(i, nodes), range(total // 2)))
    # Kill the victim while it is working through events and messages, so it holds some unacked.
    victim = c
    victim_pid = victim.proc.pid

    def runs(path):
        """For each run recorded in a marker file: did the victim node run it?"""
        return [victim_pid in {int(x) for x in line.split(",") if x} for line in path.read_text().split()]

    def victim_working():
        return any(any(runs(p)) for p in marks.glob("work-*")) and \
            any(any(runs(p)) for p in marks.glob("jobstart-*"))

    assert wait_until(victim_working, 20, 0.1), "the victim node never took an async event and a queue message"
    # Any node reports the cluster-wide backlog (JetStream's, not its own database's).
    overview = requests.get(f"{a.url}/_tusk/events", headers=a.auth(), timeout=10).json()
    backlog = next(q for q in overview["queues"] if q["name"] == "async:ev-dev-work")
    assert backlog["visible"] + backlog["in_flight"] > 0, backlog
    time.sleep(0.5)
    killed_at = time.time()
    victim.stop(signal.SIGKILL)
    nats[2].kill()
    nats_killed_at = time.time()
    survivors = [a, b]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: send(i, survivors), range(total // 2, total)))
    send_jobs(jobs_total // 2, jobs_total, sqs[:2])
    sent_done = time.time()

    # -- no async event lost ------------------------------------------------------------------
    def done():
        return {int(p.name.split("-")[1]) for p in marks.glob("work-*")}

    assert wait_until(lambda: done() >= set(range(total)), 120, 0.25), \
        f"lost async events: {sorted(set(range(total)) - done())[:30]}"
    all_done = time.time()
    assert accepted == set(range(total))
    stop_sync.set()
    for t in sync_threads:
        t.join()
    ran_by = {int(p.name.split("-")[1]): runs(p) for p in marks.glob("work-*")}
    duplicates = sum(len(v) - 1 for v in ran_by.values())
    on_victim = sum(1 for v in ran_by.values() if any(v))
    # Events the victim had started but not finished when it died: another node must run them.
    started_on_victim = {int(p.name.split("-")[1]) for p in marks.glob("start-*") if any(runs(p))}
    held = {i for i in started_on_victim if not any(ran_by[i])}
    assert all(not all(ran_by[i]) for i in held)
    recovery = max((marks / f"work-{i}").stat().st_mtime for i in held) - killed_at if held else 0.0
    print(f"async: {total} events, 0 lost, {duplicates} ran twice (at-least-once), "
          f"{on_victim} finished on the killed node")
    print(f"async: {len(held)} events were in flight on the killed node; all redelivered and done "
          f"{recovery:.1f} s after the kill (AckWait = timeout 3 s + 10 s)")
    print(f"async: all events done {all_done - killed_at:.1f} s after the kill "
          f"({all_done - sent_done:.1f} s after the last was accepted)")

    # -- no queue message lost ------------------------------------------------------------------
    def jobs_done():
        return {int(p.name.split("-")[1]) for p in marks.glob("job-*")}

    assert wait_until(lambda: jobs_done() >= set(range(jobs_total)), 120, 0.25), \
        f"lost queue messages: {sorted(set(range(jobs_total)) - jobs_done())[:30]}"
    job_runs = {int(p.name.split("-")[1]): runs(p) for p in marks.glob("job-*")}
    job_started_on_victim = {int(p.name.split("-")[1]) for p in marks.glob("jobstart-*") if any(runs(p))}
    jobs_held = {i for i in job_started_on_victim if not any(job_runs[i])}
    jobs_recovery = max((marks / f"job-{i}").stat().st_mtime for i in jobs_held) - killed_at if jobs_held else 0.0
    print(f"queue: {jobs_total} messages, 0 lost, {sum(len(v) - 1 for v in job_runs.values())} handled twice; "
          f"{len(jobs_held)} were in flight on the killed node, all handled elsewhere "
          f"{jobs_recovery:.1f} s after the kill (visibility timeout 12 s)")

    after_kill = [(lat, tries) for t, lat, tries in accept_log if t >= nats_killed_at]
    print(f"async accepts after the NATS server kill: {len(after_kill)}, slowest "
          f"{max(l for l, _ in after_kill):.2f} s, {sum(n for _, n in after_kill)} refused and resent")

    # -- sync calls on the survivors across the NATS server failure ---------------------------
    after = sorted((t, ok) for t, i, ok in sync_log if i in (0, 1) and t >= nats_killed_at)
    failures = [t for t, ok in after if not ok]
    last_fail = max(failures) - nats_killed_at if failures else 0.0
    print(f"sync on survivors after the kills: {len(after)} calls, {len(failures)} failed, "
          f"last failure {last_fail:.2f} s after the kill")
    assert len(after) > 20 and len(failures) <= len(after) // 10

    # -- no schedule tick doubled -------------------------------------------------------------
    ticks = {}
    for p in marks.glob("tick-*"):
        ids = {line.split()[0] for line in p.read_text().splitlines() if line.strip()}
        ticks[p.name[5:]] = ids
    doubled = {t: ids for t, ids in ticks.items() if len(ids) > 1}
    assert not doubled, f"ticks fired twice: {doubled}"
    elapsed = all_done - deployed
    print(f"schedule: {len(ticks)} ticks in {elapsed:.0f} s, none doubled")
    assert len(ticks) >= elapsed * 0.6

    # -- every log line visible from a surviving node -----------------------------------------
    for reader in survivors:
        lines = collect_logs(reader, "ev-dev-work")
        logged = {int(l.split()[1]) for l in lines if l.startswith("done ")}
        # Lines the killed node had not yet shipped when it died are the only ones allowed
        # to be missing: events it finished just before kill -9.
        must = {i for i, runs in ran_by.items() if not all(runs)}
        missing = must - logged
        assert not missing, f"{reader.url} misses log lines of events {sorted(missing)[:20]}"
        lost_victim = {i for i in ran_by if i not in logged}
        print(f"logs via {reader.url}: {len(logged)} of {total} events logged; "
              f"{len(lost_victim)} unlogged, all run only on the killed node")
        tick_lines = [l for l in collect_logs(reader, "ev-dev-tick") if l.startswith("tick ")]
        assert len(tick_lines) >= len(ticks) - 3

    # -- with one NATS server still down: a new version reaches the others, so does a removal ----
    (tmp_path / "app" / "hello.php").write_text("<?php return fn ($e) => ['hello' => 'v2'];")
    b.deploy(tmp_path / "app")
    redeployed = time.time()
    info = requests.get(f"{a.url}/_tusk/functions/ev-dev-hello", headers=a.auth(), timeout=10)
    assert info.json()["version"] == 2, "tusk deploy returned before the other node switched"
    assert wait_until(lambda: a.invoke("ev-dev-hello", {}).json() == {"hello": "v2"}, 30), \
        "the new version did not reach the other node"
    print(f"redeploy on one survivor live on the other {time.time() - redeployed:.2f} s later")
    b.cli("remove", "--service", "ev")
    assert wait_until(lambda: a.invoke("ev-dev-hello", {}).status_code == 404, 30), \
        "the removal did not reach the other node"


SLOW = {
    "serverless.yml": """
service: busy
provider:
  name: aws
  runtime: php-82
functions:
  slow:
    handler: slow.php
    # Cluster-wide: one at a time per node of three.
    reservedConcurrency: 3
    events:
      - httpApi: 'GET /slow'
""",
    "slow.php": "<?php return function ($e) { usleep(1000000); return getmypid(); };",
}

# A php-82-fpm web app with room for one request per node of three.
SITE = {
    "serverless.yml": """
service: site
provider:
  name: aws
  runtime: php-82-fpm
functions:
  web:
    handler: index.php
    reservedConcurrency: 3
    events:
      - httpApi: 'GET /page'
      - httpApi: 'POST /page'
""",
    "index.php": """<?php
usleep((int) ($_GET['ms'] ?? 1000) * 1000);
setcookie('a', '1');
setcookie('b', '2');
header('Content-Type: application/json');
header('X-Served-Pid: ' . getmypid());
echo json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'query' => $_GET,
    'body' => file_get_contents('php://input'),
    'auth' => $_SERVER['HTTP_AUTHORIZATION'] ?? null,
    'remote' => $_SERVER['REMOTE_ADDR'],
    'server' => $_SERVER,
]);
""",
}


def test_a_full_node_forwards_sync_calls_to_one_with_room(nats_cluster, tmp_path):
    """reservedConcurrency 3 over three nodes is one instance per node: three calls at once on
    one node finish in about the time of one, because the node forwards what it has no free
    instance for."""
    with running_nodes(nats_cluster, tmp_path, 3) as nodes:
        a = nodes[0]
        a.deploy(write_project(tmp_path / "busy", SLOW))
        a.deploy(write_project(tmp_path / "site", SITE))
        for n in nodes:
            assert wait_until(lambda: n.invoke("busy-dev-slow").status_code == 200, 30)
            assert wait_until(lambda: requests.get(f"{n.url}/page?ms=0", timeout=30).status_code == 200, 30)
        time.sleep(2.5)  # every node has heard the others announce themselves

        def call(_):
            r = a.invoke("busy-dev-slow")
            return r.status_code, r.headers.get("x-tusk-served-by")

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(call, range(3)))
        took = time.time() - started
        assert all(status == 200 for status, _ in answers), answers
        served_by = {by for _, by in answers}
        print(f"\nforwarding: 3 calls of 1 s on a node with room for 1 (reservedConcurrency 3 over 3 nodes): "
              f"{took:.2f} s; served by {served_by}")
        assert {n.url for n in nodes[1:]} & served_by, "no call was forwarded"
        assert took < 2.6
        # The same through an httpApi route: the node forwards the API Gateway event.

        def get(_):
            r = requests.get(f"{a.url}/slow", timeout=30)
            return r.status_code, r.headers.get("x-tusk-served-by")

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(get, range(3)))
        took = time.time() - started
        assert all(status == 200 for status, _ in answers), answers
        print(f"forwarding: 3 GET /slow at once: {took:.2f} s; served by {({by for _, by in answers})}")
        assert {n.url for n in nodes[1:]} & {by for _, by in answers}, "no route call was forwarded"
        assert took < 2.6
        # And a php-82-fpm web app: the request goes as it came (method, query, headers,
        # body) and comes back whole (status, every Set-Cookie); the forwarding headers, and
        # a client's forged one, never reach PHP.

        def post(i):
            r = requests.post(f"{a.url}/page?i={i}", data=f"body {i}", timeout=30,
                              headers={"Authorization": f"Bearer app-{i}", "X-Tusk-Forward-Token": "forged"})
            return r, r.headers.get("x-tusk-served-by")

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(post, range(3)))
        took = time.time() - started
        print(f"forwarding: 3 POST /page (php-82-fpm) at once: {took:.2f} s; served by {({by for _, by in answers})}")
        for i, (r, _) in enumerate(answers):
            assert r.status_code == 200, r.text
            seen = r.json()
            assert (seen["method"], seen["query"], seen["body"], seen["auth"]) == ("POST", {"i": str(i)}, f"body {i}", f"Bearer app-{i}")
            assert seen["remote"] == "127.0.0.1"
            assert r.cookies.get("a") == "1" and r.cookies.get("b") == "2", r.headers
            assert r.headers["content-type"] == "application/json"
            assert TOKEN not in r.text and "X_TUSK" not in r.text, r.text
        assert {n.url for n in nodes[1:]} & {by for _, by in answers}, "no web request was forwarded"
        assert took < 2.6
        # A node that only has busy peers queues the call itself, as a single node does.
        nodes[1].stop(signal.SIGKILL)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(call, range(3)))
        assert all(status == 200 for status, _ in answers), answers


# reservedConcurrency 2 over three nodes: shares 1, 1 and 0 (by announced URL).
LIMITED = {
    "serverless.yml": """
service: lim
provider:
  name: aws
  runtime: php-82
  environment:
    MARK_DIR: ${env:MARK_DIR}
functions:
  capped:
    handler: capped.php
    timeout: 10
    reservedConcurrency: 2
    maximumRetryAttempts: 0
    destinations:
      onSuccess: sink
  sink:
    handler: sink.php
""",
    "ancestors.php": APP["ancestors.php"],
    # When it ran (one clock: every node is on this machine) and under which node.
    "capped.php": """<?php
require_once __DIR__ . '/ancestors.php';
return function ($e) {
    $start = microtime(true);
    usleep(($e['ms'] ?? 1000) * 1000);
    return ['i' => $e['i'] ?? null, 'start' => $start, 'end' => microtime(true), 'chain' => ancestors()];
};
""",
    "sink.php": """<?php
return function ($r) {
    $out = $r['responsePayload'];
    file_put_contents(getenv('MARK_DIR') . "/ran-{$out['i']}", json_encode($out));
    return null;
};
""",
}


def max_overlap(intervals):
    """The most intervals (start, end) running at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_reserved_concurrency_holds_across_the_cluster(nats_cluster, tmp_path):
    """reservedConcurrency 2 on three nodes: never more than 2 invocations at once in the
    whole cluster, for sync calls spread over every node and for async events; the node
    with no share forwards its calls or answers 429 at once; when a node with a share dies,
    its share goes to the node that had none once the others forget the dead one."""
    marks = tmp_path / "marks"
    marks.mkdir()
    os.environ["MARK_DIR"] = str(marks)
    with running_nodes(nats_cluster, tmp_path, 3) as nodes:
        nodes[0].deploy(write_project(tmp_path / "lim", LIMITED))
        for n in nodes:
            assert wait_until(lambda: n.invoke("lim-dev-capped", {"ms": 0}).status_code == 200, 30)
        # Shares follow the announced URLs, sorted: 1, 1, 0.
        first, second, spare = sorted(nodes, key=lambda n: n.url)
        pid_of = {n.url: n.proc.pid for n in nodes}

        def ran_on(chain):
            pids = {int(x) for x in chain.split(",") if x}
            return [url for url, pid in pid_of.items() if pid in pids]

        def call(node, i):
            r = node.invoke("lim-dev-capped", {"i": i, "ms": 1000})
            return node, r

        # -- sync: 8 calls of 1 s at once, spread over the three nodes ------------------------
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: call(nodes[i % 3], i), range(8)))
        intervals = []
        for node, r in answers:
            if r.status_code == 429:
                # Only the node without a share throttles: no other node had a free slot.
                assert node is spare, (node.url, r.text)
                assert r.headers.get("x-amzn-errortype") == "TooManyRequestsException", r.headers
                assert r.json()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
                continue
            assert r.status_code == 200, r.text
            out = r.json()
            intervals.append((out["start"], out["end"]))
            assert spare.url not in ran_on(out["chain"]), out
        statuses = [r.status_code for _, r in answers]
        # The nodes with a share queue what nobody takes: their calls all succeed.
        assert all(r.status_code == 200 for n, r in answers if n is not spare), statuses
        print(f"\nreservedConcurrency 2 over 3 nodes, 8 sync calls of 1 s: statuses {statuses}, "
              f"most at once {max_overlap(intervals)}")
        assert max_overlap(intervals) <= 2, intervals

        # -- async: 6 events of 1 s; only the nodes with a share take them ---------------------
        sent = time.time()
        for i in range(100, 106):
            r = nodes[i % 3].invoke("lim-dev-capped", {"i": i, "ms": 1000}, headers={"X-Amz-Invocation-Type": "Event"})
            assert r.status_code == 202, r.text
        assert wait_until(lambda: all((marks / f"ran-{i}").exists() for i in range(100, 106)), 40, 0.2), \
            sorted(p.name for p in marks.iterdir())
        runs = [json.loads((marks / f"ran-{i}").read_text()) for i in range(100, 106)]
        async_intervals = [(r["start"], r["end"]) for r in runs]
        where = [ran_on(r["chain"]) for r in runs]
        print(f"async: 6 events of 1 s done {time.time() - sent:.1f} s after the first was sent, "
              f"most at once {max_overlap(async_intervals)}")
        assert max_overlap(async_intervals) <= 2, async_intervals
        assert all(w and spare.url not in w for w in where), where

        # -- a node with a share dies: once forgotten (7 s), the spare node takes its share ----
        first.stop(signal.SIGKILL)
        killed = time.time()

        def runs_locally():
            r = spare.invoke("lim-dev-capped", {"ms": 0})
            return r.status_code == 200 and "x-tusk-served-by" not in r.headers

        assert wait_until(runs_locally, 20, 0.5), "the spare node never got a share"
        print(f"membership: the node without a share runs calls itself {time.time() - killed:.1f} s after a kill")
        survivors = [second, spare]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: call(survivors[i % 2], i), range(6)))
        assert all(r.status_code == 200 for _, r in answers), [r.status_code for _, r in answers]
        intervals = [(r.json()["start"], r.json()["end"]) for _, r in answers]
        assert max_overlap(intervals) <= 2, intervals
        # Each survivor now has room for one: together they run two at once.
        assert max_overlap(intervals) == 2, intervals


DESTINATIONS = {
    "serverless.yml": """
service: dest
provider:
  name: aws
  runtime: php-82
  environment:
    MARK_DIR: ${env:MARK_DIR}
functions:
  flaky:
    handler: flaky.php
    maximumRetryAttempts: 2
    destinations:
      onSuccess: sink
      onFailure: sink
  sink:
    handler: sink.php
""",
    "flaky.php": """<?php
return function ($e) {
    file_put_contents(getenv('MARK_DIR') . "/try-{$e['i']}", "x\\n", FILE_APPEND);
    if ($e['fail']) { throw new RuntimeException("failing {$e['i']}"); }
    return ['ok' => $e['i']];
};
""",
    "sink.php": """<?php
return function ($r) {
    $i = $r['requestPayload']['i'];
    file_put_contents(getenv('MARK_DIR') . "/record-$i", json_encode($r) . "\\n", FILE_APPEND);
    return null;
};
""",
}


def test_retries_and_destinations_across_nodes(nats_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    os.environ["MARK_DIR"] = str(marks)
    env = cluster_env(nats_cluster)
    args = ["--sandbox", "off", "--async-retry-delay-ms", "300"]
    nodes = [Node(tmp_path / f"node{i}" / "data", extra_args=args, env=env) for i in range(2)]
    try:
        for n in nodes:
            n.start()
        nodes[0].deploy(write_project(tmp_path / "dest", DESTINATIONS))
        assert wait_until(lambda: nodes[1].invoke("dest-dev-sink", {"requestPayload": {"i": -1}}).status_code == 200, 30)
        for i in range(20):
            r = nodes[i % 2].invoke("dest-dev-flaky", {"i": i, "fail": i % 4 == 0},
                                   headers={"X-Amz-Invocation-Type": "Event"})
            assert r.status_code == 202, r.text
        assert wait_until(lambda: all((marks / f"record-{i}").exists() for i in range(20)), 60, 0.2)
        for i in range(20):
            record = json.loads((marks / f"record-{i}").read_text().splitlines()[0])
            tries = len((marks / f"try-{i}").read_text().split())
            if i % 4 == 0:
                assert record["requestContext"]["condition"] == "RetriesExhausted", record
                assert record["requestContext"]["approximateInvokeCount"] == 3 and tries == 3
                assert record["responseContext"]["functionError"] == "Unhandled"
            else:
                assert record["requestContext"]["condition"] == "Success", record
                assert record["responsePayload"] == {"ok": i} and tries == 1
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)


ENV_PEEK = {
    "serverless.yml": """
service: peek
provider:
  name: aws
  runtime: php-82
functions:
  env:
    handler: env.php
""",
    # Everything a function could read its environment from.
    "env.php": """<?php
return function ($e) {
    $proc = @file_get_contents('/proc/self/environ');
    return [
        'getenv' => getenv(),
        'env' => $_ENV,
        'server' => $_SERVER,
        'proc' => $proc === false ? '' : str_replace("\\0", "\\n", $proc),
    ];
};
""",
}


def test_nats_requires_credentials_that_functions_cannot_see(nats_cluster, tmp_path):
    """A node without the NATS token, or with a wrong one, refuses to start and says what to
    set; a node with it (from the environment or in the URL) joins; a PHP function on it
    sees neither the NATS token nor the admin token in its environment."""
    urls = ",".join(s.url for s in nats_cluster)
    for name, env in [("none", {}), ("wrong", {"TUSK_CLUSTER_TOKEN": "not-the-token"})]:
        node = Node(tmp_path / f"bad-{name}" / "data", extra_args=["--sandbox", "off"],
                    env={"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": urls, **env})
        started = time.time()
        with pytest.raises(RuntimeError, match="exited") as failed:
            node.start()
        node.stop(signal.SIGKILL)
        message = str(failed.value)
        print(f"\ncredentials {name}: {message.strip().splitlines()[-1]}")
        assert time.time() - started < 15, "an authorization violation is not worth retrying"
        assert "authorization violation" in message and "TUSK_CLUSTER_TOKEN" in message, message
        assert NATS_TOKEN not in message and "not-the-token" not in message, message

    # The token in the URL (nats://TOKEN@HOST:PORT) works too, and is not logged.
    in_url = ",".join(f"nats://{NATS_TOKEN}@127.0.0.1:{s.port}" for s in nats_cluster)
    nodes = [
        Node(tmp_path / "node0" / "data", extra_args=["--sandbox", "off"], env=cluster_env(nats_cluster)),
        Node(tmp_path / "node1" / "data", extra_args=["--sandbox", "off"],
             env={"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": in_url}),
    ]
    try:
        for n in nodes:
            n.start()
        nodes[0].deploy(write_project(tmp_path / "peek", ENV_PEEK))
        for n in nodes:
            assert wait_until(lambda: n.invoke("peek-dev-env").status_code == 200, 30)
            seen = n.invoke("peek-dev-env").text
            assert "AWS_LAMBDA_FUNCTION_NAME" in seen, seen  # the function did read its environment
            for secret in (NATS_TOKEN, TOKEN, "TUSK_CLUSTER"):
                assert secret not in seen, f"{secret} reached the function: {seen}"
        for n in nodes:
            n.stop(signal.SIGTERM)
            assert NATS_TOKEN not in n.log_path.read_text()
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)


def test_nats_users_and_passwords(tmp_path):
    """A lone nats-server with a user: TUSK_CLUSTER_USER + TUSK_CLUSTER_PASSWORD, or the
    user and (percent-encoded) password in the URL; a wrong password is refused clearly."""
    password = "p@ss:w0rd/x"
    root = tmp_path / "nats"
    root.mkdir()
    server = NatsServer(root, "lone", free_port(), free_port(), free_port(), [],
                        authorization=f'users: [{{user: tusk, password: "{password}"}}]').start()
    nodes = []
    try:
        assert wait_until(server.healthy, 30)
        encoded = "p%40ss%3Aw0rd%2Fx"
        ways = [
            {"TUSK_CLUSTER": server.url, "TUSK_CLUSTER_USER": "tusk", "TUSK_CLUSTER_PASSWORD": password},
            {"TUSK_CLUSTER": f"nats://tusk:{encoded}@127.0.0.1:{server.port}"},
        ]
        for i, way in enumerate(ways):
            nodes.append(Node(tmp_path / f"node{i}" / "data", extra_args=["--sandbox", "off"],
                              env={"TUSK_ADMIN_TOKEN": TOKEN, **way}).start())
        nodes[0].deploy(write_project(tmp_path / "busy", SLOW))
        assert wait_until(lambda: nodes[1].invoke("busy-dev-slow").status_code == 200, 30)
        wrong = Node(tmp_path / "wrong" / "data", extra_args=["--sandbox", "off"],
                     env={"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": server.url,
                          "TUSK_CLUSTER_USER": "tusk", "TUSK_CLUSTER_PASSWORD": "nope"})
        with pytest.raises(RuntimeError, match="does not accept this node's user and password"):
            wrong.start()
        wrong.stop(signal.SIGKILL)
        for n in nodes:
            n.stop(signal.SIGTERM)
            log = n.log_path.read_text()
            assert password not in log and encoded not in log
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        server.kill()


def test_readiness_follows_the_nats_connection(tmp_path):
    """Liveness stays 200 while NATS is gone (no reason to restart a node); readiness turns
    503 until the node is connected again, then 200."""
    root = tmp_path / "nats"
    root.mkdir()
    server = NatsServer(root, "lone", free_port(), free_port(), free_port(), []).start()
    node = None
    try:
        assert wait_until(server.healthy, 30)
        node = Node(tmp_path / "node" / "data", extra_args=["--sandbox", "off"],
                    env={"TUSK_ADMIN_TOKEN": TOKEN, "TUSK_CLUSTER": server.url,
                         "TUSK_CLUSTER_TOKEN": NATS_TOKEN}).start()

        def ready():
            return requests.get(f"{node.url}/_tusk/health/ready", timeout=5)

        assert ready().status_code == 200
        assert requests.get(f"{node.url}/_tusk/health", timeout=5).json() == {"status": "ok", "cluster": "connected"}
        server.kill()
        assert wait_until(lambda: ready().status_code == 503, 30), "readiness ignored the lost NATS connection"
        assert ready().json()["cluster"] == "disconnected"
        live = requests.get(f"{node.url}/_tusk/health", timeout=5)
        assert live.status_code == 200 and live.json()["cluster"] == "disconnected"
        server.start()
        assert wait_until(lambda: ready().status_code == 200, 60), "readiness did not come back with NATS"
    finally:
        if node:
            node.stop(signal.SIGKILL)
        server.kill()


LONG = {
    "serverless.yml": """
service: long
provider:
  name: aws
  runtime: php-82
functions:
  run:
    handler: run.php
    timeout: 10
    # One per node on two nodes.
    reservedConcurrency: 2
""",
    "run.php": "<?php return function ($e) { usleep(3000000); return getmypid(); };",
}


def test_sync_calls_in_flight_on_a_killed_node_fail_with_a_retryable_error(nats_cluster, tmp_path):
    """A node dies while it runs a call passed on to it and holds another: the forwarded call
    comes back to its caller as 502 ServiceException (which the AWS SDKs retry), the direct
    one loses its connection (also retried), and the other node goes on serving."""
    with running_nodes(nats_cluster, tmp_path, 2) as nodes:
        a, b = nodes
        a.deploy(write_project(tmp_path / "long", LONG))
        time.sleep(2.5)  # both nodes have heard each other
        results = {}

        def call(key, node):
            try:
                r = node.invoke("long-dev-run")
                results[key] = (r.status_code, r.headers.get("x-amzn-errortype"), r.text,
                                r.headers.get("x-tusk-served-by"))
            except requests.RequestException as e:
                results[key] = ("connection", type(e).__name__, str(e), None)

        threads = [threading.Thread(target=call, args=("on-a", a)),
                   threading.Thread(target=call, args=("forwarded", a)),
                   threading.Thread(target=call, args=("on-b", b))]
        for t in threads:
            t.start()
            time.sleep(0.4)
        time.sleep(0.8)
        b.stop(signal.SIGKILL)
        killed = time.time()
        for t in threads:
            t.join(30)
        print(f"\nkilled node: {results}")
        assert results["on-a"][0] == 200, results
        assert results["forwarded"][0] == 502 and results["forwarded"][1] == "ServiceException", results
        assert "retry" in json.loads(results["forwarded"][2])["message"]
        assert results["on-b"][0] == "connection", results
        # (botocore's retry policies count both a 502 and a dropped connection as transient.)
        # The survivor serves the retry (its share grows once it forgets the dead node).
        r = a.invoke("long-dev-run")
        assert r.status_code == 200, r.text
        print(f"retry on the survivor answered {time.time() - killed:.1f} s after the kill")


DRAIN = {
    "serverless.yml": """
service: drain
provider:
  name: aws
  runtime: php-82
  environment:
    MARK_DIR: ${env:MARK_DIR}
functions:
  job:
    handler: job.php
    timeout: 10
    # Two at a time per node, so both nodes take some.
    reservedConcurrency: 4
  pair:
    handler: pair.php
    # One per node on two nodes; both on the survivor once the other has left.
    reservedConcurrency: 2
""",
    "ancestors.php": APP["ancestors.php"],
    "job.php": """<?php
require_once __DIR__ . '/ancestors.php';
return function ($e) {
    $dir = getenv('MARK_DIR');
    file_put_contents("$dir/start-{$e['i']}", ancestors() . "\\n", FILE_APPEND);
    usleep(2500000);
    file_put_contents("$dir/done-{$e['i']}", ancestors() . "\\n", FILE_APPEND);
    return 'ok';
};
""",
    "pair.php": "<?php return function ($e) { usleep(1000000); return getmypid(); };",
}


def test_a_stopping_node_finishes_its_events_and_leaves_at_once(nats_cluster, tmp_path):
    """SIGTERM: the node finishes the async events it is running (not handed to another node
    after AckWait), takes no new ones, and the other node takes back its share at once rather
    than after the 7 s forget window."""
    marks = tmp_path / "marks"
    marks.mkdir()
    os.environ["MARK_DIR"] = str(marks)
    with running_nodes(nats_cluster, tmp_path, 2) as nodes:
        a, b = nodes
        a.deploy(write_project(tmp_path / "drain", DRAIN))
        time.sleep(2.5)
        for i in range(8):
            r = requests.post(f"{a.url}/2015-03-31/functions/drain-dev-job/invocations", data=json.dumps({"i": i}),
                              headers={**a.auth(), "X-Amz-Invocation-Type": "Event"}, timeout=10)
            assert r.status_code == 202, r.text
        b_pid = b.proc.pid

        def runs_on_b():
            return [p for p in marks.glob("start-*")
                    if any(str(b_pid) in line.split(",") for line in p.read_text().split())]

        assert wait_until(lambda: runs_on_b(), 15, 0.05), "node b never took an event"
        held = {p.name.split("-")[1] for p in runs_on_b()}
        stopping = time.time()
        b.proc.send_signal(signal.SIGTERM)
        b.proc.wait(timeout=30)
        stopped = time.time() - stopping
        b.proc = None
        # What b was running finished there, once, before it exited.
        for i in held:
            assert (marks / f"done-{i}").exists(), f"event {i} was not finished by the stopping node"
        # The survivor has the whole reservedConcurrency at once: two 1 s calls run together.
        left = time.time()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: a.invoke("drain-dev-pair").status_code, range(2)))
        took = time.time() - left
        assert answers == [200, 200], answers
        assert took < 1.9, f"the survivor did not take the stopped node's share at once ({took:.2f} s)"
        assert wait_until(lambda: len(list(marks.glob("done-*"))) == 8, 60, 0.2)
        twice = [p.name for p in marks.glob("done-*") if len(p.read_text().split()) > 1]
        assert not twice, f"events run twice: {twice}"
        print(f"\nstop: node b finished its {len(held)} running events and exited {stopped:.1f} s after SIGTERM; "
              f"two 1 s calls on the survivor right after took {took:.2f} s")
