terraform {
  # 1.9+ for validation blocks that refer to other variables.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

locals {
  # Any endpoint override means an emulator (moto): skip the checks it cannot answer.
  emulated = length(var.aws_endpoints) > 0
}

provider "aws" {
  region      = var.aws_region
  max_retries = 2

  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  skip_region_validation      = local.emulated

  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoints] : []
    content {
      applicationautoscaling = lookup(endpoints.value, "applicationautoscaling", null)
      cloudwatch             = lookup(endpoints.value, "cloudwatch", null)
      ec2                    = lookup(endpoints.value, "ec2", null)
      ecr                    = lookup(endpoints.value, "ecr", null)
      ecs                    = lookup(endpoints.value, "ecs", null)
      iam                    = lookup(endpoints.value, "iam", null)
      iot                    = lookup(endpoints.value, "iot", null)
      kms                    = lookup(endpoints.value, "kms", null)
      lambda                 = lookup(endpoints.value, "lambda", null)
      logs                   = lookup(endpoints.value, "logs", null)
      secretsmanager         = lookup(endpoints.value, "secretsmanager", null)
      sns                    = lookup(endpoints.value, "sns", null)
      sqs                    = lookup(endpoints.value, "sqs", null)
      sts                    = lookup(endpoints.value, "sts", null)
    }
  }

  default_tags {
    tags = merge({ Project = "iot-bridge" }, var.tags)
  }
}
