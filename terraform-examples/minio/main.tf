# A MinIO bucket for seatable-backup, with the tool's lifecycle rules as a MinIO ILM policy
# (from ../lifecycle-rules, the same rules `seatable-backup retention apply` writes).

locals {
  object_lock = var.object_lock_days > 0
  versioned   = var.versioning || local.object_lock
  endpoint    = coalesce(var.endpoint, "${var.minio_ssl ? "https" : "http"}://${var.minio_server}")
}

module "lifecycle_rules" {
  source = "../lifecycle-rules"

  prefix    = var.prefix
  keep_days = var.keep_days
  versioned = local.versioned
}

resource "minio_s3_bucket" "backup" {
  bucket = var.bucket
  acl    = "private"
  # Only possible at creation. No default retention: the tool locks each object of a new set.
  object_locking = local.object_lock
  force_destroy  = var.force_destroy
}

resource "minio_s3_bucket_versioning" "backup" {
  count = local.versioned ? 1 : 0

  bucket = minio_s3_bucket.backup.bucket

  versioning_configuration {
    status = "Enabled"
  }
}

# One rule per class, plus the noncurrent-versions rule on a versioned bucket. The module's
# `minio_rules` leaves out the abort-incomplete-uploads rule, which minio_ilm_policy cannot
# write: MinIO removes stale multipart uploads by itself (and `prune` aborts those left open
# for over a day).
resource "minio_ilm_policy" "backup" {
  bucket     = minio_s3_bucket.backup.bucket
  depends_on = [minio_s3_bucket_versioning.backup]

  dynamic "rule" {
    for_each = module.lifecycle_rules.minio_rules

    content {
      id         = rule.value.id
      filter     = rule.value.filter != "" ? rule.value.filter : null
      expiration = rule.value.expiration

      dynamic "noncurrent_expiration" {
        for_each = rule.value.noncurrent_expiration_days != null ? [rule.value.noncurrent_expiration_days] : []

        content {
          days = noncurrent_expiration.value
        }
      }
    }
  }
}

module "config_toml" {
  source = "../config-toml"

  bucket           = minio_s3_bucket.backup.bucket
  prefix           = var.prefix
  endpoint         = local.endpoint
  region           = var.region
  path_style       = true
  keep_days        = var.keep_days
  object_lock_days = var.object_lock_days
  object_lock_mode = var.object_lock_mode
}
