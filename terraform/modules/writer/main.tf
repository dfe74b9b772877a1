data "aws_region" "current" {}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

locals {
  family      = "${var.name_prefix}-${var.service_name}"
  secret_arns = [var.kafka_secret_arn, var.mongodb_secret_arn]
  environment = merge(
    {
      KAFKA_BOOTSTRAP_SERVERS = var.kafka_bootstrap_servers
      KAFKA_TOPIC             = var.kafka_topic
      KAFKA_DLQ_TOPIC         = var.kafka_dlq_topic
      KAFKA_GROUP_ID          = var.kafka_group_id
      KAFKA_SECURITY_PROTOCOL = var.kafka_security_protocol
      KAFKA_SASL_MECHANISM    = var.kafka_sasl_mechanism
      MONGODB_DATABASE        = var.mongodb_database
      MONGODB_COLLECTION      = var.mongodb_collection
      METRICS_NAMESPACE       = var.metrics_namespace
      SERVICE_NAME            = var.service_name
      HEALTH_PORT             = "8080"
    },
    var.retention_days == null ? {} : { RETENTION_DAYS = tostring(var.retention_days) },
  )
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338: retention is var.log_retention_days (default 30); EMF metrics are extracted at ingestion, so keeping a year of service logs costs without use. Raise it where compliance asks.
  name              = "/ecs/${local.family}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# Execution role: what ECS itself needs to start the task (pull, secrets, logs).
resource "aws_iam_role" "execution" {
  name               = "${local.family}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ReadItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
  # Only through Secrets Manager (CloudWatch Logs encrypts the log group under the key
  # policy, not this role).
  statement {
    sid       = "DecryptItsSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) == 0 ? [] : [1]
    content {
      sid       = "PullItsImage"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = var.ecr_repository_arns
    }
  }
  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) == 0 ? [] : [1]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"] # GetAuthorizationToken has no resource-level permissions.
    }
  }
  # With ecr_images_use_kms_key the images are encrypted with the key. AWS documents that
  # ECR decrypts layers under the grant it takes when the repository is created, so a pull
  # should not need this; it stays, usable only through ECR (kms:ViaService), so that a
  # pull cannot fail on the key.
  dynamic "statement" {
    for_each = var.ecr_images_use_kms_key ? [1] : []
    content {
      sid       = "DecryptItsImage"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ecr.${data.aws_region.current.name}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "start-writer"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# Task role: the writer calls no AWS API itself (secrets arrive as environment,
# metrics as EMF log lines), so it has no policy.
resource "aws_iam_role" "task" {
  name               = "${local.family}-task"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_ecs_cluster" "this" {
  name = "${var.name_prefix}-writer"

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.architecture == "arm64" ? "ARM64" : "X86_64"
  }

  lifecycle {
    # A precondition, not a variable validation: it is checked only when the task
    # definition is planned, so neither the registry phase (-target=module.writer_registry)
    # nor a destroy needs the tag.
    precondition {
      condition     = var.image != null
      error_message = "No writer image: pass -var writer_image_tag=<crate version>-<git short sha> (the tag `make image-push` pushed to writer_repository_url), or set writer_image. Only the registry phase (-target=module.writer_registry) runs without one."
    }
  }

  container_definitions = jsonencode([{
    name                   = var.service_name
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65534:65534" # the image's own user; nothing in the container is writable
    stopTimeout            = 30            # the writer's SHUTDOWN_GRACE_MS is 20 s
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets = [
      { name = "KAFKA_SASL_USERNAME", valueFrom = "${var.kafka_secret_arn}:username::" },
      { name = "KAFKA_SASL_PASSWORD", valueFrom = "${var.kafka_secret_arn}:password::" },
      { name = "MONGODB_URI", valueFrom = var.mongodb_secret_arn },
    ]
    # Exec form: the image has no shell and no curl. The subcommand asks
    # http://127.0.0.1:$HEALTH_PORT/healthz and exits non-zero unless it answers 2xx.
    healthCheck = {
      command     = ["CMD", "/kafka-to-mongo", "healthcheck"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "writer"
      }
    }
  }])
}

resource "aws_ecs_service" "this" {
  name             = var.service_name
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = var.assign_public_ip
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Offsets are committed only after MongoDB acknowledges, so overlapping tasks during a
  # deployment cause at most a rebalance, never loss.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
}

resource "aws_appautoscaling_target" "this" {
  count              = var.autoscaling == null ? 0 : 1
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.autoscaling.min_count
  max_capacity       = var.autoscaling.max_count
}

# Scales on the lag each task reports (its partitions' backlog), averaged across tasks.
resource "aws_appautoscaling_policy" "consumer_lag" {
  count              = var.autoscaling == null ? 0 : 1
  name               = "${local.family}-consumer-lag"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  resource_id        = aws_appautoscaling_target.this[0].resource_id
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling.target_consumer_lag
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      namespace   = var.metrics_namespace
      metric_name = "ConsumerLag"
      statistic   = "Average"
      unit        = "Count"

      dimensions {
        name  = "Service"
        value = var.service_name
      }
      dimensions {
        name  = "Topic"
        value = var.kafka_topic
      }
    }
  }
}
