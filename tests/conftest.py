"""End-to-end test harness: real `tusk serve` nodes, real PHP, the real `tusk` CLI."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def tusk_bin() -> str:
    path = os.environ.get("TUSK_BIN") or str(ROOT / "target" / "debug" / "tusk")
    if not Path(path).exists():
        pytest.fail(f"tusk binary not found at {path}: run `cargo build --bin tusk` or scripts/test.sh")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `tusk serve` process with its own data directory."""

    def __init__(self, data_dir: Path, extra_args=(), env=None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc = None
        self.log_path = self.data_dir.parent / f"node-{self.port}.log"

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RUST_LOG": "info", **self.env}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [tusk_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), *self.extra_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tusk serve exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/_tusk/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tusk serve did not become healthy: {self.log_path.read_text()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def token(self) -> str:
        return self.env.get("TUSK_ADMIN_TOKEN") or (self.data_dir / "admin.token").read_text().strip()

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def cli(self, *args, check=True, cwd=None, input=None, timeout=120):
        env = {**os.environ, "TUSK_SERVER": self.url, "TUSK_TOKEN": self.token}
        r = subprocess.run([tusk_bin(), *args], capture_output=True, text=True, env=env, cwd=cwd, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"tusk {' '.join(args)} failed ({r.returncode}):\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def deploy(self, project, *args):
        return self.cli("deploy", str(project), *args)

    def invoke(self, name, payload=None, headers=None, raw=None):
        body = raw if raw is not None else json.dumps(payload if payload is not None else {})
        return requests.post(
            f"{self.url}/2015-03-31/functions/{name}/invocations",
            data=body,
            headers={**self.auth(), **(headers or {})},
            timeout=60,
        )

    def metrics(self) -> str:
        r = requests.get(self.url + "/_tusk/metrics", headers=self.auth(), timeout=5)
        r.raise_for_status()
        return r.text

    def metric(self, name: str, **labels) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in self.metrics().splitlines():
            if line.startswith(f"{name}{{{want}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def copy_project(src: Path, dst_root: Path) -> Path:
    dst = Path(dst_root) / src.name
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="tusk-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def node(workdir):
    """A node shared by the tests that only add their own services."""
    n = Node(workdir / "shared-node" / "data").start()
    yield n
    n.stop()


@pytest.fixture
def fresh_node(tmp_path):
    """A node of the test's own, for tests that restart or configure it."""
    nodes = []

    def make(**kw):
        n = Node(tmp_path / f"node{len(nodes)}" / "data", **kw).start()
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.stop()


def write_project(root: Path, files: dict) -> Path:
    """Writes a project from {relative path: text}; returns its directory."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if rel == "bootstrap" or rel.endswith("/bootstrap"):
            p.chmod(0o755)
    return root
