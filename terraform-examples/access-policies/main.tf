# Least-privilege IAM policies for the three roles the tool's commands need. The same JSON works
# on AWS and on MinIO. tests/terraform_examples.rs checks the permission matrix.
#
# Bucket-level actions (listing, versioning, Object Lock and lifecycle configuration) can only be
# granted on the whole bucket; object actions are limited to the key prefix. ListBucket is not
# conditioned on s3:prefix: the tool's preflight lists the bucket without a prefix.

locals {
  prefix      = trim(var.prefix, "/")
  objects_arn = local.prefix == "" ? "${var.bucket_arn}/*" : "${var.bucket_arn}/${local.prefix}/*"

  statements = {
    # `seatable-backup backup`: writes new sets. It reads earlier manifests and mirror indexes,
    # and never deletes: old sets expire by the lifecycle rules, and a failed run's leftovers
    # have no manifest and expire the same way.
    backup = [
      {
        Sid    = "Bucket"
        Effect = "Allow"
        Action = [
          "s3:ListBucket",
          "s3:ListBucketMultipartUploads",
          "s3:GetBucketVersioning",
          "s3:GetBucketObjectLockConfiguration",
        ]
        Resource = var.bucket_arn
      },
      {
        Sid    = "Sets"
        Effect = "Allow"
        Action = concat(
          ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
          var.object_lock ? ["s3:PutObjectRetention"] : [],
        )
        Resource = local.objects_arn
      },
    ]

    # `restore`, `list` and `verify`: read only.
    restore = [
      {
        Sid      = "Bucket"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = var.bucket_arn
      },
      {
        Sid      = "Sets"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = local.objects_arn
      },
    ]

    # `retention show`, `retention apply` and `prune`.
    admin = [
      {
        Sid    = "Bucket"
        Effect = "Allow"
        Action = [
          "s3:ListBucket",
          "s3:ListBucketMultipartUploads",
          "s3:GetBucketVersioning",
          "s3:GetBucketObjectLockConfiguration",
          "s3:GetLifecycleConfiguration",
          "s3:PutLifecycleConfiguration",
        ]
        Resource = var.bucket_arn
      },
      {
        Sid      = "Sets"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        Resource = local.objects_arn
      },
    ]
  }

  policies = {
    for role, statements in local.statements : role => jsonencode({
      Version   = "2012-10-17"
      Statement = statements
    })
  }
}
