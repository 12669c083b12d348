"""Real AWS clients against Tusk: the AWS CLI and boto3, signing with Signature V4."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import EXAMPLES


@pytest.fixture(scope="module")
def signed(node):
    node.deploy(EXAMPLES / "hello-function")
    return node


def aws(node, *args, secret=None, check=True):
    aws_bin = shutil.which("aws")
    if not aws_bin:
        pytest.fail("the AWS CLI is missing: scripts/install-deps.sh installs it (pip install awscli)")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "tusk",
        "AWS_SECRET_ACCESS_KEY": secret or node.token,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("AWS_PROFILE", None)
    r = subprocess.run([aws_bin, "--endpoint-url", node.url, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def test_aws_cli_invoke(signed, tmp_path):
    out = tmp_path / "out.json"
    r = aws(signed, "lambda", "invoke", "--function-name", "hello-function-dev-hello",
            "--payload", '{"name":"aws"}',
            "--log-type", "Tail", str(out))
    meta = json.loads(r.stdout)
    assert meta["StatusCode"] == 200
    assert "FunctionError" not in meta
    assert json.loads(out.read_text())["hello"] == "aws"
    import base64
    assert "REPORT RequestId" in base64.b64decode(meta["LogResult"]).decode()


def test_aws_cli_function_error_and_listing(signed, tmp_path):
    out = tmp_path / "out.json"
    r = aws(signed, "lambda", "invoke", "--function-name", "hello-function-dev-fail", str(out))
    assert json.loads(r.stdout)["FunctionError"] == "Unhandled"
    assert json.loads(out.read_text())["errorType"] == "RuntimeException"
    names = [f["FunctionName"] for f in json.loads(aws(signed, "lambda", "list-functions").stdout)["Functions"]]
    assert "hello-function-dev-hello" in names
    conf = json.loads(aws(signed, "lambda", "get-function", "--function-name", "hello-function-dev-hello").stdout)
    assert conf["Configuration"]["Handler"] == "index.php"
    assert conf["Configuration"]["MemorySize"] == 512


def test_aws_cli_wrong_secret_and_unknown_function(signed, tmp_path):
    r = aws(signed, "lambda", "invoke", "--function-name", "hello-function-dev-hello", str(tmp_path / "o"),
            secret="not-the-token", check=False)
    assert r.returncode != 0
    assert "InvalidSignatureException" in r.stderr or "signature" in r.stderr.lower()
    r = aws(signed, "lambda", "invoke", "--function-name", "nope", str(tmp_path / "o"), check=False)
    assert r.returncode != 0
    assert "ResourceNotFoundException" in r.stderr


def test_boto3_invoke(signed):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "lambda",
        endpoint_url=signed.url,
        region_name="us-east-1",
        aws_access_key_id="tusk",
        aws_secret_access_key=signed.token,
        config=Config(retries={"max_attempts": 0}),
    )
    r = client.invoke(FunctionName="hello-function-dev-hello", Payload=json.dumps({"name": "boto3"}))
    assert r["StatusCode"] == 200
    assert json.loads(r["Payload"].read())["hello"] == "boto3"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="missing-function", Payload=b"{}")
    r = client.invoke(FunctionName="hello-function-dev-hello", InvocationType="DryRun")
    assert r["StatusCode"] == 204
