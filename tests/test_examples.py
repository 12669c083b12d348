"""The bundled examples, deployed and used as the README tells a newcomer to."""

import hashlib
import json
import os

import subprocess
import sys

import pytest
import requests

from conftest import EXAMPLES, copy_project


@pytest.fixture(scope="module")
def demo(fresh_node_module, tmp_path_factory):
    n = fresh_node_module
    for example in ("hello-function", "web-app", "console", "provided"):
        n.deploy(EXAMPLES / example)
    # As its README says: vendor awslambdaric into the package, then deploy.
    ric = copy_project(EXAMPLES / "provided-awslambdaric", tmp_path_factory.mktemp("ric"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(ric), "awslambdaric"], check=True)
    n.deploy(ric)
    return n


@pytest.fixture(scope="module")
def fresh_node_module(tmp_path_factory):
    from conftest import Node

    n = Node(tmp_path_factory.mktemp("examples") / "data").start()
    yield n
    n.stop()


def test_web_app_pages_forms_uploads_cookies(demo):
    s = requests.Session()
    home = s.get(f"{demo.url}/")
    assert home.status_code == 200 and "hello" in home.text.lower()
    assert s.get(f"{demo.url}/style.css").headers["Content-Type"].startswith("text/css")
    form = s.post(f"{demo.url}/form", data={"name": "Ada", "message": "Hi <b>"})
    assert form.status_code == 200 and "Ada" in form.text and "&lt;b&gt;" in form.text
    payload = os.urandom(50_000)
    up = s.post(f"{demo.url}/upload", files={"file": ("x.bin", payload)})
    assert up.status_code == 200
    assert hashlib.sha1(payload).hexdigest() in up.text
    first = s.get(f"{demo.url}/cookies")
    assert len(first.raw.headers.getlist("Set-Cookie")) == 2
    second = s.get(f"{demo.url}/cookies")
    assert second.cookies.get("visits") == "2" or s.cookies.get("visits") == "2"
    go = s.get(f"{demo.url}/go", allow_redirects=False)
    assert go.status_code in (301, 302, 303) and go.headers["Location"]
    assert s.get(f"{demo.url}/no-such-page").status_code == 404
    assert "time" in s.get(f"{demo.url}/api/time").json() or s.get(f"{demo.url}/api/time").json()


def test_console_runtime(demo):
    r = demo.invoke("console-dev-console", "greet --name=\"Ada Lovelace\"")
    assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers, r.text
    out = r.json()
    assert out["exitCode"] == 0
    assert '"greet","--name=Ada Lovelace"' in out["output"]
    r = demo.invoke("console-dev-console", {"cli": "fail --exit=3"})
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert "non-zero status code: 3" in r.json()["errorMessage"]


def test_provided_runtime_bootstrap(demo):
    r = demo.invoke("provided-dev-echo", {"say": "hi"})
    assert r.status_code == 200
    assert r.json()["echo"] == {"say": "HI"}
    r = requests.post(f"{demo.url}/echo", json={"x": "y"})
    assert r.status_code == 200
    r = demo.invoke("provided-dev-echo", {"fail": "boom"})
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] in ("ValueError", "Unhandled")


def test_awslambdaric_runs_unchanged(demo):
    r = demo.invoke("provided-awslambdaric-dev-ric", {"name": "ric"}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.status_code == 200, r.text
    assert "X-Amz-Function-Error" not in r.headers, r.text
    assert r.json()


def test_hello_function_example(demo):
    assert demo.invoke("hello-function-dev-hello", {"name": "Ex"}).json()["hello"] == "Ex"
    assert requests.get(f"{demo.url}/hello", params={"name": "Ex"}).json()["message"] == "Hello Ex!"
