variable "function_name" {
  description = "Function name; also the FunctionName metric dimension."
  type        = string
}

variable "zip_path" {
  description = "cargo-lambda zip (absolute, or relative to the working directory)."
  type        = string
}

variable "architecture" {
  description = "arm64 or x86_64."
  type        = string
}

variable "memory_mb" {
  description = "Memory in MB."
  type        = number
}

variable "timeout_seconds" {
  description = "Function timeout; KAFKA_MESSAGE_TIMEOUT_MS is 5 s less."
  type        = number
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions."
  type        = number
}

variable "deadline_margin_ms" {
  description = "BRIDGE_DEADLINE_MARGIN_MS."
  type        = number
}

variable "tracing_mode" {
  description = "X-Ray tracing mode: Active or PassThrough."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets to attach the function to; empty for none."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups when attached to subnets."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Log group retention."
  type        = number
}

variable "kms_key_arn" {
  description = "Key for the log group, the environment and the secret."
  type        = string
}

variable "queue_arn" {
  description = "The queue the function consumes."
  type        = string
}

variable "kafka_secret_arn" {
  description = "Secret holding {\"username\",\"password\"}."
  type        = string
}

variable "kafka_bootstrap_servers" {
  description = "KAFKA_BOOTSTRAP_SERVERS."
  type        = string
}

variable "kafka_topic" {
  description = "KAFKA_TOPIC."
  type        = string
}

variable "kafka_dlq_topic" {
  description = "KAFKA_DLQ_TOPIC."
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

variable "metrics_namespace" {
  description = "METRICS_NAMESPACE."
  type        = string
}

variable "batch_size" {
  description = "Event-source mapping batch size."
  type        = number
}

variable "maximum_batching_window_seconds" {
  description = "Event-source mapping batching window."
  type        = number
}

variable "maximum_concurrency" {
  description = "Event-source mapping maximum concurrency (>= 2)."
  type        = number
}

variable "event_source_mapping_enabled" {
  description = "Whether the SQS event-source mapping polls. False for emulators whose own mapping would delete whole batches (the local stack runs bridgectl esm instead)."
  type        = bool
  default     = true
}
