"""`tusk dev` (serve + deploy + redeploy on change) and `tusk logs --tail`."""

import os
import signal
import subprocess
import time

import requests

from conftest import free_port, tusk_bin, write_project


def wait_for(predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def test_dev_serves_and_redeploys_on_change(tmp_path):
    project = write_project(tmp_path / "devapp", {
        "serverless.yml": "service: devapp\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n    events: [{httpApi: 'GET /dev'}]\n",
        "f.php": "<?php return fn () => 'first';",
    })
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    proc = subprocess.Popen([tusk_bin(), "dev", str(project), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        assert wait_for(lambda: requests.get(f"{url}/dev").text == "first"), "dev never served the project"
        time.sleep(1.1)  # a later mtime, whatever the file system's granularity
        (project / "f.php").write_text("<?php return fn () => 'second';")
        assert wait_for(lambda: requests.get(f"{url}/dev").text == "second"), "dev did not redeploy the change"
        (project / "serverless.yml").write_text("service: devapp\nfunctions: [broken\n")
        time.sleep(2)
        # A broken manifest keeps the last good version serving.
        assert requests.get(f"{url}/dev").text == "second"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    text = out.decode(errors="replace")
    assert "serverless.yml:" in text and "invalid YAML" in text
    # The node went away with `tusk dev`.
    assert not wait_for(lambda: requests.get(f"{url}/_tusk/health", timeout=0.5).status_code == 200, timeout=2)


def test_logs_tail_follows_new_lines(node, tmp_path):
    project = write_project(tmp_path / "tail", {
        "serverless.yml": "service: tail\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n",
        "f.php": "<?php return function ($e) { echo 'tail-line-' . $e['n'] . \"\\n\"; return $e['n']; };",
    })
    node.deploy(project)
    env = {**os.environ, "TUSK_SERVER": node.url, "TUSK_TOKEN": node.token}
    proc = subprocess.Popen([tusk_bin(), "logs", "tail-dev-f", "--tail"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(0.8)
        for n in range(3):
            node.invoke("tail-dev-f", {"n": n})
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    text = out.decode()
    for n in range(3):
        assert f"tail-line-{n}" in text
    assert text.count("REPORT RequestId:") == 3
