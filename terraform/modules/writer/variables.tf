variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "service_name" {
  description = "ECS service name; also SERVICE_NAME, the Service metric dimension."
  type        = string
}

variable "image" {
  description = "Container image of kafka-to-mongo (its /kafka-to-mongo has the healthcheck subcommand); null fails the plan with how to give one."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image is pulled from, to grant pulls on; empty if not ECR."
  type        = list(string)
}

variable "ecr_images_use_kms_key" {
  description = "Whether the images in ecr_repository_arns are encrypted with kms_key_arn (lets the execution role decrypt with it through ECR)."
  type        = bool
}

variable "architecture" {
  description = "arm64 or x86_64."
  type        = string
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
}

variable "memory" {
  description = "Task memory (MiB)."
  type        = number
}

variable "desired_count" {
  description = "Number of tasks."
  type        = number
}

variable "subnet_ids" {
  description = "Task subnets."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Task security groups."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only in public subnets without NAT)."
  type        = bool
}

variable "autoscaling" {
  description = "Target tracking on ConsumerLag, or null for a fixed count."
  type = object({
    min_count           = number
    max_count           = number
    target_consumer_lag = number
  })
}

variable "kms_key_arn" {
  description = "Key of the secrets and the log group."
  type        = string
}

variable "kafka_secret_arn" {
  description = "Secret holding {\"username\",\"password\"}."
  type        = string
}

variable "mongodb_secret_arn" {
  description = "Secret holding the MongoDB URI."
  type        = string
}

variable "log_retention_days" {
  description = "Log group retention."
  type        = number
}

variable "kafka_bootstrap_servers" {
  description = "KAFKA_BOOTSTRAP_SERVERS."
  type        = string
}

variable "kafka_topic" {
  description = "KAFKA_TOPIC (also the Topic metric dimension)."
  type        = string
}

variable "kafka_dlq_topic" {
  description = "KAFKA_DLQ_TOPIC."
  type        = string
}

variable "kafka_group_id" {
  description = "KAFKA_GROUP_ID."
  type        = string
}

variable "kafka_security_protocol" {
  description = "KAFKA_SECURITY_PROTOCOL."
  type        = string
}

variable "kafka_sasl_mechanism" {
  description = "KAFKA_SASL_MECHANISM."
  type        = string
}

variable "mongodb_database" {
  description = "MONGODB_DATABASE."
  type        = string
}

variable "mongodb_collection" {
  description = "MONGODB_COLLECTION."
  type        = string
}

variable "retention_days" {
  description = "RETENTION_DAYS, or null to keep documents forever."
  type        = number
}

variable "metrics_namespace" {
  description = "METRICS_NAMESPACE."
  type        = string
}
