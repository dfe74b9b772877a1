# ---- Deployment ----
variable "aws_region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "aws_endpoints" {
  description = "Service endpoint overrides, e.g. { sqs = \"http://127.0.0.1:5000\" } for an emulator. Empty for AWS."
  type        = map(string)
  default     = {}
  validation {
    condition = alltrue([for k in keys(var.aws_endpoints) : contains([
      "applicationautoscaling", "cloudwatch", "ec2", "ecr", "ecs", "iam", "iot", "kms",
      "lambda", "logs", "secretsmanager", "sns", "sqs", "sts",
    ], k)])
    error_message = "Keys must be among: applicationautoscaling, cloudwatch, ec2, ecr, ecs, iam, iot, kms, lambda, logs, secretsmanager, sns, sqs, sts."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "iot-bridge"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name_prefix))
    error_message = "2-24 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Retention of every log group."
  type        = number
  default     = 30
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "Must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 deletes at once: emulators and tests)."
  type        = number
  default     = 30
  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "0, or 7 to 30."
  }
}

variable "kms_deletion_window_days" {
  description = "Days before a deleted KMS key is gone."
  type        = number
  default     = 30
  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "7 to 30."
  }
}

# ---- Kafka (Confluent) ----
variable "kafka_bootstrap_servers" {
  description = "Comma-separated host:port list of the Kafka cluster."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9.-]+:[0-9]+(,[A-Za-z0-9.-]+:[0-9]+)*$", var.kafka_bootstrap_servers))
    error_message = "Must be host:port[,host:port...]."
  }
}

variable "kafka_topic" {
  description = "Telemetry topic (also the Topic metric dimension)."
  type        = string
  default     = "iot.telemetry"
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.kafka_topic))
    error_message = "Kafka topic names use letters, digits, '.', '_' and '-'."
  }
}

variable "kafka_dlq_topic" {
  description = "Dead-letter topic for records that can never be stored."
  type        = string
  default     = "iot.telemetry.dlq"
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.kafka_dlq_topic))
    error_message = "Kafka topic names use letters, digits, '.', '_' and '-'."
  }
}

variable "kafka_security_protocol" {
  description = "KAFKA_SECURITY_PROTOCOL. Unencrypted protocols are for a local broker only and not offered here."
  type        = string
  default     = "SASL_SSL"
  validation {
    condition     = contains(["SASL_SSL", "SSL"], var.kafka_security_protocol)
    error_message = "SASL_SSL or SSL."
  }
}

variable "kafka_sasl_mechanism" {
  description = "KAFKA_SASL_MECHANISM (Confluent Cloud API keys use PLAIN)."
  type        = string
  default     = "PLAIN"
  validation {
    condition     = contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], var.kafka_sasl_mechanism)
    error_message = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the EMF metrics (METRICS_NAMESPACE)."
  type        = string
  default     = "IotBridge"
  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "A custom namespace: no spaces, not starting with AWS/."
  }
}

variable "esm_enabled" {
  description = "Whether the SQS event-source mapping polls. Set false against emulators whose own mapping deletes whole batches; locally `bridgectl esm` plays the mapping."
  type        = bool
  default     = true
}

# ---- IoT rule ----
variable "enable_iot_rule" {
  description = "Create the IoT topic rule (false for emulators that lack it, or when devices publish to SQS another way)."
  type        = bool
  default     = true
}

variable "iot_topic_filter" {
  description = "MQTT topic filter the rule selects from."
  type        = string
  default     = "devices/+/telemetry"
  validation {
    condition     = length(var.iot_topic_filter) > 0 && !strcontains(var.iot_topic_filter, "'")
    error_message = "A non-empty MQTT topic filter without quotes."
  }
}

variable "iot_use_base64" {
  description = "Base64-encode payloads into SQS (the Lambda accepts both)."
  type        = bool
  default     = false
}

# ---- Queues ----
variable "queue_visibility_timeout_seconds" {
  description = "Main queue visibility timeout: at least 6x the Lambda timeout plus the batching window (AWS guidance)."
  type        = number
  default     = 190
  validation {
    condition     = var.queue_visibility_timeout_seconds >= 6 * var.lambda_timeout_seconds + var.esm_maximum_batching_window_seconds && var.queue_visibility_timeout_seconds <= 43200
    error_message = "Must be >= 6 x lambda_timeout_seconds + esm_maximum_batching_window_seconds, and <= 43200."
  }
}

variable "queue_message_retention_seconds" {
  description = "How long the main queue keeps a message."
  type        = number
  default     = 345600
  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600
    error_message = "60 to 1209600 seconds."
  }
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ."
  type        = number
  default     = 5
  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "1 to 1000."
  }
}

# ---- Lambda sqs-to-kafka ----
variable "function_name" {
  description = "Lambda function name (the FunctionName metric dimension)."
  type        = string
  default     = "sqs-to-kafka"
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "1-64 letters, digits, '-' or '_'."
  }
}

variable "lambda_zip_path" {
  description = "cargo-lambda zip. A relative path is taken from the directory Terraform runs in (path.root), so the default fits `terraform -chdir=terraform`."
  type        = string
  default     = "../target/lambda/sqs-to-kafka/bootstrap.zip"
}

variable "lambda_architecture" {
  description = "Instruction set of the zip (cargo lambda build --arm64 or --x86-64)."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "arm64 or x86_64."
  }
}

variable "lambda_memory_mb" {
  description = "Lambda memory (MB); CPU scales with it."
  type        = number
  default     = 256
  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240
    error_message = "128 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Lambda timeout. KAFKA_MESSAGE_TIMEOUT_MS is derived as (timeout - 5) x 1000."
  type        = number
  default     = 30
  validation {
    condition     = var.lambda_timeout_seconds >= 10 && var.lambda_timeout_seconds <= 900
    error_message = "10 to 900 seconds."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrent executions: caps the load on Kafka and keeps the function runnable."
  type        = number
  default     = 10
  validation {
    condition     = var.lambda_reserved_concurrency >= var.esm_maximum_concurrency
    error_message = "Must be >= esm_maximum_concurrency, or the mapping's pollers are throttled."
  }
}

variable "lambda_deadline_margin_ms" {
  description = "BRIDGE_DEADLINE_MARGIN_MS: stop producing this long before the invocation deadline."
  type        = number
  default     = 500
  validation {
    condition     = var.lambda_deadline_margin_ms >= 100 && var.lambda_deadline_margin_ms < 5000
    error_message = "100 to 4999 ms (below the 5 s between the Kafka message timeout and the function timeout)."
  }
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing: Active or PassThrough."
  type        = string
  default     = "Active"
  validation {
    condition     = contains(["Active", "PassThrough"], var.lambda_tracing_mode)
    error_message = "Active or PassThrough."
  }
}

variable "lambda_subnet_ids" {
  description = "Subnets to attach the function to (e.g. for PrivateLink to Confluent); empty for none."
  type        = list(string)
  default     = []
}

variable "lambda_security_group_ids" {
  description = "Security groups of the function when it is attached to subnets."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.lambda_subnet_ids) == 0 || length(var.lambda_security_group_ids) > 0
    error_message = "Set security groups when lambda_subnet_ids is set."
  }
}

variable "esm_batch_size" {
  description = "Messages per invocation."
  type        = number
  default     = 100
  validation {
    condition     = var.esm_batch_size >= 1 && var.esm_batch_size <= 10000 && (var.esm_batch_size <= 10 || var.esm_maximum_batching_window_seconds >= 1)
    error_message = "1 to 10000; above 10 SQS requires esm_maximum_batching_window_seconds >= 1."
  }
}

variable "esm_maximum_batching_window_seconds" {
  description = "How long the mapping gathers a batch."
  type        = number
  default     = 1
  validation {
    condition     = var.esm_maximum_batching_window_seconds >= 0 && var.esm_maximum_batching_window_seconds <= 300
    error_message = "0 to 300."
  }
}

variable "esm_maximum_concurrency" {
  description = "Most concurrent invocations the SQS mapping starts."
  type        = number
  default     = 5
  validation {
    condition     = var.esm_maximum_concurrency >= 2 && var.esm_maximum_concurrency <= 1000
    error_message = "2 to 1000 (the SQS mapping minimum is 2)."
  }
}

# ---- Writer kafka-to-mongo (ECS Fargate) ----
variable "enable_writer" {
  description = "Create the writer's image repository, ECS service, secret and alarms."
  type        = bool
  default     = true
}

variable "writer_service_name" {
  description = "ECS service name and SERVICE_NAME (the Service metric dimension)."
  type        = string
  default     = "kafka-to-mongo"
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.writer_service_name))
    error_message = "1-64 letters, digits, '-' or '_'."
  }
}

variable "writer_image_tag" {
  description = "Tag of the writer image in the writer repository (writer_repository_url), <crate version>-<git short sha> as `make image-tag` prints. Needed when enable_writer is true and writer_image is null, except to create the repository alone (-target=module.writer_registry)."
  type        = string
  default     = null
  validation {
    condition     = var.writer_image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.writer_image_tag))
    error_message = "An image tag: 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "writer_image" {
  description = "Full image URI of kafka-to-mongo instead of <writer_repository_url>:<writer_image_tag>, e.g. another registry's. Null (default) uses the writer repository."
  type        = string
  default     = null
}

variable "writer_ecr_repository_arn" {
  description = "With writer_image in another ECR repository: its ARN, to grant the execution role pulls on. Ignored when writer_image is null."
  type        = string
  default     = ""
}

variable "writer_repository_untagged_expiry_days" {
  description = "The writer repository's lifecycle policy expires untagged images this many days after their push."
  type        = number
  default     = 7
  validation {
    condition     = var.writer_repository_untagged_expiry_days >= 1
    error_message = "At least 1."
  }
}

variable "writer_repository_tagged_images_kept" {
  description = "The writer repository's lifecycle policy keeps this many newest tagged images (the rollback window) and expires older ones."
  type        = number
  default     = 30
  validation {
    condition     = var.writer_repository_tagged_images_kept >= 1 && var.writer_repository_tagged_images_kept <= 10000
    error_message = "1 to 10000."
  }
}

variable "writer_architecture" {
  description = "CPU architecture of the image."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.writer_architecture)
    error_message = "arm64 or x86_64."
  }
}

variable "writer_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 512
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.writer_cpu)
    error_message = "256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "writer_memory" {
  description = "Fargate task memory (MiB); must be a size Fargate allows for writer_cpu."
  type        = number
  default     = 1024
  validation {
    condition     = var.writer_memory >= 512 && var.writer_memory <= 122880
    error_message = "512 to 122880 MiB."
  }
}

variable "writer_desired_count" {
  description = "Number of writer tasks (more than the topic's partitions is wasted)."
  type        = number
  default     = 2
  validation {
    condition     = var.writer_desired_count >= 0
    error_message = "Must be >= 0."
  }
}

variable "writer_subnet_ids" {
  description = "Subnets of the writer tasks (private, with a route to Confluent and MongoDB)."
  type        = list(string)
  default     = []
  validation {
    condition     = !var.enable_writer || length(var.writer_subnet_ids) > 0
    error_message = "Set writer_subnet_ids when enable_writer is true."
  }
}

variable "writer_security_group_ids" {
  description = "Security groups of the writer tasks (egress to Kafka and MongoDB)."
  type        = list(string)
  default     = []
  validation {
    condition     = !var.enable_writer || length(var.writer_security_group_ids) > 0
    error_message = "Set writer_security_group_ids when enable_writer is true."
  }
}

variable "writer_assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "writer_autoscaling" {
  description = "Target tracking on the ConsumerLag metric, or null (default) for a fixed writer_desired_count."
  type = object({
    min_count           = number
    max_count           = number
    target_consumer_lag = number
  })
  default = null
  validation {
    condition     = var.writer_autoscaling == null ? true : (var.writer_autoscaling.min_count >= 1 && var.writer_autoscaling.max_count >= var.writer_autoscaling.min_count && var.writer_autoscaling.target_consumer_lag > 0)
    error_message = "Needs 1 <= min_count <= max_count and target_consumer_lag > 0."
  }
}

variable "kafka_group_id" {
  description = "Consumer group of the writer."
  type        = string
  default     = "iot-bridge-writer"
}

variable "mongodb_database" {
  description = "MongoDB database."
  type        = string
  default     = "iot"
}

variable "mongodb_collection" {
  description = "MongoDB collection of telemetry."
  type        = string
  default     = "telemetry"
}

variable "retention_days" {
  description = "RETENTION_DAYS: TTL of telemetry documents; null keeps them forever."
  type        = number
  default     = null
  validation {
    condition     = var.retention_days == null ? true : var.retention_days >= 1
    error_message = "null or >= 1."
  }
}

# ---- Monitoring ----
variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each confirms by mail)."
  type        = list(string)
  default     = []
}

variable "enable_query_definitions" {
  description = "Create the saved Logs Insights queries (false for emulators without PutQueryDefinition)."
  type        = bool
  default     = true
}

variable "queue_age_alarm_threshold_seconds" {
  description = "Alarm when the main queue's oldest message is older than this for 5 minutes."
  type        = number
  default     = 300
  validation {
    condition     = var.queue_age_alarm_threshold_seconds >= 60
    error_message = "At least 60."
  }
}

variable "consumer_lag_alarm_threshold" {
  description = "Alarm when the writer's ConsumerLag exceeds this for 10 minutes."
  type        = number
  default     = 10000
  validation {
    condition     = var.consumer_lag_alarm_threshold > 0
    error_message = "Must be > 0."
  }
}

variable "write_retries_alarm_threshold" {
  description = "Alarm when the writer retries MongoDB writes more than this in 5 minutes."
  type        = number
  default     = 10
  validation {
    condition     = var.write_retries_alarm_threshold >= 0
    error_message = "Must be >= 0."
  }
}
