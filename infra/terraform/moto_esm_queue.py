#!/usr/bin/env python3
"""A placeholder in moto for the queue the Lambda event-source mapping names.

The stack serves SQS from ministack and everything else, Lambda included, from moto. The
mapping is a Lambda resource, and moto (5.2.5, LambdaBackend.create_event_source_mapping)
accepts one only for an ARN among its own SQS queues (or streams): the queue Terraform makes
in ministack is unknown to it ("Invalid EventSourceArn"). So infra/terraform/check makes, in
moto, an empty queue of the same name before the apply. Both emulators use one account id
(moto's; infra/local/ministack.env) and region, so its ARN is the ARN of the queue Terraform
makes; the check asserts the mapping names that queue's ARN. Nothing is ever sent to the
placeholder; the check deletes it after the destroy.

  moto_esm_queue.py create NAME    prints the placeholder's ARN
  moto_esm_queue.py delete NAME

moto is at AWS_ENDPOINT_URL (named explicitly: AWS_ENDPOINT_URL_SQS points SQS elsewhere).
"""
import os
import sys

import boto3


def moto_sqs():
    return boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def create(name):
    sqs = moto_sqs()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    print(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def delete(name):
    sqs = moto_sqs()
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("create", "delete"):
        sys.exit(__doc__)
    (create if sys.argv[1] == "create" else delete)(sys.argv[2])
