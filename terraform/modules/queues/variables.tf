variable "name" {
  description = "Main queue name; the DLQ is \"<name>-dlq\"."
  type        = string
}

variable "visibility_timeout_seconds" {
  description = "Main queue visibility timeout (at least 6x the Lambda timeout; the root checks this)."
  type        = number
}

variable "message_retention_seconds" {
  description = "How long the main queue keeps a message."
  type        = number
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ."
  type        = number
}
