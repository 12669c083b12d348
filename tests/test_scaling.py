"""The execution model: scale from and to zero, provisioned instances, throttling, init limit."""

import concurrent.futures
import time

import requests

from conftest import write_project

PROJECT = {
    "serverless.yml": """
service: scale
provider:
  name: aws
  runtime: php-82
functions:
  sleepy:
    handler: sleep.php
    reservedConcurrency: 2
    events:
      - httpApi: 'GET /sleepy'
  warm:
    handler: sleep.php
    provisionedConcurrency: 2
  loop:
    handler: pid.php
    environment:
      BREF_LOOP_MAX: 3
""",
    "sleep.php": "<?php return function ($e) { usleep((int) (($e['ms'] ?? 0) * 1000)); return getenv('AWS_LAMBDA_LOG_STREAM_NAME'); };",
    "pid.php": "<?php return fn () => getenv('AWS_LAMBDA_LOG_STREAM_NAME');",
}


def test_scale_to_zero_and_back(fresh_node, tmp_path):
    n = fresh_node(extra_args=["--idle-timeout", "1"])
    n.deploy(write_project(tmp_path / "scale", PROJECT))
    assert n.metric("tusk_instances", function="scale-dev-sleepy", state="idle") == 0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pids = set(pool.map(lambda _: n.invoke("scale-dev-sleepy", {"ms": 300}).json(), range(2)))
    assert len(pids) == 2
    assert n.metric("tusk_instances", function="scale-dev-sleepy", state="idle") == 2
    deadline = time.time() + 10
    while time.time() < deadline and n.metric("tusk_instances", function="scale-dev-sleepy", state="idle") > 0:
        time.sleep(0.2)
    assert n.metric("tusk_instances", function="scale-dev-sleepy", state="idle") == 0
    # Provisioned instances are not reaped.
    assert n.metric("tusk_instances", function="scale-dev-warm", state="idle") == 2
    assert isinstance(n.invoke("scale-dev-sleepy", {}).json(), str)


def test_provisioned_instances_are_warm_when_deploy_returns(fresh_node, tmp_path):
    n = fresh_node()
    n.deploy(write_project(tmp_path / "scale", PROJECT))
    assert n.metric("tusk_instances", function="scale-dev-warm", state="idle") == 2
    assert n.metric("tusk_cold_starts_total", function="scale-dev-warm") == 2
    n.invoke("scale-dev-warm", {})
    assert n.metric("tusk_cold_starts_total", function="scale-dev-warm") == 2
    r = n.invoke("scale-dev-warm", {}, headers={"X-Amz-Log-Type": "Tail"})
    import base64
    assert "Init Duration" not in base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()


def test_reserved_concurrency_queue_then_429(fresh_node, tmp_path):
    n = fresh_node(extra_args=["--queue-limit", "2", "--queue-wait-ms", "300"])
    n.deploy(write_project(tmp_path / "scale", PROJECT))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: n.invoke("scale-dev-sleepy", {"ms": 1000}), range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 2, codes
    throttled = [r for r in results if r.status_code == 429]
    assert len(throttled) == 6
    r = throttled[0]
    assert r.headers["X-Amzn-ErrorType"] == "TooManyRequestsException"
    assert r.json()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert "Retry-After" in r.headers
    assert n.metric("tusk_throttles_total", function="scale-dev-sleepy") == 6
    # HTTP routes get API Gateway's 429 too.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: requests.get(f"{n.url}/sleepy").status_code, range(6)))
    assert 200 in codes


def test_waiting_requests_are_served_in_turn(fresh_node, tmp_path):
    n = fresh_node()
    n.deploy(write_project(tmp_path / "scale", PROJECT))
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: n.invoke("scale-dev-sleepy", {"ms": 100}), range(10)))
    assert [r.status_code for r in results] == [200] * 10
    assert len({r.json() for r in results}) <= 2


def test_max_invocations_replaces_instance(node, tmp_path):
    node.deploy(write_project(tmp_path / "scale", PROJECT))
    pids = [node.invoke("scale-dev-loop", {}).json() for _ in range(7)]
    assert all(isinstance(p, str) for p in pids)
    assert len(set(pids[0:3])) == 1 and len(set(pids[3:6])) == 1
    assert pids[0] != pids[3] != pids[6]


def test_init_longer_than_ten_seconds_fails(node, tmp_path):
    project = write_project(tmp_path / "slowinit", {
        "serverless.yml": "service: slowinit\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n",
        "f.php": "<?php sleep(30); return fn () => 'late';",
    })
    node.deploy(project)
    started = time.time()
    r = node.invoke("slowinit-dev-f", {})
    took = time.time() - started
    assert 9 < took < 20
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] == "Runtime.InitTimeout"


def test_clients_that_go_away_leave_no_trace(fresh_node, tmp_path):
    """A client disconnecting mid-request or while queued must neither break the instance
    nor leave a queue slot taken (which would turn later requests into 429s)."""
    n = fresh_node(extra_args=["--queue-limit", "3"])
    n.deploy(write_project(tmp_path / "gone", {
        "serverless.yml": "service: gone\nprovider: {name: aws, runtime: php-82-fpm}\nfunctions:\n  web:\n    handler: index.php\n    reservedConcurrency: 1\n    events: [{httpApi: '*'}]\n",
        "index.php": "<?php if (($_GET['ms'] ?? 0) > 0) { usleep((int) $_GET['ms'] * 1000); } echo getenv('AWS_LAMBDA_LOG_STREAM_NAME');",
    }))
    instance = requests.get(f"{n.url}/").text
    for _ in range(3):
        # Each round: one client holds the instance, five more wait and then give up.
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(lambda: requests.get(f"{n.url}/?ms=400", timeout=0.15)) for _ in range(6)]
            for f in futures:
                try:
                    f.result()
                except requests.RequestException:
                    pass
        time.sleep(0.5)
    # Queue slots came back, and the instance that saw clients vanish mid-request still serves.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: requests.get(f"{n.url}/?ms=50").status_code, range(3)))
    assert codes == [200, 200, 200]
    assert requests.get(f"{n.url}/").text == instance
    assert n.metric("tusk_cold_starts_total", function="gone-dev-web") == 1
