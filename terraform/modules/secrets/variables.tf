variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "create_mongodb_secret" {
  description = "Create the MongoDB URI secret (only the writer reads it)."
  type        = bool
  default     = true
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0 deletes at once)."
  type        = number
  default     = 30
}

variable "deletion_window_in_days" {
  description = "Days before a deleted KMS key is gone."
  type        = number
  default     = 30
}
