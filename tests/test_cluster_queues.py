"""Queues shared by the nodes of a cluster: a message sent to one node is received, deleted,
redriven and delivered to `sqs` workers through any other, all through JetStream."""

import json
import os
import time

import pytest
import requests

from conftest import write_project
from test_cluster import nats_cluster, running_nodes, wait_until  # noqa: F401 (fixture)
from test_events import QUEUE_APP, sqs_client

DEST_APP = {
    "serverless.yml": """
service: qd
provider:
  name: aws
  runtime: php-82
functions:
  work:
    handler: work.php
    maximumRetryAttempts: 0
    destinations:
      onSuccess: arn:aws:sqs:us-east-1:000000000000:done
""",
    "work.php": "<?php return fn ($e) => ['i' => $e['i']];",
}


def receive_all(sqs, url, expect, timeout=30.0):
    got = []
    deadline = time.time() + timeout
    while len(got) < expect and time.time() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            got.append(m)
    return got


def test_queues_are_shared_by_every_node(nats_cluster, tmp_path):
    with running_nodes(nats_cluster, tmp_path, 2) as nodes:
        a, b = nodes
        sa, sb = sqs_client(a), sqs_client(b)

        # -- created on one node, known to the other; sent to one, received on the other --------
        url = sa.create_queue(QueueName="shared", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        assert wait_until(lambda: any(u.endswith("/shared") for u in sb.list_queues().get("QueueUrls", [])), 10)
        url_b = sb.get_queue_url(QueueName="shared")["QueueUrl"]
        sa.send_message(QueueUrl=url, MessageBody="hello",
                        MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
        first = receive_all(sb, url_b, 1)
        assert [m["Body"] for m in first] == ["hello"]
        assert first[0]["Attributes"]["ApproximateReceiveCount"] == "1"
        assert first[0]["MessageAttributes"]["k"]["StringValue"] == "v"
        # In flight for its visibility timeout on every node, then handed out again.
        assert sa.receive_message(QueueUrl=url).get("Messages", []) == []
        attrs = sa.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1", attrs
        time.sleep(2.3)
        again = receive_all(sa, url, 1)
        assert again[0]["MessageId"] == first[0]["MessageId"]
        assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
        # A receipt taken on one node deletes through the other; the receipt of the earlier
        # receive still works too (docs/cluster.md: unlike one node, which refuses it).
        sb.delete_message(QueueUrl=url_b, ReceiptHandle=first[0]["ReceiptHandle"])
        sb.delete_message(QueueUrl=url_b, ReceiptHandle=again[0]["ReceiptHandle"])
        time.sleep(2.3)
        assert sa.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
        attrs = sb.get_queue_attributes(QueueUrl=url_b, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0", attrs
        # A receipt of another queue, or made up, is refused.
        with pytest.raises(Exception):
            sb.delete_message(QueueUrl=url_b, ReceiptHandle="$JS.ACK.TUSK_ASYNC.async-x.1.1.1.1.0")

        # -- visibility: changed on one node, honoured everywhere --------------------------------
        sa.send_message(QueueUrl=url, MessageBody="later")
        m = receive_all(sb, url_b, 1)[0]
        sa.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        back = receive_all(sa, url, 1, timeout=5)
        assert [x["Body"] for x in back] == ["later"]
        # A longer visibility timeout for one receive.
        sb.change_message_visibility(QueueUrl=url_b, ReceiptHandle=back[0]["ReceiptHandle"], VisibilityTimeout=0)
        long = sa.receive_message(QueueUrl=url, VisibilityTimeout=5, WaitTimeSeconds=5)["Messages"]
        time.sleep(2.5)
        assert sb.receive_message(QueueUrl=url_b).get("Messages", []) == [], "visible before its own timeout"
        assert [x["Body"] for x in receive_all(sb, url_b, 1, timeout=6)] == ["later"]
        assert long[0]["Body"] == "later"

        # -- DelaySeconds, purge -------------------------------------------------------------
        sa.purge_queue(QueueUrl=url)
        sa.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=2)
        sent = time.time()
        got = receive_all(sb, url_b, 1, timeout=10)
        assert [x["Body"] for x in got] == ["delayed"] and time.time() - sent >= 1.8
        assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
        sb.send_message_batch(QueueUrl=url_b, Entries=[{"Id": str(i), "MessageBody": f"p{i}"} for i in range(5)])
        sa.purge_queue(QueueUrl=url)
        assert sb.receive_message(QueueUrl=url_b, WaitTimeSeconds=1).get("Messages", []) == []

        # -- deleted on one node, gone on the other --------------------------------------------
        sb.delete_queue(QueueUrl=url_b)
        with pytest.raises(sa.exceptions.QueueDoesNotExist):
            sa.get_queue_url(QueueName="shared")
        assert wait_until(lambda: not any(u.endswith("/shared") for u in sa.list_queues().get("QueueUrls", [])), 10)

        # -- a Lift queue with a worker: partial failures and the dead-letter queue ------------
        os.environ.setdefault("MARK_DIR", str(tmp_path))
        a.deploy(write_project(tmp_path / "shop", QUEUE_APP))
        jobs = sb.get_queue_url(QueueName="shop-dev-jobs")["QueueUrl"]
        sb.send_message_batch(QueueUrl=jobs, Entries=[{"Id": str(i), "MessageBody": f"ok-{i}"} for i in range(8)])
        sa.send_message(QueueUrl=jobs, MessageBody="fail-me")
        dlq = sa.get_queue_url(QueueName="shop-dev-jobs-dlq")["QueueUrl"]

        def dead_letters():
            return sa.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"]

        assert wait_until(lambda: dead_letters() == "1", 60, 0.5), "the failing message never reached the DLQ"
        dead = receive_all(sb, sb.get_queue_url(QueueName="shop-dev-jobs-dlq")["QueueUrl"], 1)
        assert [m["Body"] for m in dead] == ["fail-me"]

        def handled():
            out = set()
            for n in nodes:
                r = requests.get(f"{n.url}/_tusk/functions/shop-dev-jobsWorker/logs", headers=n.auth(),
                                 params={"limit": 5000}, timeout=30)
                out |= {l["line"] for l in r.json()["lines"] if l["line"].startswith("handled ")}
            return out

        assert wait_until(lambda: handled() >= {f"handled ok-{i}" for i in range(8)}, 30, 0.5), handled()
        # `tusk queue ls` on either node shows the shared queues.
        assert "shop-dev-jobs-dlq" in b.cli("queue", "ls").stdout

        # -- an async invocation's destination queue, read from the other node -----------------
        a.cli("queue", "create", "done")
        b.deploy(write_project(tmp_path / "qd", DEST_APP))
        for i in range(5):
            r = requests.post(f"{a.url}/2015-03-31/functions/qd-dev-work/invocations", data=json.dumps({"i": i}),
                              headers={**a.auth(), "X-Amz-Invocation-Type": "Event"}, timeout=10)
            assert r.status_code == 202, r.text
        records = receive_all(sb, sb.get_queue_url(QueueName="done")["QueueUrl"], 5)
        assert sorted(json.loads(m["Body"])["responsePayload"]["i"] for m in records) == list(range(5))
