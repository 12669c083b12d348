"""Framework apps in worker mode on `php-82` (examples/slim, examples/symfony, examples/laravel):
booted once per instance, request state reset between requests, recycled when asked to."""

import hashlib
import json
import socket

import pytest
import requests

from conftest import EXAMPLES, write_project

FRAMEWORKS = ["slim", "symfony", "laravel"]

# What each framework's own error page says (not Tusk's gateway error).
ERROR_PAGE = {
    "slim": "Slim Application Error",
    "symfony": "An Error Occurred: Internal Server Error",
    "laravel": "Server Error",
}


@pytest.fixture(scope="module")
def apps(node):
    for fw in FRAMEWORKS:
        out = node.deploy(EXAMPLES / fw)
        assert f"{fw}-dev-web" in out.stdout
    return node


def url(node, fw, path):
    return f"{node.url}/{fw}/{path}"


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_routing(apps, fw):
    r = requests.get(url(apps, fw, "hello/Ada%20L"), params={"x": "1", "list[]": ["a", "b"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"hello": "Ada L", "query": {"x": "1", "list": ["a", "b"]}}
    # A route the app does not have: the framework's 404, not the gateway's.
    r = requests.get(url(apps, fw, "no/such/route"), timeout=30)
    assert r.status_code == 404
    assert "Internal Server Error" not in r.text


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_request_bodies_json_form_and_upload(apps, fw):
    r = requests.post(url(apps, fw, "echo"), json={"a": 1, "nested": {"b": [1, 2]}}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    got_json = body["body"] if fw == "slim" else body["json"]
    assert got_json == {"a": 1, "nested": {"b": [1, 2]}}

    r = requests.post(url(apps, fw, "echo"), data={"name": "Ada", "tags[]": ["x", "y"]}, timeout=30)
    form = r.json()["body"] if fw == "slim" else r.json()["form"]
    assert form == {"name": "Ada", "tags": ["x", "y"]}

    payload = bytes(range(256)) * 4000  # ~1 MB of binary
    r = requests.post(url(apps, fw, "echo"), files={"doc": ("report.bin", payload)}, data={"field": "v"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["files"]["doc"] == {"name": "report.bin", "size": len(payload), "sha1": hashlib.sha1(payload).hexdigest()}
    assert (body["body"] if fw == "slim" else body["form"]) == {"field": "v"}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_headers_and_cookies(apps, fw):
    client = requests.Session()
    r = client.get(url(apps, fw, "headers"), headers={"X-Custom": "hello, world; q=1"}, timeout=30)
    assert r.status_code == 200
    assert r.headers["X-Seen"] == "hello, world; q=1"
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    assert any(c.startswith("flavour=") for c in set_cookies), set_cookies
    assert any(c.startswith("size=") for c in set_cookies), set_cookies
    # The cookies come back on the next request and the app reads them (Laravel decrypts its own).
    r = client.get(url(apps, fw, "headers"), timeout=30)
    cookies = r.json()["cookies"]
    assert cookies["flavour"] == "chocolate"
    assert cookies["size"] == "large"


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_session_persists_per_client_and_does_not_leak(apps, fw):
    alice, bob = requests.Session(), requests.Session()
    assert [alice.get(url(apps, fw, "session"), timeout=30).json()["count"] for _ in range(3)] == [1, 2, 3]
    # Another client, served by the same warm instance right after: a fresh session.
    assert bob.get(url(apps, fw, "session"), timeout=30).json()["count"] == 1
    # No cookie at all: never the previous client's session.
    assert requests.get(url(apps, fw, "session"), timeout=30).json()["count"] == 1
    assert alice.get(url(apps, fw, "session"), timeout=30).json()["count"] == 4
    assert bob.get(url(apps, fw, "session"), timeout=30).json()["count"] == 2


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_exception_is_the_apps_500_page_and_instance_keeps_serving(apps, fw):
    before = requests.get(url(apps, fw, "boot"), timeout=30).json()
    r = requests.get(url(apps, fw, "fail"), timeout=30)
    assert r.status_code == 500
    assert r.headers["Content-Type"].startswith("text/html")
    assert ERROR_PAGE[fw] in r.text
    # Production error pages do not leak the exception message.
    assert "something broke" not in r.text
    after = requests.get(url(apps, fw, "boot"), timeout=30).json()
    assert after["bootedAt"] == before["bootedAt"]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_app_boots_once_for_many_requests(apps, fw):
    seen = [requests.get(url(apps, fw, "boot"), timeout=30).json() for _ in range(25)]
    assert len({s["bootedAt"] for s in seen}) == 1
    if "requests" in seen[0]:
        # The app's own in-memory counter keeps counting: same process, same objects.
        counts = [s["requests"] for s in seen]
        assert counts == list(range(counts[0], counts[0] + 25))
    assert apps.metric("tusk_cold_starts_total", function=f"{fw}-dev-web") == 1


def test_oversized_requests_are_refused_cleanly(apps):
    # 50 MB is over the function payload limit (as on API Gateway + Lambda): 413, node unharmed.
    big = b"x" * (50 * 1024 * 1024)
    r = requests.post(url(apps, "slim", "echo"), files={"f": ("big.bin", big)}, timeout=60)
    assert r.status_code == 413
    # 10,000 headers: 431 from the HTTP server, as nginx in front of php-fpm would (400/431).
    with socket.create_connection(("127.0.0.1", apps.port), timeout=10) as s:
        req = "GET /slim/hello/x HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(10000)) + "\r\n"
        try:
            s.sendall(req.encode())
        except OSError:
            pass  # the server may close before reading it all
        status = s.recv(64).split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request"), status
    assert requests.get(url(apps, "slim", "hello/after"), timeout=30).json()["hello"] == "after"


# An app that misbehaves the ways real ones do, as a Slim app (Debian's php-slim).
BAD_APP = {
    "serverless.yml": """
service: badapps
provider:
  name: aws
  runtime: php-82
  memorySize: 256
functions:
  leaky:
    handler: app.php
    environment:
      TUSK_MAX_MEMORY_MB: '24'
    events:
      - httpApi: 'ANY /leaky/{proxy+}'
  loop:
    handler: app.php
    environment:
      BREF_LOOP_MAX: '5'
    events:
      - httpApi: 'ANY /loop/{proxy+}'
""",
    "app.php": r"""<?php
require_once 'Slim/autoload.php';

echo "app booting\n";  // output at boot (goes to the logs) must not break later requests

$bootedAt = microtime(true);
$GLOBALS['hits'] = 0;
// Slim 3 puts what a route echoes after its body by default ('append'); this app asks for 'prepend'.
$app = new Slim\App(['settings' => ['displayErrorDetails' => true, 'outputBuffering' => 'prepend']]);

$app->get('/{fn}/leak', function ($req, $res) {
    static $hoard = [];
    $hoard[] = str_repeat('x', 3 * 1024 * 1024);  // 3 MB kept forever, every request
    return $res->withJson(['held' => count($hoard), 'mem' => memory_get_usage()]);
});
$app->get('/{fn}/boot', function ($req, $res) use ($bootedAt) {
    return $res->withJson(['bootedAt' => $bootedAt]);
});
// Global state an app keeps on purpose, and superglobals it must not see from a previous request.
$app->get('/{fn}/state', function ($req, $res) {
    $GLOBALS['hits']++;
    return $res->withJson(['hits' => $GLOBALS['hits'], 'get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE,
        'once' => $_SERVER['HTTP_X_ONCE'] ?? null, 'session' => $_SESSION ?? null]);
});
$app->post('/{fn}/state', function ($req, $res) {
    session_start();
    $_SESSION['secret'] = 'alice';
    return $res->withJson(['post' => $_POST]);
});
$app->get('/{fn}/mysession', function ($req, $res) {
    session_start();
    return $res->withJson(['session' => $_SESSION, 'id' => session_id()]);
});
$app->get('/{fn}/exit', function ($req, $res) {
    echo 'partial output';
    exit();
});
$app->get('/{fn}/early', function ($req, $res) {
    echo 'printed first;';
    return $res->withHeader('X-After-Output', 'yes')->withStatus(201)->write('body');
});
return $app;
""",
}


@pytest.fixture(scope="module")
def bad(node, workdir):
    node.deploy(write_project(workdir / "badapps", BAD_APP))
    return node


def test_leaking_app_is_recycled_on_memory_growth(bad):
    boots, held = set(), []
    for _ in range(15):
        r = requests.get(f"{bad.url}/leaky/leak", timeout=30)
        assert r.status_code == 200, r.text
        held.append(r.json()["held"])
        assert r.json()["mem"] < 40 * 1024 * 1024
        boots.add(requests.get(f"{bad.url}/leaky/boot", timeout=30).json()["bootedAt"])
    # 3 MB per request against a 24 MB cap: a fresh instance every ~8 requests, no request lost.
    assert len(boots) >= 2
    assert max(held) <= 9
    assert held[0] == 1 and 1 in held[1:]


def test_instance_replaced_after_bref_loop_max(bad):
    boots = [requests.get(f"{bad.url}/loop/boot", timeout=30).json()["bootedAt"] for _ in range(12)]
    # BREF_LOOP_MAX=5: requests 1-5, 6-10, 11-12 on three instances.
    assert len(set(boots[0:5])) == 1 and len(set(boots[5:10])) == 1
    assert len(set(boots)) == 3


def test_global_state_stays_but_request_state_is_reset(bad):
    first = requests.get(f"{bad.url}/loop/state", params={"q": "1"}, headers={"X-Once": "yes"}, cookies={"c": "1"}, timeout=30).json()
    assert first["get"] == {"q": "1"} and first["once"] == "yes" and first["cookie"] == {"c": "1"}
    r = requests.post(f"{bad.url}/loop/state", data={"p": "2"}, timeout=30)
    assert r.json()["post"] == {"p": "2"}
    second = requests.get(f"{bad.url}/loop/state", timeout=30).json()
    # The app's own globals live on in the same instance (as with any long-running PHP) ...
    assert second["hits"] == first["hits"] + 1 or second["hits"] == 1  # 1 when BREF_LOOP_MAX recycled it
    # ... but nothing of the previous requests' input, headers or session is visible.
    assert second["get"] == [] and second["post"] == [] and second["cookie"] == []
    assert second["once"] is None
    assert second["session"] in (None, [])
    # A client without a cookie starting a session gets a new, empty one: never the last one's.
    mine = requests.get(f"{bad.url}/loop/mysession", timeout=30)
    assert mine.json()["session"] == []
    assert mine.json()["id"] != r.cookies.get("PHPSESSID")
    assert mine.cookies.get("PHPSESSID") == mine.json()["id"]


def test_exit_answers_like_fpm_and_the_next_request_is_served(bad):
    before = requests.get(f"{bad.url}/leaky/boot", timeout=30).json()["bootedAt"]
    r = requests.get(f"{bad.url}/leaky/exit", timeout=30)
    assert r.status_code == 200
    assert r.text == "partial output"
    after = requests.get(f"{bad.url}/leaky/boot", timeout=30)
    assert after.status_code == 200
    assert after.json()["bootedAt"] != before


def test_output_before_headers_keeps_status_and_headers(bad):
    r = requests.get(f"{bad.url}/leaky/early", timeout=30)
    # php-fpm would send the echo first and lose the headers; worker mode keeps both.
    assert r.status_code == 201
    assert r.headers["X-After-Output"] == "yes"
    assert r.text == "printed first;body"


def test_symfony_console_commands(apps):
    r = apps.cli("invoke", "symfony-dev-console", "--data", json.dumps("app:greet Ada"))
    assert json.loads(r.stdout) == {"exitCode": 0, "output": "Hello Ada from Symfony\n"}
    r = apps.cli("invoke", "symfony-dev-console", "--data", json.dumps("cache:warmup"))
    out = json.loads(r.stdout)
    assert out["exitCode"] == 0 and "successfully warmed" in out["output"]
    # A non-zero exit status is an invocation error carrying the output.
    r = apps.cli("invoke", "symfony-dev-console", "--data", json.dumps("app:greet --fail"), check=False)
    assert r.returncode != 0
    err = json.loads(r.stdout)
    assert err["errorType"] == "Runtime.ConsoleExitError"
    assert "status code: 3" in err["errorMessage"] and "Hello world from Symfony" in err["errorMessage"]


def test_laravel_artisan_commands(apps):
    r = apps.cli("invoke", "laravel-dev-artisan", "--data", json.dumps(["app:greet", "Grace Hopper"]))
    assert json.loads(r.stdout) == {"exitCode": 0, "output": "Hello Grace Hopper from Laravel\n"}
    # What the every-minute `schedule` event runs: the scheduler runs the due command.
    r = apps.cli("invoke", "laravel-dev-artisan", "--data", json.dumps("schedule:run"))
    out = json.loads(r.stdout)
    assert out["exitCode"] == 0
    assert "app:greet scheduler" in out["output"]
    r = apps.cli("invoke", "laravel-dev-artisan", "--data", json.dumps("app:greet --fail"), check=False)
    assert r.returncode != 0
    assert "status code: 3" in json.loads(r.stdout)["errorMessage"]


# --- Classic mode: a legacy php-fpm app, unchanged, with its state on a persistent volume ---

SHARER = {
    "serverless.yml": """
service: sharer
provider:
  name: aws
  runtime: php-82
functions:
  reader:
    handler: reader.php
    fileSystemConfig:
      localMountPath: /mnt/shared
      volume: legacy-data
""",
    "reader.php": """<?php
return fn ($event) => ['files' => array_map('basename', glob('/mnt/shared/uploads/*')),
    'env' => getenv('TUSK_VOLUME_LEGACY_DATA')];
""",
}


def test_legacy_app_keeps_files_and_sessions_across_instances_and_restarts(fresh_node, tmp_path):
    node = fresh_node()
    node.deploy(EXAMPLES / "legacy")
    base = f"{node.url}/legacy"
    client = requests.Session()

    r = client.get(base + "/", timeout=30)
    assert r.status_code == 200
    assert r.headers["X-Legacy"] == "yes"  # header() from the app
    assert "Visits this session: 1" in r.text
    assert client.get(base + "/session", timeout=30).json()["visits"] == 2

    server = requests.get(base + "/server", params={"a": "1"}, timeout=30).json()
    assert server["method"] == "GET" and server["uri"] == "/legacy/server?a=1"
    assert server["script"].endswith("/public/index.php") and server["query"] == {"a": "1"}

    payload = bytes(range(256)) * 40_000  # 10 MB upload, stored on the volume
    r = client.post(base + "/upload", files={"file": ("photo.bin", payload)}, allow_redirects=False, timeout=60)
    assert r.status_code == 303 and r.headers["Location"] == "/legacy/files/photo.bin"
    r = client.post(base + "/note", data={"text": "first note"}, timeout=30)
    assert r.url.endswith("/legacy/notes") and r.text == "first note\n"
    assert requests.get(base + "/tmp", timeout=30).text == "scratch"

    # On the node: DATA_DIR/volumes/NAME, the name from the access point in the ARN.
    stored = node.data_dir / "volumes" / "legacy-data" / "uploads" / "photo.bin"
    assert hashlib.sha1(stored.read_bytes()).hexdigest() == hashlib.sha1(payload).hexdigest()

    # Another function mounting the same volume elsewhere sees the upload.
    node.deploy(write_project(tmp_path / "sharer", SHARER))
    out = node.invoke("sharer-dev-reader", {}).json()
    assert out == {"files": ["photo.bin"], "env": "/mnt/shared"}

    # Restart the node: new instances, same volume, same session.
    node.stop()
    node.start()
    # (Every page counts a visit: /, /session, /upload, /note and its redirect to /notes, now.)
    assert client.get(base + "/session", timeout=30).json()["visits"] == 6
    r = requests.get(base + "/files/photo.bin", timeout=60)
    assert r.status_code == 200 and r.content == payload
    assert requests.get(base + "/notes", timeout=30).text == "first note\n"
    # Another client: its own session.
    assert requests.get(base + "/session", timeout=30).json()["visits"] == 1


def test_symfony_runtime_front_controller_closure(node, workdir):
    """Symfony Runtime's front controller (`return function (array $context) {...}` after
    vendor/autoload_runtime.php) works as the handler: Tusk calls the closure once."""
    import shutil

    app = workdir / "sfruntime"
    shutil.copytree(EXAMPLES / "symfony", app)
    (app / "vendor").mkdir()
    # What Composer's symfony/runtime plugin generates, reduced to its control flow: return
    # early when there is no script to run (Tusk hides SCRIPT_FILENAME while loading).
    (app / "vendor/autoload_runtime.php").write_text(
        "<?php\nrequire_once __DIR__ . '/../autoload.php';\n"
        "if (empty($_SERVER['SCRIPT_FILENAME'])) { return; }\n"
        "throw new LogicException('the runtime would run the app itself here');\n"
    )
    (app / "public/runtime.php").write_text(
        "<?php\nuse App\\Kernel;\nrequire_once dirname(__DIR__) . '/vendor/autoload_runtime.php';\n"
        "return function (array $context) {\n"
        "    return new Kernel($context['APP_ENV'], (bool) $context['APP_DEBUG']);\n};\n"
    )
    (app / "serverless.yml").write_text(
        "service: sfruntime\nprovider:\n  name: aws\n  runtime: php-82\n  environment:\n    APP_ENV: prod\n"
        "functions:\n  web:\n    handler: public/runtime.php\n"
    )
    node.deploy(app)
    # Invoked directly with a payload 1.0 event, as an `http` route would send it.
    event = {"httpMethod": "GET", "path": "/symfony/hello/Runtime", "headers": {"Host": "example.com"},
             "queryStringParameters": {"a": "b"}, "requestContext": {"identity": {"sourceIp": "10.0.0.1"}}, "body": None}
    out = node.invoke("sfruntime-dev-web", event).json()
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"]) == {"hello": "Runtime", "query": {"a": "b"}}
    assert out["multiValueHeaders"]["Content-Type"] == ["application/json"]
