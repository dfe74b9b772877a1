# AWS side of the IoT ingestion bridge:
# IoT rule -> SQS (+DLQ) -> Lambda sqs-to-kafka -> Kafka -> ECS kafka-to-mongo -> MongoDB.

locals {
  queue_name    = "${var.name_prefix}-telemetry"
  iot_rule_name = replace("${var.name_prefix}_telemetry", "-", "_") # rule names allow [A-Za-z0-9_] only
  lambda_zip    = startswith(var.lambda_zip_path, "/") ? var.lambda_zip_path : "${path.root}/${var.lambda_zip_path}"

  # Every log group encrypted with the key, by the names the modules give them. The key
  # policy lets CloudWatch Logs use the key for these only; it cannot refer to the log
  # groups themselves (they refer to the key), so the names are built here and the
  # kms_key_arn output checks them against the modules' log_group_name outputs.
  log_group_names = concat(
    ["/aws/lambda/${var.function_name}"],
    var.enable_writer ? ["/ecs/${var.name_prefix}-${var.writer_service_name}"] : [],
    var.enable_iot_rule ? ["/aws/iot/${var.name_prefix}/rule-errors"] : [],
  )

  # The writer's image: writer_image as given, else the tag in the module's repository.
  # Null without a tag: the writer's task definition then fails the plan with a message (a
  # precondition, which neither the registry phase, -target=module.writer_registry, nor a
  # destroy evaluates).
  writer_image = (
    var.writer_image != null ? var.writer_image :
    var.writer_image_tag == null || !var.enable_writer ? null :
    "${module.writer_registry[0].repository_url}:${var.writer_image_tag}"
  )
  writer_ecr_repository_arns = (
    var.writer_image == null ? module.writer_registry[*].repository_arn :
    var.writer_ecr_repository_arn == "" ? [] : [var.writer_ecr_repository_arn]
  )
}

module "secrets" {
  source                  = "./modules/secrets"
  name_prefix             = var.name_prefix
  create_mongodb_secret   = var.enable_writer
  recovery_window_in_days = var.secret_recovery_window_days
  deletion_window_in_days = var.kms_deletion_window_days
  log_group_names         = local.log_group_names
}

module "queues" {
  source                     = "./modules/queues"
  name                       = local.queue_name
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  message_retention_seconds  = var.queue_message_retention_seconds
  max_receive_count          = var.max_receive_count
}

module "lambda" {
  source                          = "./modules/lambda"
  function_name                   = var.function_name
  zip_path                        = local.lambda_zip
  architecture                    = var.lambda_architecture
  memory_mb                       = var.lambda_memory_mb
  timeout_seconds                 = var.lambda_timeout_seconds
  reserved_concurrency            = var.lambda_reserved_concurrency
  deadline_margin_ms              = var.lambda_deadline_margin_ms
  tracing_mode                    = var.lambda_tracing_mode
  subnet_ids                      = var.lambda_subnet_ids
  security_group_ids              = var.lambda_security_group_ids
  log_retention_days              = var.log_retention_days
  kms_key_arn                     = module.secrets.kms_key_arn
  queue_arn                       = module.queues.queue_arn
  kafka_secret_arn                = module.secrets.kafka_secret_arn
  kafka_bootstrap_servers         = var.kafka_bootstrap_servers
  kafka_topic                     = var.kafka_topic
  kafka_dlq_topic                 = var.kafka_dlq_topic
  kafka_security_protocol         = var.kafka_security_protocol
  kafka_sasl_mechanism            = var.kafka_sasl_mechanism
  metrics_namespace               = var.metrics_namespace
  batch_size                      = var.esm_batch_size
  maximum_batching_window_seconds = var.esm_maximum_batching_window_seconds
  maximum_concurrency             = var.esm_maximum_concurrency
  event_source_mapping_enabled    = var.esm_enabled
}

module "iot_rule" {
  source             = "./modules/iot_rule"
  count              = var.enable_iot_rule ? 1 : 0
  name_prefix        = var.name_prefix
  rule_name          = local.iot_rule_name
  topic_filter       = var.iot_topic_filter
  use_base64         = var.iot_use_base64
  queue_url          = module.queues.queue_url
  queue_arn          = module.queues.queue_arn
  kms_key_arn        = module.secrets.kms_key_arn
  log_retention_days = var.log_retention_days
}

# The writer's image repository, created when the writer is. Phase 1 of a new deployment
# applies it alone (-target=module.writer_registry) so the image can be pushed before the
# service that pulls it exists (README: "Writer image").
module "writer_registry" {
  source               = "./modules/registry"
  count                = var.enable_writer ? 1 : 0
  name                 = "${var.name_prefix}/${var.writer_service_name}"
  kms_key_arn          = module.secrets.kms_key_arn
  untagged_expiry_days = var.writer_repository_untagged_expiry_days
  tagged_images_kept   = var.writer_repository_tagged_images_kept
}

module "writer" {
  source                  = "./modules/writer"
  count                   = var.enable_writer ? 1 : 0
  name_prefix             = var.name_prefix
  service_name            = var.writer_service_name
  image                   = local.writer_image
  ecr_repository_arns     = local.writer_ecr_repository_arns
  ecr_images_use_kms_key  = var.writer_image == null
  architecture            = var.writer_architecture
  cpu                     = var.writer_cpu
  memory                  = var.writer_memory
  desired_count           = var.writer_desired_count
  subnet_ids              = var.writer_subnet_ids
  security_group_ids      = var.writer_security_group_ids
  assign_public_ip        = var.writer_assign_public_ip
  autoscaling             = var.writer_autoscaling
  kms_key_arn             = module.secrets.kms_key_arn
  kafka_secret_arn        = module.secrets.kafka_secret_arn
  mongodb_secret_arn      = module.secrets.mongodb_secret_arn
  log_retention_days      = var.log_retention_days
  kafka_bootstrap_servers = var.kafka_bootstrap_servers
  kafka_topic             = var.kafka_topic
  kafka_dlq_topic         = var.kafka_dlq_topic
  kafka_group_id          = var.kafka_group_id
  kafka_security_protocol = var.kafka_security_protocol
  kafka_sasl_mechanism    = var.kafka_sasl_mechanism
  mongodb_database        = var.mongodb_database
  mongodb_collection      = var.mongodb_collection
  retention_days          = var.retention_days
  metrics_namespace       = var.metrics_namespace
}

module "monitoring" {
  source                      = "./modules/monitoring"
  name_prefix                 = var.name_prefix
  kms_key_arn                 = module.secrets.kms_key_arn
  alarm_emails                = var.alarm_emails
  enable_query_definitions    = var.enable_query_definitions
  metrics_namespace           = var.metrics_namespace
  iot_rule_name               = local.iot_rule_name
  iot_topic_filter            = var.iot_topic_filter
  queue_name                  = module.queues.queue_name
  dlq_name                    = module.queues.dlq_name
  max_receive_count           = var.max_receive_count
  queue_age_threshold_seconds = var.queue_age_alarm_threshold_seconds
  function_name               = module.lambda.function_name
  lambda_timeout_seconds      = var.lambda_timeout_seconds
  lambda_log_group_name       = module.lambda.log_group_name
  kafka_topic                 = var.kafka_topic
  enable_writer               = var.enable_writer
  writer_service_name         = var.writer_service_name
  writer_cluster_name         = "${var.name_prefix}-writer"
  writer_log_group_name       = var.enable_writer ? module.writer[0].log_group_name : ""
  consumer_lag_threshold      = var.consumer_lag_alarm_threshold
  write_retries_threshold     = var.write_retries_alarm_threshold
}
