variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "kms_key_arn" {
  description = "Key of the alarm topic."
  type        = string
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each must confirm)."
  type        = list(string)
}

variable "metrics_namespace" {
  description = "EMF namespace of the bridge's metrics."
  type        = string
}

variable "iot_rule_name" {
  description = "Topic rule name (shown even when the rule is managed elsewhere)."
  type        = string
}

variable "iot_topic_filter" {
  description = "MQTT topic filter, for the dashboard header."
  type        = string
}

variable "queue_name" {
  description = "Main queue name."
  type        = string
}

variable "dlq_name" {
  description = "DLQ name."
  type        = string
}

variable "max_receive_count" {
  description = "Redrive max receive count, for the alarm text."
  type        = number
}

variable "queue_age_threshold_seconds" {
  description = "Alarm when the oldest message is older than this."
  type        = number
}

variable "function_name" {
  description = "Lambda function name (the FunctionName dimension)."
  type        = string
}

variable "lambda_timeout_seconds" {
  description = "Function timeout, for the duration alarm."
  type        = number
}

variable "lambda_log_group_name" {
  description = "Lambda log group."
  type        = string
}

variable "kafka_topic" {
  description = "Telemetry topic (the Topic dimension)."
  type        = string
}

variable "enable_writer" {
  description = "Whether the writer's alarms and query exist."
  type        = bool
}

variable "writer_service_name" {
  description = "Writer service name (the Service dimension)."
  type        = string
}

variable "writer_cluster_name" {
  description = "Writer ECS cluster name."
  type        = string
}

variable "writer_log_group_name" {
  description = "Writer log group, or empty."
  type        = string
}

variable "consumer_lag_threshold" {
  description = "Alarm when ConsumerLag exceeds this."
  type        = number
}

variable "write_retries_threshold" {
  description = "Alarm when WriteRetries in 5 minutes exceed this."
  type        = number
}

variable "enable_query_definitions" {
  description = "Create the saved Logs Insights queries."
  type        = bool
}
