# Local emulators, as started by infra/local/stack: SQS on ministack at 127.0.0.1:4566, the
# rest on moto at 127.0.0.1:5000. infra/terraform/check applies this file with the endpoints
# it reads from .stack/stack.env. moto accepts the event-source mapping only for a queue it
# holds: the check first makes a placeholder of the queue's name in moto
# (infra/terraform/moto_esm_queue.py create <name_prefix>-telemetry; do the same by hand).
aws_region = "us-east-1"
aws_endpoints = {
  applicationautoscaling = "http://127.0.0.1:5000"
  cloudwatch             = "http://127.0.0.1:5000"
  ec2                    = "http://127.0.0.1:5000"
  ecr                    = "http://127.0.0.1:5000"
  ecs                    = "http://127.0.0.1:5000"
  iam                    = "http://127.0.0.1:5000"
  iot                    = "http://127.0.0.1:5000"
  kms                    = "http://127.0.0.1:5000"
  lambda                 = "http://127.0.0.1:5000"
  logs                   = "http://127.0.0.1:5000"
  secretsmanager         = "http://127.0.0.1:5000"
  sns                    = "http://127.0.0.1:5000"
  sqs                    = "http://127.0.0.1:4566"
  sts                    = "http://127.0.0.1:5000"
}

# moto's IoT lacks iot:ListTagsForResource, so creating a topic rule never completes.
enable_iot_rule = false
# moto's own event-source mapping deletes whole batches: `bridgectl esm` plays the mapping instead.
esm_enabled = false
# moto answers PutQueryDefinition with HTTP 500.
enable_query_definitions = false

kafka_bootstrap_servers = "127.0.0.1:9092"
lambda_zip_path         = "/tmp/dummy.zip"

# Deleted secrets and keys go at once so repeated runs do not collide.
secret_recovery_window_days = 0
kms_deletion_window_days    = 7

# moto's ECS checks that the service's subnets exist. infra/terraform/check creates a
# subnet and security group in moto and turns the writer on with their ids (and a
# writer_image_tag: moto's ECR stores the repository but holds no image, and never runs a task).
enable_writer        = false
writer_desired_count = 0
