#!/usr/bin/env python3
"""Checks, through the AWS API (in the check: SQS on the stack's ministack at
AWS_ENDPOINT_URL_SQS, the rest on its moto at AWS_ENDPOINT_URL), what `terraform apply` made.

Usage: assert_applied.py outputs.json tfvars.json...
outputs.json is `terraform output -json`; the tfvars files (later wins) give the
expected settings. Exits 1 on the first mismatch. Needs boto3.
"""
import json
import sys

import boto3


def fail(msg):
    print(f"assert_applied: FAIL {msg}")
    sys.exit(1)


def ok(msg):
    print(f"assert_applied: ok   {msg}")


def main(out_path, *var_paths):
    out = {k: v["value"] for k, v in json.load(open(out_path)).items()}
    var = {"max_receive_count": 5, "lambda_timeout_seconds": 30, "lambda_architecture": "arm64"}
    for p in var_paths:
        var.update(json.load(open(p)))

    sqs = boto3.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs.get("RedrivePolicy", "{}"))
    if int(redrive.get("maxReceiveCount", -1)) != var["max_receive_count"]:
        fail(f"queue redrive maxReceiveCount is {redrive.get('maxReceiveCount')}, want {var['max_receive_count']}")
    if redrive.get("deadLetterTargetArn") != out["dlq_arn"]:
        fail(f"queue redrive target is {redrive.get('deadLetterTargetArn')}, want {out['dlq_arn']}")
    if int(attrs["VisibilityTimeout"]) < 6 * var["lambda_timeout_seconds"]:
        fail(f"queue visibility timeout {attrs['VisibilityTimeout']} < 6x the Lambda timeout")
    if attrs.get("SqsManagedSseEnabled") != "true":
        fail("queue is not encrypted")
    ok(f"queue {out['queue_url']}: redrive to DLQ after {redrive['maxReceiveCount']} receives, SSE on")

    dlq = sqs.get_queue_attributes(QueueUrl=out["dlq_url"], AttributeNames=["All"])["Attributes"]
    if dlq.get("MessageRetentionPeriod") != "1209600" or dlq.get("SqsManagedSseEnabled") != "true":
        fail(f"DLQ retention {dlq.get('MessageRetentionPeriod')} (want 1209600) or SSE off")
    ok(f"DLQ {out['dlq_url']}: 14-day retention, SSE on")

    lam = boto3.client("lambda")
    fn = lam.get_function(FunctionName=out["function_name"])["Configuration"]
    want = {"Runtime": "provided.al2023", "Handler": "bootstrap", "Timeout": var["lambda_timeout_seconds"]}
    got = {k: fn.get(k) for k in want}
    if got != want:
        fail(f"function settings {got}, want {want}")
    if fn.get("Architectures") != [var["lambda_architecture"]]:
        fail(f"function architectures {fn.get('Architectures')}")
    env = fn.get("Environment", {}).get("Variables", {})
    if env.get("KAFKA_SECRET_ARN") != out["kafka_secret_arn"]:
        fail(f"KAFKA_SECRET_ARN is {env.get('KAFKA_SECRET_ARN')}, want the secret's ARN")
    if int(env.get("KAFKA_MESSAGE_TIMEOUT_MS", 0)) >= var["lambda_timeout_seconds"] * 1000:
        fail("KAFKA_MESSAGE_TIMEOUT_MS is not below the function timeout")
    ok(f"function {out['function_name']}: provided.al2023, bootstrap, {fn['Architectures'][0]}, env names/ARNs only")

    esm = lam.get_event_source_mapping(UUID=out["event_source_mapping_uuid"])
    if esm.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        fail(f"mapping FunctionResponseTypes is {esm.get('FunctionResponseTypes')}")
    if esm.get("EventSourceArn") != out["queue_arn"]:
        fail(f"mapping source is {esm.get('EventSourceArn')}, want {out['queue_arn']}")
    ok(f"event-source mapping {esm['UUID']}: queue -> function, ReportBatchItemFailures")

    cw = boto3.client("cloudwatch")
    names = out["alarm_names"]
    found = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    missing = sorted(set(names) - set(found))
    if missing:
        fail(f"alarms missing: {missing}")
    unrouted = [n for n, a in found.items() if out["alarm_topic_arn"] not in a.get("AlarmActions", [])]
    if unrouted:
        fail(f"alarms without the SNS topic as action: {unrouted}")
    ok(f"{len(found)} alarms exist and notify {out['alarm_topic_arn']}")

    body = json.loads(cw.get_dashboard(DashboardName=out["dashboard_name"])["DashboardBody"])
    widgets = body.get("widgets", [])
    if not any(w.get("type") == "metric" for w in widgets):
        fail(f"dashboard {out['dashboard_name']} has no metric widget")
    ok(f"dashboard {out['dashboard_name']}: {len(widgets)} widgets")

    if out.get("writer_service_name"):
        ecs = boto3.client("ecs")
        svc = ecs.describe_services(cluster=out["writer_cluster_name"], services=[out["writer_service_name"]])["services"]
        if not svc or svc[0].get("status") != "ACTIVE":
            fail(f"writer service {out['writer_service_name']} is not ACTIVE")
        td = ecs.describe_task_definition(taskDefinition=svc[0]["taskDefinition"])["taskDefinition"]
        secrets = {s["name"] for c in td["containerDefinitions"] for s in c.get("secrets", [])}
        if secrets != {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "MONGODB_URI"}:
            fail(f"writer secrets are {sorted(secrets)}")
        ok(f"writer {out['writer_cluster_name']}/{out['writer_service_name']}: ACTIVE, secrets injected by ECS")
        (c,) = td["containerDefinitions"]
        want_image = var.get("writer_image") or f"{out['writer_repository_url']}:{var['writer_image_tag']}"
        if c.get("image") != want_image:
            fail(f"writer image is {c.get('image')}, want {want_image}")
        if c.get("healthCheck", {}).get("command") != ["CMD", "/kafka-to-mongo", "healthcheck"]:
            fail(f"writer health check is {c.get('healthCheck')}, want the exec form of /kafka-to-mongo healthcheck")
        if c.get("readonlyRootFilesystem") is not True:
            fail("writer root file system is not read-only")
        ok(f"writer container: {c['image']}, health check {' '.join(c['healthCheck']['command'][1:])}, read-only root")

    if out.get("writer_repository_arn"):
        ecr = boto3.client("ecr")
        name = out["writer_repository_arn"].split(":repository/", 1)[1]
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        got = {
            "uri": repo["repositoryUri"],
            "mutability": repo["imageTagMutability"],
            "scan_on_push": repo["imageScanningConfiguration"]["scanOnPush"],
            "encryption": repo["encryptionConfiguration"],
        }
        want = {
            "uri": out["writer_repository_url"],
            "mutability": "IMMUTABLE",
            "scan_on_push": True,
            "encryption": {"encryptionType": "KMS", "kmsKey": out["kms_key_arn"]},
        }
        if got != want:
            fail(f"writer repository {got}, want {want}")
        rules = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])["rules"]
        kinds = sorted((r["selection"]["tagStatus"], r["selection"]["countType"], r["action"]["type"]) for r in rules)
        if kinds != [("tagged", "imageCountMoreThan", "expire"), ("untagged", "sinceImagePushed", "expire")]:
            fail(f"writer repository lifecycle rules are {kinds}")
        ok(f"repository {name}: IMMUTABLE tags, scan on push, KMS with the bridge's key, lifecycle {len(rules)} rules")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
