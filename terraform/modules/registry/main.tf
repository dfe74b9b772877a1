# The writer's image repository. It is created on its own first (terraform apply
# -target=module.writer_registry) so the image can be pushed before the ECS service that
# pulls it exists: see "Writer image" in the root README.

# Tags are <crate version>-<git short sha>, each pushed once (IMMUTABLE), as one manifest
# list over linux/amd64 and linux/arm64.
resource "aws_ecr_repository" "this" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  # Creating the repository makes ECR take a grant on the key with the caller's
  # permissions (kms:CreateGrant, kms:DescribeKey; kms:RetireGrant on delete): the key
  # policy's account statement lets IAM give those to whoever runs Terraform.
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

# Rule 1 is meant for leftovers (an interrupted push, the platform images of an expired
# manifest list). The platform images of a live manifest list are untagged too; ECR refuses
# to delete an image a manifest list references (ImageReferencedByManifestList), but check
# with a lifecycle policy preview right after the first push (README: "Writer image").
resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged images after ${var.untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.tagged_images_kept} tagged images"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.tagged_images_kept
        }
        action = { type = "expire" }
      },
    ]
  })
}
