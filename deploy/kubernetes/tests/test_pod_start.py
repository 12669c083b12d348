"""Starts a Tusk node the way the production Deployment's pod starts it, then follows the
README: deploy and invoke with TUSK_SERVER and TUSK_TOKEN.

From the rendered production manifest: the container's environment (TUSK_SANDBOX=full, the
admin token in TUSK_ADMIN_TOKEN as the Secret would put it), the image's entrypoint
(deploy/container/entrypoint.sh) and the capabilities of its securityContext, applied as the
process's capability bounding set, as a container runtime does. Differences from a pod, on
purpose: no NATS (TUSK_CLUSTER is left out: this checks the sandbox and the CLI path, not
clustering), loopback instead of 0.0.0.0:8080, a temporary data directory, and the host's
filesystem instead of the image's. Needs root, setpriv and a built tusk (TUSK_BIN, which
scripts/test.sh sets); skipped otherwise.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[3]
TUSK_BIN = os.environ.get("TUSK_BIN") or str(ROOT / "target" / "debug" / "tusk")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the sandbox)"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
    pytest.mark.skipif(not Path(TUSK_BIN).exists(), reason=f"no tusk binary at {TUSK_BIN}"),
]


def production_container():
    path = Path(os.environ["TUSK_K8S_RENDERED"]) / "production.yaml"
    objs = [o for o in yaml.safe_load_all(path.read_text()) if o]
    (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "tusk"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pod(tmp_path):
    c = production_container()
    token = secrets.token_hex(32)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = token
    env.pop("TUSK_CLUSTER")
    port = free_port()
    env["TUSK_LISTEN"] = f"127.0.0.1:{port}"
    env["TUSK_DATA_DIR"] = str(tmp_path / "data")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tusk").symlink_to(Path(TUSK_BIN).resolve())

    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    bounding = "-all," + ",".join("+" + cap.lower() for cap in caps["add"])
    command = [
        # A mount namespace of its own, as a container has: the entrypoint's cgroupfs
        # remount (if any) stays in it.
        "unshare", "--mount", "--propagation", "private",
        "setpriv", "--bounding-set", bounding, "--",
        "sh", str(ROOT / "deploy" / "container" / "entrypoint.sh"), *c["args"],
    ]
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    health = c["startupProbe"]["httpGet"]["path"]
    deadline = time.time() + c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    while True:
        try:
            if requests.get(base + health, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.flush()
            pytest.fail("the node did not start:\n" + (tmp_path / "node.log").read_text()[-4000:])
        time.sleep(0.1)
    try:
        yield base, token, tmp_path / "node.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_pod_runs_fully_isolated_and_serves_the_readme_walkthrough(pod, tmp_path):
    base, token, log = pod
    assert "sandbox: full isolation" in log.read_text()
    cli_env = {**os.environ, "TUSK_SERVER": base, "TUSK_TOKEN": token}
    cli_env.pop("TUSK_DATA_DIR", None)

    def tusk(*args):
        out = subprocess.run([TUSK_BIN, *args], env=cli_env, cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    tusk("deploy", "examples/hello-function")
    out = tusk("invoke", "hello-function-dev-hello", "--data", '{"name":"Kubernetes"}', "--log")
    assert '"hello": "Kubernetes"' in out
    r = requests.get(f"{base}/hello", params={"name": "Kubernetes"}, timeout=30)
    assert r.status_code == 200 and r.json()["message"] == "Hello Kubernetes!"
    # Without the token, the admin API refuses.
    assert requests.get(f"{base}/_tusk/functions", timeout=5).status_code in (401, 403)
