"""Async invocations, destinations, schedules and queues: at-least-once, never lost."""

import base64
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import write_project

RECORDER = {
    "serverless.yml": """
service: ev
provider:
  name: aws
  runtime: php-82
functions:
  work:
    handler: work.php
    timeout: 1
    maximumRetryAttempts: 1
    destinations:
      onSuccess: arn:aws:sqs:us-east-1:000000000000:done
      onFailure: arn:aws:sqs:us-east-1:000000000000:failed
  chain:
    handler: work.php
    maximumRetryAttempts: 0
    destinations:
      onSuccess: work
""",
    "work.php": """<?php
return function ($e) {
    $mode = $e['mode'] ?? 'ok';
    if ($mode === 'fail') { throw new RuntimeException('failing on purpose ' . ($e['i'] ?? '')); }
    if ($mode === 'sleep') { sleep(3); }
    if ($mode === 'exit') { exit(9); }
    return ['i' => $e['i'] ?? null, 'seen' => $e['requestContext']['condition'] ?? null];
};
""",
}


def sqs_client(node):
    import boto3
    from botocore.config import Config

    return boto3.client("sqs", endpoint_url=node.url, region_name="us-east-1", aws_access_key_id="tusk",
                        aws_secret_access_key=node.token, config=Config(retries={"max_attempts": 0}))


def drain(node, queue, expect=None, timeout=60.0):
    """Every message body in `queue` (received and deleted), waiting for `expect` of them."""
    sqs = sqs_client(node)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies, deadline = [], time.time() + timeout
    while time.time() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        for m in got:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if not got:
            if expect is None or len(bodies) >= expect:
                break
            time.sleep(0.2)
    return bodies


def start_events_node(fresh_node, tmp_path):
    n = fresh_node(extra_args=["--async-retry-delay-ms", "200"])
    for q in ("done", "failed"):
        n.cli("queue", "create", q)
    n.deploy(write_project(tmp_path / "ev", RECORDER))
    return n


def invoke_async(node, name, payload):
    return node.invoke(name, payload, headers={"X-Amz-Invocation-Type": "Event"})


def test_async_success_failure_retries_and_destinations(fresh_node, tmp_path):
    n = start_events_node(fresh_node, tmp_path)
    r = invoke_async(n, "ev-dev-work", {"i": 1})
    assert r.status_code == 202 and r.headers["x-amzn-RequestId"]
    assert invoke_async(n, "ev-dev-work", {"i": 2, "mode": "fail"}).status_code == 202
    done = drain(n, "done", expect=1)
    assert len(done) == 1
    rec = done[0]
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["requestContext"]["requestId"] == r.headers["x-amzn-RequestId"]
    assert rec["requestPayload"] == {"i": 1}
    assert rec["responsePayload"]["i"] == 1
    failed = drain(n, "failed", expect=1)
    assert failed[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert failed[0]["requestContext"]["approximateInvokeCount"] == 2  # maximumRetryAttempts: 1
    assert failed[0]["responseContext"]["functionError"] == "Unhandled"
    assert failed[0]["responsePayload"]["errorType"] == "RuntimeException"
    # A function destination receives the record as its event.
    invoke_async(n, "ev-dev-chain", {"i": 3})
    done = drain(n, "done", expect=1)
    assert done[0]["responsePayload"]["seen"] == "Success"
    events = n.cli("events").stdout
    assert "ev-dev-work" in events and "dead-lettered" in events


def test_async_bad_input(fresh_node, tmp_path):
    n = start_events_node(fresh_node, tmp_path)
    big = {"x": "y" * (300 * 1024)}
    r = invoke_async(n, "ev-dev-work", big)
    assert r.status_code == 413 and r.headers["X-Amzn-ErrorType"] == "RequestTooLargeException"
    r = n.cli("invoke", "ev-dev-work", "--async", "--data", '{"i": 5}')
    assert "queued" in r.stdout
    assert drain(n, "done", expect=1)[0]["requestPayload"] == {"i": 5}
    bad = write_project(tmp_path / "baddest", {
        "serverless.yml": "service: baddest\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n    destinations: {onFailure: nowhere}\n",
        "f.php": "<?php return fn () => 1;",
    })
    r = n.cli("deploy", str(bad), check=False)
    assert r.returncode != 0 and "nowhere" in r.stderr
    cron = write_project(tmp_path / "badcron", {
        "serverless.yml": "service: badcron\nprovider: {name: aws, runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n    events:\n      - schedule: cron(0 12 * * * *)\n",
        "f.php": "<?php return fn () => 1;",
    })
    r = n.cli("deploy", str(cron), check=False)
    assert r.returncode != 0 and "serverless.yml:7" in r.stderr and "?" in r.stderr


SCHEDULED = {
    "serverless.yml": """
service: tick
provider:
  name: aws
  runtime: php-82
functions:
  tick:
    handler: tick.php
    maximumRetryAttempts: 0
    destinations:
      onSuccess: arn:aws:sqs:us-east-1:000000000000:ticks
    events:
      - schedule: rate(1 second)
      - schedule:
          rate: rate(1 second)
          input: {"custom": true}
          enabled: false
""",
    "tick.php": "<?php return fn ($e) => $e;",
}


def test_schedule_fires_once_per_tick_across_restarts(fresh_node, tmp_path):
    n = fresh_node(extra_args=["--allow-second-schedules"])
    n.cli("queue", "create", "ticks")
    n.deploy(write_project(tmp_path / "tick", SCHEDULED))
    time.sleep(3.5)
    n.stop(signal.SIGKILL)
    time.sleep(2.5)
    n.start()
    time.sleep(3)
    ticks = drain(n, "ticks")
    events = [t["requestPayload"] for t in ticks]
    assert all(e["detail-type"] == "Scheduled Event" and e["source"] == "aws.events" for e in events)
    assert not any(e.get("custom") for e in events), "a disabled schedule fired"
    times = [e["time"] for e in events]
    assert len(times) == len(set(times)), f"a tick fired twice: {sorted(times)}"
    assert len(times) >= 4
    # Ticks missed while the node was down are reported, not replayed.
    assert n.metric("tusk_schedule_ticks_total", state="missed") >= 1


QUEUE_APP = {
    "serverless.yml": """
service: shop
provider:
  name: aws
  runtime: php-82
constructs:
  jobs:
    type: queue
    maxRetries: 2
    batchSize: 5
    worker:
      handler: worker.php
      timeout: 1
      destinations: {}
functions:
  producer:
    handler: producer.php
    environment:
      QUEUE_URL: ${construct:jobs.queueUrl}
""",
    "worker.php": """<?php
return function ($event) {
    $failures = [];
    foreach ($event['Records'] as $r) {
        if ($r['body'] === 'poison') { exit(1); }
        if (str_starts_with($r['body'], 'fail')) { $failures[] = ['itemIdentifier' => $r['messageId']]; }
        else { echo "handled {$r['body']}\\n"; }
    }
    return ['batchItemFailures' => $failures];
};
""",
    "producer.php": "<?php return fn () => getenv('QUEUE_URL');",
}


def test_queue_worker_partial_failures_and_dead_letters(fresh_node, tmp_path):
    n = fresh_node()
    n.deploy(write_project(tmp_path / "shop", QUEUE_APP))
    url = n.invoke("shop-dev-producer", {}).json()
    assert url == f"{n.url}/000000000000/shop-dev-jobs"
    sqs = sqs_client(n)
    assert sqs.get_queue_url(QueueName="shop-dev-jobs")["QueueUrl"] == url
    r = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"ok-{i}"} for i in range(8)])
    assert len(r["Successful"]) == 8
    sqs.send_message(QueueUrl=url, MessageBody="fail-me")
    deadline = time.time() + 60
    dlq_url = sqs.get_queue_url(QueueName="shop-dev-jobs-dlq")["QueueUrl"]
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "1":
            break
        time.sleep(0.5)
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["fail-me"]
    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=dead[0]["ReceiptHandle"])
    main = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert main["ApproximateNumberOfMessages"] == "0" and main["ApproximateNumberOfMessagesNotVisible"] == "0"
    lines = requests.get(f"{n.url}/_tusk/functions/shop-dev-jobsWorker/logs", headers=n.auth()).json()["lines"]
    handled = {l["line"] for l in lines if l["line"].startswith("handled ")}
    assert handled == {f"handled ok-{i}" for i in range(8)}
    # A poison message that crashes the worker every time ends in the dead-letter queue, and
    # the queue keeps flowing for everything sent after it.
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    deadline = time.time() + 60
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "1":
            break
        time.sleep(0.5)
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["poison"]
    sqs.send_message(QueueUrl=url, MessageBody="after-poison")
    deadline = time.time() + 30
    while time.time() < deadline:
        lines = requests.get(f"{n.url}/_tusk/functions/shop-dev-jobsWorker/logs", headers=n.auth()).json()["lines"]
        if any(l["line"] == "handled after-poison" for l in lines):
            break
        time.sleep(0.3)
    else:
        pytest.fail("the queue stalled behind a poison message")


def test_sqs_api_visibility_purge_and_limits(fresh_node, tmp_path):
    n = fresh_node()
    sqs = sqs_client(n)
    url = sqs.create_queue(QueueName="plain", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    assert first["Body"] == "hello"
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    time.sleep(1.3)
    again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"][0]
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    with pytest.raises(Exception):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=url)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"] == "0"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="missing")
    with pytest.raises(Exception) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * 1024 + 1))
    assert "256" in str(err.value) or "shorter" in str(err.value)
    # The AWS CLI speaks the same API.
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "tusk", "AWS_SECRET_ACCESS_KEY": n.token, "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(["aws", "--endpoint-url", n.url, "sqs", "send-message", "--queue-url", url, "--message-body", "from-cli"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["MessageId"]
    ls = n.cli("queue", "ls").stdout
    assert "plain" in ls
    n.cli("queue", "rm", "plain")
    assert "plain" not in n.cli("queue", "ls").stdout
    gone = n.cli("queue", "rm", "plain", check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr, (gone.stdout, gone.stderr)


def test_durability_kill_minus_nine(fresh_node, tmp_path):
    """10,000 async events (some failing, some timing out); kill -9 the node mid-way; restart;
    every event ends in `done` or `failed` at least once."""
    total = int(os.environ.get("TUSK_DURABILITY_EVENTS", "10000"))
    n = start_events_node(fresh_node, tmp_path)
    url = f"{n.url}/2015-03-31/functions/ev-dev-work/invocations"
    session = requests.Session()
    headers = {**n.auth(), "X-Amz-Invocation-Type": "Event"}

    def mode(i):
        return "sleep" if i % 97 == 0 else "fail" if i % 10 == 3 else "ok"

    import concurrent.futures

    def send(i):
        r = session.post(url, data=json.dumps({"i": i, "mode": mode(i)}), headers=headers, timeout=30)
        assert r.status_code == 202, r.text
        return i

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(total // 2)))
    time.sleep(1.0)  # let processing get under way
    n.stop(signal.SIGKILL)
    n.start()
    session = requests.Session()
    headers = {**n.auth(), "X-Amz-Invocation-Type": "Event"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(total // 2, total)))
    expected_fail = {i for i in range(total) if mode(i) != "ok"}
    done = drain(n, "done", expect=total - len(expected_fail), timeout=600)
    failed = drain(n, "failed", expect=len(expected_fail), timeout=300)
    seen_ok = [r["requestPayload"]["i"] for r in done]
    seen_fail = [r["requestPayload"]["i"] for r in failed]
    missing = set(range(total)) - set(seen_ok) - set(seen_fail)
    duplicates = (len(seen_ok) - len(set(seen_ok))) + (len(seen_fail) - len(set(seen_fail)))
    print(f"durability: {total} events, {len(set(seen_ok))} succeeded, {len(set(seen_fail))} failed, "
          f"{duplicates} duplicates, {len(missing)} missing")
    assert not missing, f"lost events: {sorted(missing)[:20]}"
    assert set(seen_fail) == expected_fail
    timeouts = [r for r in failed if r["requestPayload"]["mode"] == "sleep"]
    wrong = [r["responsePayload"] for r in timeouts if r["responsePayload"]["errorType"] != "Sandbox.Timedout"]
    assert not wrong, f"timeouts reported as something else: {wrong[:5]}"
