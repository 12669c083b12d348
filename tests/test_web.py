"""php-82-fpm web apps: FastCGI to php-cgi, static files, and what a browser relies on."""

import hashlib
import json
import os
import time

import pytest
import requests

from conftest import Node, write_project

APP = {
    "serverless.yml": """
service: webtest
provider:
  name: aws
  runtime: php-82-fpm
  timeout: 2
functions:
  web:
    handler: public/index.php
    environment:
      GREETING: bonjour
    events:
      - httpApi: '*'
""",
    "public/index.php": r"""<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
switch ($path) {
    case '/server':
        header('Content-Type: application/json');
        echo json_encode(['server' => $_SERVER, 'get' => $_GET, 'env' => getenv('GREETING'), 'pid' => getenv('AWS_LAMBDA_LOG_STREAM_NAME')]);
        break;
    case '/form':
        header('Content-Type: application/json');
        echo json_encode(['post' => $_POST, 'method' => $_SERVER['REQUEST_METHOD']]);
        break;
    case '/upload':
        header('Content-Type: application/json');
        $f = $_FILES['file'];
        echo json_encode(['name' => $f['name'], 'size' => $f['size'], 'sha1' => sha1_file($f['tmp_name']), 'field' => $_POST['field'] ?? null]);
        break;
    case '/raw':
        echo sha1(file_get_contents('php://input'));
        break;
    case '/cookies':
        setcookie('a', '1');
        setcookie('b', '2', ['httponly' => true]);
        header('Content-Type: application/json');
        echo json_encode($_COOKIE);
        break;
    case '/redirect':
        header('Location: /landing');
        break;
    case '/status':
        header('Status: 418 I am a teapot');
        echo 'teapot';
        break;
    case '/missing':
        http_response_code(404);
        echo 'custom 404';
        break;
    case '/binary':
        header('Content-Type: application/octet-stream');
        echo random_bytes(256) . str_repeat("\0\xff", 1000);
        break;
    case '/big':
        echo str_repeat('x', 5 * 1024 * 1024);
        break;
    case '/slow':
        sleep(10);
        echo 'never';
        break;
    case '/exit-mid':
        echo 'partial';
        flush();
        exit(1);
    case '/fatal':
        undefined_function();
        break;
    default:
        echo 'home ' . getenv('GREETING');
}
""",
    "public/style.css": "body { color: red; }\n",
    "public/img/dot.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "public/secret.php": "<?php echo 'should never be served as source';",
}


@pytest.fixture(scope="module")
def web(workdir):
    # A node of its own: the app's catch-all route would answer other tests' unknown paths.
    n = Node(workdir / "web-node" / "data").start()
    n.deploy(write_project(workdir / "webtest", APP))
    yield n
    n.stop()


def test_front_controller_and_cgi_params(web):
    r = requests.get(f"{web.url}/")
    assert r.status_code == 200 and r.text == "home bonjour"
    r = requests.get(f"{web.url}/server?x=1&y=two", headers={"X-Custom": "yes"})
    data = r.json()
    s = data["server"]
    assert s["REQUEST_METHOD"] == "GET"
    assert s["REQUEST_URI"] == "/server?x=1&y=two"
    assert s["QUERY_STRING"] == "x=1&y=two"
    assert s["SCRIPT_NAME"] == "/index.php"
    assert s["SCRIPT_FILENAME"].endswith("/public/index.php")
    assert s["HTTP_X_CUSTOM"] == "yes"
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert s["REMOTE_ADDR"] == "127.0.0.1"
    assert s["SERVER_PORT"] == str(web.port)
    assert data["get"] == {"x": "1", "y": "two"}
    assert data["env"] == "bonjour"
    # The request id PHP is given is the one its platform log lines carry.
    rid = s["LAMBDA_REQUEST_ID"]

    def logged():
        lines = requests.get(f"{web.url}/_tusk/functions/webtest-dev-web/logs", headers=web.auth(),
                             params={"limit": 5000}, timeout=30).json()["lines"]
        return any(l["line"].startswith(f"START RequestId: {rid}") for l in lines)

    deadline = time.time() + 5  # the log writer commits every few milliseconds
    while not logged() and time.time() < deadline:
        time.sleep(0.05)
    assert logged(), f"no START line for request {rid}"


def test_no_process_per_request(web):
    s = requests.Session()
    pids = {s.get(f"{web.url}/server").json()["pid"] for _ in range(20)}
    assert len(pids) == 1


def test_forms_uploads_and_raw_bodies(web):
    r = requests.post(f"{web.url}/form", data={"name": "Ada", "langs[]": ["php", "rust"]})
    assert r.json() == {"post": {"name": "Ada", "langs": ["php", "rust"]}, "method": "POST"}
    payload = os.urandom(300_000)
    r = requests.post(f"{web.url}/upload", files={"file": ("photo.bin", payload)}, data={"field": "v"})
    assert r.json() == {"name": "photo.bin", "size": len(payload), "sha1": hashlib.sha1(payload).hexdigest(), "field": "v"}
    body = os.urandom(3 * 1024 * 1024)
    r = requests.put(f"{web.url}/raw", data=body)
    assert r.text == hashlib.sha1(body).hexdigest()


def test_cookies_redirects_status(web):
    r = requests.get(f"{web.url}/cookies", cookies={"in": "x", "other": "y"})
    assert r.json() == {"in": "x", "other": "y"}
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    assert len(set_cookies) == 2
    assert any(c.startswith("a=1") for c in set_cookies)
    assert any(c.startswith("b=2") and "HttpOnly" in c for c in set_cookies)
    r = requests.get(f"{web.url}/redirect", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/landing"
    r = requests.get(f"{web.url}/status")
    assert r.status_code == 418 and r.text == "teapot"
    r = requests.get(f"{web.url}/missing")
    assert r.status_code == 404 and r.text == "custom 404"


def test_binary_and_large_bodies(web):
    r = requests.get(f"{web.url}/binary")
    assert len(r.content) == 256 + 2000
    assert r.content.endswith(b"\0\xff" * 1000)
    r = requests.get(f"{web.url}/big")
    assert len(r.content) == 5 * 1024 * 1024


def test_static_files_served_directly(web):
    r = requests.get(f"{web.url}/style.css")
    assert r.status_code == 200
    assert r.text == "body { color: red; }\n"
    assert r.headers["Content-Type"].startswith("text/css")
    etag = r.headers["ETag"]
    assert requests.get(f"{web.url}/style.css", headers={"If-None-Match": etag}).status_code == 304
    assert requests.get(f"{web.url}/img/dot.svg").headers["Content-Type"].startswith("image/svg")
    # PHP files are never served as source; traversal goes to the app, not the disk.
    assert "should never" not in requests.get(f"{web.url}/secret.php").text
    assert requests.get(f"{web.url}/../serverless.yml").text.startswith("home")


def test_keep_alive(web):
    s = requests.Session()
    for _ in range(50):
        assert s.get(f"{web.url}/").status_code == 200


def test_failures_are_contained(web):
    r = requests.get(f"{web.url}/slow")
    assert r.status_code == 504
    r = requests.get(f"{web.url}/exit-mid")
    assert r.status_code in (200, 502)
    r = requests.get(f"{web.url}/fatal")
    assert r.status_code == 500
    assert requests.get(f"{web.url}/").text == "home bonjour"


def test_invoke_api_with_api_gateway_event(web):
    event = {
        "version": "2.0",
        "rawPath": "/cookies",
        "rawQueryString": "",
        "cookies": ["in=event"],
        "headers": {"host": "example.test"},
        "requestContext": {"http": {"method": "GET", "path": "/cookies"}},
        "isBase64Encoded": False,
    }
    r = web.invoke("webtest-dev-web", event)
    assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers
    result = r.json()
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"in": "event"}
    assert len(result["cookies"]) == 2
    v1 = {"httpMethod": "POST", "path": "/form", "headers": {"content-type": "application/x-www-form-urlencoded"},
          "body": "a=1&b=2", "isBase64Encoded": False, "queryStringParameters": None}
    result = web.invoke("webtest-dev-web", v1).json()
    assert json.loads(result["body"])["post"] == {"a": "1", "b": "2"}
    r = web.invoke("webtest-dev-web", {"not": "http"})
    assert r.status_code == 400
