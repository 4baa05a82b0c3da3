# An S3 bucket for seatable-backup: versioned, private, encrypted, optionally with Object Lock,
# with the tool's lifecycle rules (from ../lifecycle-rules, the same rules
# `seatable-backup retention apply` writes).

module "lifecycle_rules" {
  source = "../lifecycle-rules"

  prefix    = var.prefix
  keep_days = var.keep_days
  # The bucket below is versioned, so the rule set includes the noncurrent-versions rule.
  versioned = true
}

resource "aws_s3_bucket" "backup" {
  bucket = var.bucket
  # Object Lock can only be enabled when the bucket is created. No default retention is set:
  # the tool puts a retention on each object of a new set (`retention.object_lock = "auto"`).
  object_lock_enabled = var.object_lock_days > 0
  force_destroy       = var.force_destroy
}

resource "aws_s3_bucket_versioning" "backup" {
  bucket = aws_s3_bucket.backup.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "backup" {
  bucket = aws_s3_bucket.backup.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id
  # Noncurrent-version rules need versioning in place first.
  depends_on = [aws_s3_bucket_versioning.backup]

  dynamic "rule" {
    for_each = module.lifecycle_rules.rules

    content {
      id     = rule.value.id
      status = rule.value.enabled ? "Enabled" : "Disabled"

      filter {
        prefix = rule.value.prefix
      }

      dynamic "expiration" {
        for_each = rule.value.expiration_days != null || rule.value.expired_object_delete_marker ? [rule.value] : []

        content {
          days = expiration.value.expiration_days
          # Conflicts with days: set only when true.
          expired_object_delete_marker = expiration.value.expired_object_delete_marker ? true : null
        }
      }

      dynamic "abort_incomplete_multipart_upload" {
        for_each = rule.value.abort_incomplete_days != null ? [rule.value.abort_incomplete_days] : []

        content {
          days_after_initiation = abort_incomplete_multipart_upload.value
        }
      }

      dynamic "noncurrent_version_expiration" {
        for_each = rule.value.noncurrent_days != null ? [rule.value.noncurrent_days] : []

        content {
          noncurrent_days = noncurrent_version_expiration.value
        }
      }
    }
  }
}

module "config_toml" {
  source = "../config-toml"

  bucket           = aws_s3_bucket.backup.bucket
  prefix           = var.prefix
  region           = var.region
  keep_days        = var.keep_days
  object_lock_days = var.object_lock_days
  object_lock_mode = var.object_lock_mode
}
