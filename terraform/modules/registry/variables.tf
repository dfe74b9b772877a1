variable "name" {
  description = "Repository name, e.g. iot-bridge/kafka-to-mongo."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer key the images are encrypted with."
  type        = string
}

variable "untagged_expiry_days" {
  description = "Days after which an untagged image is expired."
  type        = number
}

variable "tagged_images_kept" {
  description = "Newest tagged images kept; older ones are expired (keep enough to roll back to)."
  type        = number
}
