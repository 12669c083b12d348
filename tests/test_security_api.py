"""The node is the authority over what a deploy may ask for, and small holes stay closed.

Deploys here skip the CLI: a hand-made zip goes to PUT /_tusk/packages/<sha256> and a JSON
spec to POST /_tusk/deployments, the way an attacker holding the token (or a buggy client)
would send them. Each bad spec must come back 400 naming the problem, and nothing of it may
go live.
"""

import copy
import hashlib
import io
import json
import time
import zipfile

import pytest
import requests

from conftest import write_project

INDEX = "<?php return fn ($event) => ['ran' => true];"


def package(files=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in (files or {"index.php": INDEX}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o644 << 16  # as the CLI packs files
            z.writestr(info, text)
    return buf.getvalue()


def upload(node, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    r = requests.put(f"{node.url}/_tusk/packages/{sha}", data=data, headers=node.auth(), timeout=30)
    assert r.status_code in (200, 201), r.text
    return sha


def base_spec(service="rawapi"):
    return {
        "service": service,
        "stage": "dev",
        "region": "us-east-1",
        "package_patterns": [],
        "functions": [{
            "name": "hello",
            "handler": "index.php",
            "runtime": "php-82",
            "kind": "php-function",
            "php_version": "8.2",
            "memory_size": 1024,
            "timeout": 6,
            "environment": {},
            "events": [],
            "reserved_concurrency": None,
            "provisioned_concurrency": 0,
            "ephemeral_storage_size": 512,
        }],
        "queues": [],
    }


def deploy_raw(node, spec, sha):
    return requests.post(f"{node.url}/_tusk/deployments", json={"spec": spec, "package": sha},
                         headers=node.auth(), timeout=60)


def with_function(**changes):
    spec = base_spec()
    spec["functions"][0].update(changes)
    return spec


def route(method, path):
    return with_function(events=[{"type": "httpApi", "method": method, "path": path}])


def sqs_queue_arn(name):
    return f"arn:aws:sqs:us-east-1:000000000000:{name}"


BAD_SPECS = {
    "memory 4e9": (with_function(memory_size=4_000_000_000), "`memorySize` is 4000000000"),
    "timeout 0": (with_function(timeout=0), "`timeout` is 0"),
    "timeout 901": (with_function(timeout=901), "from 1 to 900"),
    "ephemeral 100": (with_function(ephemeral_storage_size=100), "ephemeralStorageSize"),
    "provisioned 1e6": (with_function(provisioned_concurrency=1_000_000), "provisionedConcurrency"),
    "reserved 1e9": (with_function(reserved_concurrency=1_000_000_000), "reservedConcurrency"),
    "retries 9": (with_function(maximum_retry_attempts=9), "maximumRetryAttempts"),
    "admin route": (route("GET", "/_tusk/metrics"), "reserved"),
    "lambda route": (route("POST", "/2015-03-31/functions/x/invocations"), "reserved"),
    "other aws prefix": (route("GET", "/2020-06-30/x"), "reserved"),
    "oldest aws prefix": (route("GET", "/2014-11-13/x"), "reserved"),
    "route without slash": (route("GET", "x"), "starts with `/`"),
    "route with space": (route("GET", "/a b"), "spaces or control"),
    "route with NUL": (route("GET", "/a\u0000b"), "control"),
    "greedy not last": (route("GET", "/{proxy+}/x"), "greedy"),
    "method with spaces": (route("G E T", "/x"), "HTTP method `G E T`"),
    "method lower case": (route("get", "/x"), "HTTP method"),
    "env key with =": (with_function(environment={"A=B": "x"}), "environment variable name `A=B`"),
    "env key with NUL": (with_function(environment={"A\u0000B": "x"}), "environment variable name"),
    "env key digit first": (with_function(environment={"1A": "x"}), "environment variable name"),
    "env value with NUL": (with_function(environment={"A": "x\u0000y"}), "NUL"),
    "env runtime api": (with_function(environment={"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"}),
                        "AWS_LAMBDA_RUNTIME_API is reserved"),
    "env task root": (with_function(environment={"LAMBDA_TASK_ROOT": "/"}), "reserved"),
    "env over 4 KB": (with_function(environment={"BIG": "x" * 5000}), "Lambda allows 4096"),
    "handler NUL": (with_function(handler="index.php\u0000x"), "handler"),
    "runtime unknown": (with_function(runtime="nodejs20.x"), "not one Tusk runs"),
    "runtime kind mismatch": (with_function(kind="php-fpm"), "not one Tusk runs"),
    "function name > 64": (with_function(name="f" * 60), "Lambda allows 64"),
    "second schedule": (with_function(events=[{"type": "schedule", "expression": "rate(1 second)",
                                               "input": None, "enabled": True}]),
                        "--allow-second-schedules"),
    "sqs event traversal": (with_function(events=[{"type": "sqs", "arn": sqs_queue_arn("../../x"),
                                                   "batch_size": 10, "maximum_batching_window": 0,
                                                   "function_response_type": None}]),
                            "not a queue ARN"),
    "destination traversal": (with_function(destinations={"on_success": None,
                                                          "on_failure": sqs_queue_arn("../../x")}),
                              "is invalid"),
}


def queue_spec(name):
    spec = base_spec()
    spec["queues"] = [{"name": name, "visibility_timeout": 30, "max_receive_count": 3}]
    return spec


BAD_SPECS["queue traversal"] = (queue_spec("../../x"), "queue ../../x")
BAD_SPECS["queue with dlq over 80"] = (queue_spec("q" * 78), "dead-letter queue")


@pytest.fixture(scope="module")
def sha(node):
    """The package every raw deploy uses; a plain spec with it deploys and runs, so the
    refusals below are about the spec alone."""
    sha = upload(node, package())
    r = deploy_raw(node, base_spec("rawok"), sha)
    assert r.status_code == 200, r.text
    assert node.invoke("rawok-dev-hello").json() == {"ran": True}
    return sha


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_raw_deploys_outside_the_rules_are_refused(node, sha, case):
    spec, expected = BAD_SPECS[case]
    spec = copy.deepcopy(spec)
    spec["service"] = "rawbad"
    r = deploy_raw(node, spec, sha)
    assert r.status_code == 400, f"{case}: {r.status_code} {r.text}"
    message = r.json()["error"]
    assert expected in message, f"{case}: {message}"
    # Nothing of it went live.
    listed = requests.get(f"{node.url}/_tusk/functions", headers=node.auth(), timeout=10).json()
    assert not [f for f in listed["functions"] if f["name"].startswith("rawbad-")], listed


def test_second_schedules_only_on_a_test_node(fresh_node):
    n = fresh_node(extra_args=["--allow-second-schedules"])
    spec = with_function(events=[{"type": "schedule", "expression": "rate(1 second)",
                                  "input": None, "enabled": False}])
    r = deploy_raw(n, spec, upload(n, package()))
    assert r.status_code == 200, r.text
    assert any("AWS refuses rates below 1 minute" in w for w in r.json()["warnings"]), r.json()


def test_one_queue_name_rule_for_the_admin_and_sqs_apis(node):
    for name in ["../../x", "a" * 81, "a.b", ""]:
        r = requests.post(f"{node.url}/_tusk/queues", json={"name": name}, headers=node.auth(), timeout=10)
        assert r.status_code == 400, (name, r.text)
        assert "1 to 80 letters" in r.json()["error"]
    # SQS's own rule allows a `.fifo` suffix, on both APIs.
    r = requests.post(f"{node.url}/_tusk/queues", json={"name": "secjobs.fifo"}, headers=node.auth(), timeout=10)
    assert r.status_code == 201, r.text
    from test_events import sqs_client
    sqs = sqs_client(node)
    assert sqs.create_queue(QueueName="secsqs.fifo")["QueueUrl"].endswith("/secsqs.fifo")
    with pytest.raises(Exception) as e:
        sqs.create_queue(QueueName="../../x")
    assert "1 to 80 letters" in str(e.value)


# -- SigV4: every x-amz-* header must be signed ------------------------------------------------

@pytest.fixture(scope="module")
def signed_function(node, workdir):
    project = write_project(workdir / "sigv4-app", {
        "serverless.yml": "service: sigv4\nprovider: {name: aws, runtime: php-82}\n"
                          "functions: {hello: {handler: index.php}}\n",
        "index.php": INDEX,
    })
    node.deploy(project)
    return "sigv4-dev-hello"


def signed_invoke(node, function, extra_signed=None):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{node.url}/2015-03-31/functions/{function}/invocations"
    req = AWSRequest(method="POST", url=url, data=b"{}",
                     headers={"Content-Type": "application/json", **(extra_signed or {})})
    SigV4Auth(Credentials("tusk", node.token), "lambda", "us-east-1").add_auth(req)
    return url, dict(req.headers.items())


def test_unsigned_amz_header_on_a_signed_request_is_refused(node, signed_function):
    url, headers = signed_invoke(node, signed_function)
    r = requests.post(url, data=b"{}", headers=headers, timeout=30)
    assert r.status_code == 200 and r.json() == {"ran": True}, r.text

    # The same signed request with an unsigned DryRun slipped in: refused, not a dry run.
    url, headers = signed_invoke(node, signed_function)
    r = requests.post(url, data=b"{}", headers={**headers, "X-Amz-Invocation-Type": "DryRun"}, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.headers.get("x-amzn-errortype") == "InvalidSignatureException"
    assert "not signed: x-amz-invocation-type" in r.json()["message"]

    # Signed, the header is honoured as before.
    url, headers = signed_invoke(node, signed_function, {"X-Amz-Invocation-Type": "DryRun"})
    r = requests.post(url, data=b"{}", headers=headers, timeout=30)
    assert r.status_code == 204, (r.status_code, r.text)


# -- /_tusk/metrics needs the token -----------------------------------------------------------

def test_metrics_need_the_token(node):
    r = requests.get(f"{node.url}/_tusk/metrics", timeout=10)
    assert r.status_code == 403, r.text
    assert "tusk_" not in r.text
    r = requests.get(f"{node.url}/_tusk/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401, r.text
    r = requests.get(f"{node.url}/_tusk/metrics", headers=node.auth(), timeout=10)
    assert r.status_code == 200 and "tusk_" in r.text


def test_public_metrics_flag(fresh_node):
    n = fresh_node(extra_args=["--public-metrics"])
    r = requests.get(f"{n.url}/_tusk/metrics", timeout=10)
    assert r.status_code == 200 and "tusk_" in r.text, r.text
    # Only metrics: the rest of the admin API still needs the token.
    assert requests.get(f"{n.url}/_tusk/functions", timeout=10).status_code == 403


# -- serverless.yml variables cannot run away --------------------------------------------------

def test_nested_variable_doubling_fails_fast(node, tmp_path):
    lines = ["service: boom", "provider: {name: aws, runtime: php-82}", "custom:", "  a0: xxxxxxxx"]
    for i in range(1, 41):
        lines.append(f"  a{i}: ${{self:custom.a{i - 1}}}${{self:custom.a{i - 1}}}")
    lines += ["functions:", "  hello:", "    handler: index.php", "    environment:",
              "      BOOM: ${self:custom.a40}"]
    project = write_project(tmp_path / "boom", {"serverless.yml": "\n".join(lines) + "\n", "index.php": INDEX})
    started = time.time()
    r = node.cli("deploy", str(project), check=False, timeout=30)
    elapsed = time.time() - started
    assert r.returncode != 0, r.stdout
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert "variables nest more than 32 deep" in r.stderr, r.stderr
    # The error points at a line of the file.
    assert "serverless.yml:" in r.stderr and "needed by `functions.hello.environment.BOOM`" in r.stderr, r.stderr
