"""Deploying: versions, atomic switch, restart persistence, tokens, and bad input."""

import json
import os
import stat
import threading
import time

import pytest
import requests

from conftest import EXAMPLES, write_project


def versioned(tag):
    return {
        "serverless.yml": """
service: flip
provider:
  name: aws
  runtime: php-82
  environment:
    TAG: %s
functions:
  which:
    handler: index.php
    events:
      - httpApi: 'GET /flip'
""" % tag,
        "index.php": "<?php return fn ($e) => ['tag' => getenv('TAG')];",
    }


def test_first_start_writes_private_token(fresh_node):
    n = fresh_node()
    token_file = n.data_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 32


def test_admin_token_from_environment(fresh_node):
    n = fresh_node(env={"TUSK_ADMIN_TOKEN": "secret-from-k8s"})
    assert requests.get(f"{n.url}/_tusk/functions", headers={"Authorization": "Bearer secret-from-k8s"}).status_code == 200
    assert requests.get(f"{n.url}/_tusk/functions", headers={"Authorization": "Bearer other"}).status_code in (401, 403)


def test_redeploy_switches_atomically_and_restart_keeps_functions(fresh_node, tmp_path):
    n = fresh_node()
    project = write_project(tmp_path / "flip", versioned("one"))
    out = n.deploy(project).stdout
    assert "version 1" in out
    assert requests.get(f"{n.url}/flip").json() == {"tag": "one"}

    seen, errors, stop = set(), [], threading.Event()

    def hammer():
        while not stop.is_set():
            r = requests.get(f"{n.url}/flip")
            if r.status_code != 200:
                errors.append(r.status_code)
            else:
                seen.add(r.json()["tag"])

    t = threading.Thread(target=hammer)
    t.start()
    write_project(project, versioned("two"))
    out = n.deploy(project).stdout
    assert "version 2" in out
    # Once deploy returns, the new version serves.
    assert requests.get(f"{n.url}/flip").json() == {"tag": "two"}
    time.sleep(0.3)
    stop.set()
    t.join()
    assert errors == []
    assert seen <= {"one", "two"}

    n.stop()
    n.start()
    assert requests.get(f"{n.url}/flip").json() == {"tag": "two"}
    assert n.invoke("flip-dev-which", {}).json() == {"tag": "two"}


def test_remove_takes_routes_and_functions_away(fresh_node, tmp_path):
    # Its own node: a catch-all route another test deploys on the shared one would answer /gone.
    node = fresh_node()
    project = write_project(tmp_path / "gone", {
        "serverless.yml": "service: gone\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n    events: [{httpApi: 'GET /gone'}]\n",
        "f.php": "<?php return fn () => 'here';",
    })
    node.deploy(project)
    assert requests.get(f"{node.url}/gone").text == "here"
    out = node.cli("remove", str(project)).stdout
    assert "gone-dev-f" in out
    assert requests.get(f"{node.url}/gone").status_code == 404
    assert node.invoke("gone-dev-f", {}).status_code == 404


def test_malformed_yaml_names_the_line(node, tmp_path):
    project = write_project(tmp_path / "bad", {
        "serverless.yml": "service: bad\nprovider:\n  name: aws\n  runtime: php-82\nfunctions:\n  f:\n    handler: [unclosed\n",
    })
    r = node.cli("deploy", str(project), check=False)
    assert r.returncode != 0
    assert "serverless.yml:" in r.stderr
    assert any(f"serverless.yml:{n}" in r.stderr for n in (7, 8))


def test_unknown_runtime_and_missing_handler(node, tmp_path):
    project = write_project(tmp_path / "rt", {
        "serverless.yml": "service: rt\nprovider:\n  name: aws\nfunctions:\n  f:\n    handler: f.php\n    runtime: nodejs18.x\n",
        "f.php": "<?php return fn () => 1;",
    })
    r = node.cli("deploy", str(project), check=False)
    assert r.returncode != 0
    assert "serverless.yml:7" in r.stderr and "nodejs18.x" in r.stderr
    project = write_project(tmp_path / "nohandler", {
        "serverless.yml": "service: nohandler\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: missing.php\n",
    })
    r = node.cli("deploy", str(project), check=False)
    assert r.returncode != 0
    assert "missing.php" in r.stderr


def test_php_syntax_error_is_an_init_error(node, tmp_path):
    project = write_project(tmp_path / "syntax", {
        "serverless.yml": "service: syntax\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n",
        "f.php": "<?php return fn ( => ;",
    })
    node.deploy(project)
    r = node.invoke("syntax-dev-f", {})
    assert r.status_code == 200
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] == "ParseError"
    assert node.invoke("hello", {}).status_code in (200, 404)


def test_two_services_cannot_claim_one_route(node, tmp_path):
    def svc(name):
        return write_project(tmp_path / name, {
            "serverless.yml": f"service: {name}\nprovider: {{name: aws, runtime: php-82}}\nfunctions:\n  f:\n    handler: f.php\n    events: [{{httpApi: 'GET /shared-route'}}]\n",
            "f.php": f"<?php return fn () => '{name}';",
        })
    node.deploy(svc("first"))
    r = node.cli("deploy", str(svc("second")), check=False)
    assert r.returncode != 0
    assert "/shared-route" in r.stderr and "first-dev-f" in r.stderr
    assert requests.get(f"{node.url}/shared-route").text == "first"


def test_other_php_version_warns(node, tmp_path):
    project = write_project(tmp_path / "php84", {
        "serverless.yml": "service: php84\nprovider: {name: aws, runtime: php-84}\nplugins: [./vendor/bref/bref]\nfunctions:\n  f:\n    handler: f.php\n",
        "f.php": "<?php return fn () => PHP_VERSION;",
    })
    r = node.deploy(project)
    assert "8.4" in r.stderr
    assert node.invoke("php84-dev-f", {}).json().startswith("8.")
