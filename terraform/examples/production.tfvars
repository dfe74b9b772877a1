# Example production values. Deploy from the repo root in two phases (README: "Writer image"):
#   terraform -chdir=terraform apply -var-file=examples/production.tfvars -target=module.writer_registry
#   (make image, push it to writer_repository_url with make image-push)
#   terraform -chdir=terraform apply -var-file=examples/production.tfvars -var writer_image_tag=$(make -s image-tag)
# Secret values are NOT here: put them with `aws secretsmanager put-secret-value` (see README).
aws_region  = "eu-west-1"
name_prefix = "iot-bridge"
tags        = { Environment = "production", Owner = "platform" }

kafka_bootstrap_servers = "pkc-00000.eu-west-1.aws.confluent.cloud:9092"
kafka_topic             = "iot.telemetry"
kafka_dlq_topic         = "iot.telemetry.dlq"

iot_topic_filter = "devices/+/telemetry"

lambda_architecture         = "arm64"
lambda_memory_mb            = 512
lambda_timeout_seconds      = 30
lambda_reserved_concurrency = 20
esm_batch_size              = 100
esm_maximum_concurrency     = 10
log_retention_days          = 90

# The image comes from the writer repository this module creates (iot-bridge/kafka-to-mongo),
# at the tag given on the command line: -var writer_image_tag=<crate version>-<git short sha>.
writer_architecture       = "arm64"
writer_subnet_ids         = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
writer_security_group_ids = ["sg-0a1b2c3d4e5f60003"]
writer_desired_count      = 2
writer_autoscaling        = { min_count = 2, max_count = 6, target_consumer_lag = 5000 }
retention_days            = 90

alarm_emails                 = ["oncall@example.com"]
consumer_lag_alarm_threshold = 20000
