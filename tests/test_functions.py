"""The php-82 function runtime through the Invoke API and the CLI, with Lambda's semantics."""

import base64
import json
import time

import pytest
import requests

from conftest import EXAMPLES, write_project


@pytest.fixture(scope="module")
def hello(node):
    out = node.deploy(EXAMPLES / "hello-function")
    assert "hello-function-dev-hello" in out.stdout
    return node


def test_invoke_returns_handler_result_and_reuses_warm_instance(hello):
    r = hello.invoke("hello-function-dev-hello", {"name": "Tusk"})
    assert r.status_code == 200
    assert r.json()["hello"] == "Tusk"
    assert r.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert "X-Amz-Function-Error" not in r.headers
    assert r.json()["requestId"] == r.headers["x-amzn-RequestId"]
    cold = hello.metric("tusk_cold_starts_total", function="hello-function-dev-hello")
    for i in range(20):
        assert hello.invoke("hello-function-dev-hello", {"name": str(i)}).json()["hello"] == str(i)
    # Warm instances are reused: no new process per request.
    assert hello.metric("tusk_cold_starts_total", function="hello-function-dev-hello") == cold


def test_short_name_and_arn_resolve(hello):
    assert hello.invoke("hello", {"name": "short"}).json()["hello"] == "short"
    arn = "arn:aws:lambda:us-east-1:000000000000:function:hello-function-dev-hello"
    assert hello.invoke(arn, {"name": "arn"}).json()["hello"] == "arn"


def test_tail_log_has_start_end_report(hello):
    r = hello.invoke("hello-function-dev-hello", {"name": "log"}, headers={"X-Amz-Log-Type": "Tail"})
    log = base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
    rid = r.headers["x-amzn-RequestId"]
    assert f"START RequestId: {rid} Version: $LATEST" in log
    assert f"END RequestId: {rid}" in log
    report = [l for l in log.splitlines() if l.startswith("REPORT")][0]
    for field in ("Duration:", "Billed Duration:", "Memory Size: 512 MB", "Max Memory Used:"):
        assert field in report


def test_function_error_has_lambda_shape(hello):
    r = hello.invoke("hello-function-dev-fail", {})
    assert r.status_code == 200
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    body = r.json()
    assert body["errorType"] == "RuntimeException"
    assert "always fails" in body["errorMessage"]
    assert isinstance(body["stackTrace"], list)
    # The instance survives an exception.
    assert hello.invoke("hello-function-dev-hello", {"name": "after"}).json()["hello"] == "after"


def test_dry_run_bad_json_too_large_unknown(hello):
    r = hello.invoke("hello-function-dev-hello", headers={"X-Amz-Invocation-Type": "DryRun"})
    assert r.status_code == 204
    r = hello.invoke("hello-function-dev-hello", raw="{not json")
    assert r.status_code == 400
    assert r.headers["X-Amzn-ErrorType"] == "InvalidRequestContentException"
    r = hello.invoke("hello-function-dev-hello", raw='"' + "x" * (6 * 1024 * 1024) + '"')
    assert r.status_code == 413
    assert r.headers["X-Amzn-ErrorType"] == "RequestTooLargeException"
    r = hello.invoke("no-such-function", {})
    assert r.status_code == 404
    assert r.headers["X-Amzn-ErrorType"] == "ResourceNotFoundException"
    assert r.json()["Message"].startswith("Function not found: arn:aws:lambda:")


def test_authentication_required(hello):
    url = f"{hello.url}/2015-03-31/functions/hello-function-dev-hello/invocations"
    assert requests.post(url, data="{}").status_code in (401, 403)
    r = requests.post(url, data="{}", headers={"Authorization": "Bearer wrong"})
    assert r.status_code in (401, 403)
    assert r.headers["X-Amzn-ErrorType"]
    assert requests.get(f"{hello.url}/_tusk/functions").status_code in (401, 403)
    # Health and public routes need no credentials.
    assert requests.get(f"{hello.url}/_tusk/health").status_code == 200
    assert requests.get(f"{hello.url}/hello").status_code == 200


def test_cli_invoke_ls_info_logs(hello):
    r = hello.cli("invoke", "hello-function-dev-hello", "--data", '{"name":"cli"}', "--log")
    assert json.loads(r.stdout)["hello"] == "cli"
    assert "REPORT RequestId:" in r.stderr
    r = hello.cli("invoke", "hello-function-dev-fail", check=False)
    assert r.returncode != 0
    assert "RuntimeException" in r.stdout + r.stderr
    r = hello.cli("invoke", "hello-function-dev-hello", "--data", "{bad", check=False)
    assert r.returncode != 0
    ls = hello.cli("ls").stdout
    assert "hello-function-dev-hello" in ls and "hello-function-dev-api" in ls
    info = hello.cli("info", "hello-function-dev-api").stdout
    assert "GET /hello" in info
    time.sleep(0.5)
    logs = hello.cli("logs", "hello-function-dev-hello").stdout
    assert "START RequestId:" in logs and "REPORT RequestId:" in logs


def test_http_api_route_to_psr15_handler(hello):
    r = requests.get(f"{hello.url}/hello", params={"name": "Route"})
    assert r.status_code == 200
    assert r.json()["message"] == "Hello Route!"
    assert requests.post(f"{hello.url}/hello").status_code == 404


def test_metrics_are_prometheus_text(hello):
    hello.invoke("hello-function-dev-hello", {})
    text = hello.metrics()
    assert "# TYPE tusk_invocations_total counter" in text
    assert hello.metric("tusk_invocations_total", function="hello-function-dev-hello") >= 1
    assert hello.metric("tusk_errors_total", function="hello-function-dev-fail") >= 1
    assert 'tusk_invocation_duration_seconds_bucket{function="hello-function-dev-hello",le="+Inf"}' in text
    assert hello.metric("tusk_instances", function="hello-function-dev-hello", state="idle") >= 1


BEHAVIOUR = {
    "serverless.yml": """
service: behave
provider:
  name: aws
  runtime: php-82
functions:
  slow:
    handler: slow.php
    timeout: 1
  die:
    handler: die.php
  pid:
    handler: pid.php
  chatty:
    handler: chatty.php
  limited:
    handler: sleep.php
    reservedConcurrency: 1
""",
    "slow.php": "<?php return function ($e) { if (($e['sleep'] ?? 0) > 0) { sleep($e['sleep']); } return 'done'; };",
    "die.php": "<?php return function ($e) { if ($e['exit'] ?? false) { echo \"bye\\n\"; exit(3); } return getenv('AWS_LAMBDA_LOG_STREAM_NAME'); };",
    "pid.php": "<?php return fn ($e) => getenv('AWS_LAMBDA_LOG_STREAM_NAME');",
    "chatty.php": "<?php return function ($e) { for ($i = 0; $i < $e['lines']; $i++) { echo \"line $i\\n\"; } fwrite(STDERR, \"to stderr\\n\"); error_log('via error_log'); return $e['lines']; };",
    "sleep.php": "<?php return function ($e) { usleep(($e['ms'] ?? 0) * 1000); return 'ok'; };",
}


@pytest.fixture(scope="module")
def behave(node, workdir):
    project = write_project(workdir / "behave", BEHAVIOUR)
    node.deploy(project)
    return node


def test_timeout_kills_and_replaces_instance(behave):
    r = behave.invoke("behave-dev-slow", {"sleep": 5}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in r.json()["errorMessage"]
    assert "Task timed out after 1.00 seconds" in base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
    r = behave.invoke("behave-dev-slow", {"sleep": 0})
    assert r.json() == "done"


def test_exit_reports_runtime_exit_error_and_recovers(behave):
    pid = behave.invoke("behave-dev-die", {}).json()
    r = behave.invoke("behave-dev-die", {"exit": True}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] == "Runtime.ExitError"
    assert "bye" in base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
    new_pid = behave.invoke("behave-dev-die", {}).json()
    assert isinstance(new_pid, str) and new_pid != pid


def test_same_process_serves_warm_invocations(behave):
    pids = {behave.invoke("behave-dev-pid", {}).json() for _ in range(10)}
    assert len(pids) == 1


def test_output_is_captured_per_invocation(behave):
    r = behave.invoke("behave-dev-chatty", {"lines": 3}, headers={"X-Amz-Log-Type": "Tail"})
    log = base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
    assert "line 2" in log and "to stderr" in log and "via error_log" in log
    rid = r.headers["x-amzn-RequestId"]
    time.sleep(0.5)
    lines = requests.get(f"{behave.url}/_tusk/functions/behave-dev-chatty/logs", headers=behave.auth()).json()["lines"]
    mine = [l["line"] for l in lines if l["request_id"] == rid]
    assert "line 0" in mine and "to stderr" in mine


def test_megabytes_of_output_do_not_hurt_the_node(behave):
    r = behave.invoke("behave-dev-chatty", {"lines": 200000})
    assert r.json() == 200000
    assert behave.invoke("behave-dev-pid", {}).status_code == 200


def test_reserved_concurrency_caps_instances(behave):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: behave.invoke("behave-dev-limited", {"ms": 200}), range(8)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 8, [r.text for r in results]
    # One instance served them all, one at a time.
    assert behave.metric("tusk_cold_starts_total", function="behave-dev-limited") == 1


HANDLER_FORMS = {
    "serverless.yml": """
service: forms
provider:
  name: aws
  runtime: php-82
functions:
  closure:
    handler: closure.php
  invokable:
    handler: invokable.php
  handleobject:
    handler: handle.php
  classname:
    handler: App\\Handler
""",
    "closure.php": "<?php use Bref\\Context\\Context; return fn (array $e, Context $c) => ['form' => 'closure', 'arn' => $c->getInvokedFunctionArn(), 'left' => $c->getRemainingTimeInMillis() > 0];",
    "invokable.php": "<?php return new class { public function __invoke($e, $c) { return ['form' => 'invokable', 'id' => $c->getAwsRequestId()]; } };",
    "handle.php": "<?php return new class { public function handle($e, $c) { return ['form' => 'handle', 'in' => $e]; } };",
    "vendor/autoload.php": "<?php spl_autoload_register(function ($c) { if ($c === 'App\\\\Handler') { require __DIR__ . '/../src/Handler.php'; } });",
    "src/Handler.php": "<?php namespace App; final class Handler { public function handle($e, $c) { return ['form' => 'class', 'autoloaded' => true]; } }",
}


def test_bref_handler_forms(node, workdir):
    node.deploy(write_project(workdir / "forms", HANDLER_FORMS))
    r = node.invoke("forms-dev-closure", {}).json()
    assert r["form"] == "closure" and r["arn"].endswith(":function:forms-dev-closure") and r["left"] is True
    r = node.invoke("forms-dev-invokable", {})
    assert r.json() == {"form": "invokable", "id": r.headers["x-amzn-RequestId"]}
    assert node.invoke("forms-dev-handleobject", {"x": 1}).json() == {"form": "handle", "in": {"x": 1}}
    r = node.invoke("forms-dev-classname", {})
    assert r.json() == {"form": "class", "autoloaded": True}, r.text


def test_php_ini_overrides_from_the_package(node, workdir):
    project = write_project(workdir / "phpini", {
        "serverless.yml": """
service: phpini
provider: {name: aws}
functions:
  fn:
    runtime: php-82
    handler: fn.php
  web:
    runtime: php-82-fpm
    handler: public/index.php
    events: [{httpApi: 'GET /phpini'}]
""",
        "php/conf.d/app.ini": "memory_limit = 77M\nprecision = 10\n",
        "fn.php": "<?php return fn () => [ini_get('memory_limit'), ini_get('precision'), extension_loaded('Zend OPcache')];",
        "public/index.php": "<?php echo ini_get('memory_limit'), ' ', ini_get('precision');",
    })
    node.deploy(project)
    assert node.invoke("phpini-dev-fn", {}).json() == ["77M", "10", True]
    assert requests.get(f"{node.url}/phpini").text == "77M 10"


def test_opt_in_extensions_are_enabled_per_function(node, workdir):
    """FFI (rarely used, costly to load) is off by default and a function turns it on in its
    php/conf.d; the usual extensions stay on everywhere."""
    probe = "['ffi' => extension_loaded('ffi'), 'intl' => extension_loaded('intl'), 'pdo' => extension_loaded('pdo')]"
    files = lambda: {  # noqa: E731
        "serverless.yml": """
service: SERVICE
provider: {name: aws}
functions:
  fn:
    runtime: php-82
    handler: fn.php
  web:
    runtime: php-82-fpm
    handler: index.php
    events: [{httpApi: 'GET /SERVICE'}]
""",
        "fn.php": f"<?php return fn () => {probe};",
        "index.php": f"<?php echo json_encode({probe});",
    }
    plain = {k: v.replace("SERVICE", "extplain") for k, v in files().items()}
    with_ffi = {k: v.replace("SERVICE", "extffi") for k, v in files().items()}
    with_ffi["php/conf.d/extensions.ini"] = "extension=ffi\n"
    node.deploy(write_project(workdir / "extplain", plain))
    node.deploy(write_project(workdir / "extffi", with_ffi))
    assert node.invoke("extplain-dev-fn", {}).json() == {"ffi": False, "intl": True, "pdo": True}
    assert requests.get(f"{node.url}/extplain").json() == {"ffi": False, "intl": True, "pdo": True}
    assert node.invoke("extffi-dev-fn", {}).json() == {"ffi": True, "intl": True, "pdo": True}
    assert requests.get(f"{node.url}/extffi").json() == {"ffi": True, "intl": True, "pdo": True}
