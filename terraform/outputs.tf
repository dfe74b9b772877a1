output "queue_url" {
  description = "URL of the main telemetry queue."
  value       = module.queues.queue_url
}

output "queue_arn" {
  description = "ARN of the main telemetry queue."
  value       = module.queues.queue_arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = module.queues.dlq_url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = module.queues.dlq_arn
}

output "function_name" {
  description = "Name of the sqs-to-kafka function."
  value       = module.lambda.function_name
}

output "function_arn" {
  description = "ARN of the sqs-to-kafka function."
  value       = module.lambda.function_arn
}

output "event_source_mapping_uuid" {
  description = "UUID of the SQS -> Lambda event-source mapping."
  value       = module.lambda.event_source_mapping_uuid
}

output "lambda_log_group_name" {
  description = "Log group of the function."
  value       = module.lambda.log_group_name
}

output "kafka_secret_arn" {
  description = "Secret to put the Confluent API key and secret into."
  value       = module.secrets.kafka_secret_arn
}

output "mongodb_secret_arn" {
  description = "Secret to put the MongoDB URI into (null without the writer)."
  value       = module.secrets.mongodb_secret_arn
}

output "kms_key_arn" {
  description = "Customer key of the secrets, logs and alarm topic."
  value       = module.secrets.kms_key_arn

  precondition {
    condition = sort(local.log_group_names) == sort(concat(
      [module.lambda.log_group_name],
      module.writer[*].log_group_name,
      module.iot_rule[*].error_log_group_name,
    ))
    error_message = "local.log_group_names (the log groups the key policy lets CloudWatch Logs use the key for) differs from the log groups the modules create: update it in main.tf."
  }
}

output "iot_rule_name" {
  description = "IoT topic rule name (null when enable_iot_rule is false)."
  value       = var.enable_iot_rule ? module.iot_rule[0].rule_name : null
}

output "writer_cluster_name" {
  description = "ECS cluster of the writer (null when enable_writer is false)."
  value       = var.enable_writer ? module.writer[0].cluster_name : null
}

output "writer_service_name" {
  description = "ECS service of the writer (null when enable_writer is false)."
  value       = var.enable_writer ? module.writer[0].service_name : null
}

output "writer_repository_url" {
  description = "ECR repository of the writer image, to push to (null when enable_writer is false)."
  value       = one(module.writer_registry[*].repository_url)
}

output "writer_repository_arn" {
  description = "ARN of the writer image repository (null when enable_writer is false)."
  value       = one(module.writer_registry[*].repository_arn)
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = module.monitoring.alarm_topic_arn
}

output "alarm_names" {
  description = "Names of every CloudWatch alarm."
  value       = module.monitoring.alarm_names
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the whole pipeline."
  value       = module.monitoring.dashboard_name
}

output "query_definition_names" {
  description = "Saved Logs Insights queries."
  value       = module.monitoring.query_definition_names
}
