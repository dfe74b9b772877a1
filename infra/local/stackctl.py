"""Readiness checks and provisioning for infra/local/stack (runs in the stack's venv).

    stackctl.py wait SERVICE --deadline S --log FILE   poll a real check until it passes or S seconds pass
    stackctl.py check SERVICE                          one check, exit 0 when healthy
    stackctl.py provision SERVICE                      create topics / collections / queues; print export lines

SERVICE is kafka, mongo, aws (moto: Logs, Secrets Manager) or sqs (ministack). SQS is reached
at AWS_ENDPOINT_URL_SQS, else AWS_ENDPOINT_URL, as the AWS SDKs do.
"""
import argparse
import json
import os
import sys
import time

TELEMETRY_PARTITIONS = 6
DLQ_PARTITIONS = 3


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"stackctl: {name} is not set (source the stack env file)")
    return value


def kafka_admin():
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": env("KAFKA_BOOTSTRAP_SERVERS"), "log_level": 0})


def check_kafka(timeout):
    md = kafka_admin().list_topics(timeout=timeout)
    if not md.brokers:
        raise RuntimeError("metadata lists no broker")


def mongo_client(timeout):
    from pymongo import MongoClient
    return MongoClient(env("MONGODB_URI"), serverSelectionTimeoutMS=int(timeout * 1000))


def check_mongo(timeout):
    mongo_client(timeout).admin.command("ping")


def sqs_endpoint():
    return os.environ.get("AWS_ENDPOINT_URL_SQS") or env("AWS_ENDPOINT_URL")


def aws_client(service, endpoint, timeout=None):
    import boto3
    from botocore.config import Config
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 0}) if timeout else None
    return boto3.client(service, endpoint_url=endpoint, region_name=env("AWS_REGION"), config=config)


def check_aws(timeout):
    aws_client("sts", env("AWS_ENDPOINT_URL"), timeout).get_caller_identity()


def check_sqs(timeout):
    aws_client("sqs", sqs_endpoint(), timeout).list_queues()


CHECKS = {"kafka": check_kafka, "mongo": check_mongo, "aws": check_aws, "sqs": check_sqs}


def wait(service, deadline_s, log):
    start = time.monotonic()
    last = None
    while time.monotonic() - start < deadline_s:
        try:
            CHECKS[service](2)
            print(f"[stack] {service} ready after {time.monotonic() - start:.1f}s", file=sys.stderr)
            return 0
        except Exception as e:  # every failure means "not ready yet"
            last = e
            time.sleep(0.2)
    print(f"[stack] error: {service} did not become ready within {deadline_s}s (last check: {last}); see its log: {log}",
          file=sys.stderr)
    try:
        with open(log, errors="replace") as f:
            tail = f.readlines()[-15:]
        sys.stderr.writelines("    " + line for line in tail)
    except OSError:
        pass
    return 1


def check(service):
    try:
        CHECKS[service](3)
        return 0
    except Exception as e:
        print(f"[stack] {service}: {e}", file=sys.stderr)
        return 1


def provision_kafka():
    from confluent_kafka.admin import NewTopic
    admin = kafka_admin()
    wanted = {env("KAFKA_TOPIC"): TELEMETRY_PARTITIONS, env("KAFKA_DLQ_TOPIC"): DLQ_PARTITIONS}
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in wanted.items() if t not in existing]
    for topic, future in (admin.create_topics(new, operation_timeout=10) if new else {}).items():
        future.result()
        print(f"[stack] created topic {topic}", file=sys.stderr)
    topics = admin.list_topics(timeout=10).topics
    for topic, n in wanted.items():
        got = len(topics[topic].partitions)
        if got != n:
            sys.exit(f"stackctl: topic {topic} has {got} partitions, expected {n}")


def provision_mongo():
    db = mongo_client(10)[env("MONGODB_DATABASE")]
    existing = set(db.list_collection_names())
    for name in ("telemetry", "devices"):
        if name not in existing:
            db.create_collection(name)
            print(f"[stack] created collection {db.name}.{name}", file=sys.stderr)


def provision_aws():
    """Nothing to create: Logs and Secrets Manager are used as they come."""


def provision_sqs():
    """The queues, on the SQS server. Their URLs and the DLQ's ARN are the server's own
    answers, never formatted here (the account id and the host are the server's)."""
    sqs = aws_client("sqs", sqs_endpoint())
    dlq_url = sqs.create_queue(QueueName=env("SQS_DLQ_NAME"),
                               Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(env("SQS_MAX_RECEIVE_COUNT"))})
    url = sqs.create_queue(QueueName=env("SQS_QUEUE_NAME"),
                           Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive})["QueueUrl"]
    # create_queue keeps an existing queue's attributes; make them what this stack promises.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive})
    print(f"export SQS_QUEUE_URL={url}")
    print(f"export SQS_DLQ_URL={dlq_url}")
    print(f"export SQS_DLQ_ARN={dlq_arn}")


PROVISION = {"kafka": provision_kafka, "mongo": provision_mongo, "aws": provision_aws, "sqs": provision_sqs}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("service", choices=CHECKS)
    w.add_argument("--deadline", type=float, default=60)
    w.add_argument("--log", default="")
    c = sub.add_parser("check")
    c.add_argument("service", choices=CHECKS)
    pr = sub.add_parser("provision")
    pr.add_argument("service", choices=PROVISION)
    a = p.parse_args()
    if a.cmd == "wait":
        return wait(a.service, a.deadline, a.log)
    if a.cmd == "check":
        return check(a.service)
    PROVISION[a.service]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
