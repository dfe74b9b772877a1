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

variable "log_group_names" {
  description = "Names of the log groups encrypted with the key: the key policy lets CloudWatch Logs use it for these only."
  type        = list(string)
  validation {
    condition     = length(var.log_group_names) > 0 && alltrue([for n in var.log_group_names : can(regex("^[A-Za-z0-9_/.#-]{1,512}$", n))])
    error_message = "One or more log group names (letters, digits, '_', '/', '.', '#', '-'), without wildcards."
  }
}
