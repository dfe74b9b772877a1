variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "rule_name" {
  description = "Topic rule name: letters, digits and underscores only."
  type        = string
}

variable "topic_filter" {
  description = "MQTT topic filter of the rule's FROM clause."
  type        = string
}

variable "use_base64" {
  description = "Base64-encode the payload into SQS."
  type        = bool
}

variable "queue_url" {
  description = "Target queue URL."
  type        = string
}

variable "queue_arn" {
  description = "Target queue ARN (the only resource the role may send to)."
  type        = string
}

variable "kms_key_arn" {
  description = "Key for the error log group."
  type        = string
}

variable "log_retention_days" {
  description = "Error log retention."
  type        = number
}
