# The lifecycle rules `seatable-backup retention apply` writes, in the order it writes them
# (src/retention.rs, `wanted_rules`). tests/terraform_examples.rs checks that this module and the
# tool agree; change both together.

locals {
  prefix = trim(var.prefix, "/")
  # Key prefix of everything the tool writes ("" = the whole bucket).
  base = local.prefix == "" ? "" : "${local.prefix}/"
  # Every rule of this configuration has an ID that starts so; other rules are left alone.
  id_prefix = "seatable-backup:${local.prefix}:"

  # ABORT_AFTER_DAYS and NONCURRENT_DAYS in src/retention.rs.
  abort_after_days = 1
  noncurrent_days  = 1

  # One Expiration rule per class: the class comes first in every key, so one rule expires the
  # sets of every host.
  class_rules = [
    for class in ["daily", "weekly", "monthly"] : {
      id                           = "${local.id_prefix}${class}"
      enabled                      = true
      prefix                       = "${local.base}${class}/"
      expiration_days              = var.keep_days[class]
      expired_object_delete_marker = false
      abort_incomplete_days        = null
      noncurrent_days              = null
      other                        = []
    }
  ]

  abort_rule = {
    id                           = "${local.id_prefix}abort-incomplete-uploads"
    enabled                      = true
    prefix                       = local.base
    expiration_days              = null
    expired_object_delete_marker = false
    abort_incomplete_days        = local.abort_after_days
    noncurrent_days              = null
    other                        = []
  }

  noncurrent_rule = {
    id                           = "${local.id_prefix}noncurrent-versions"
    enabled                      = true
    prefix                       = local.base
    expiration_days              = null
    expired_object_delete_marker = true
    abort_incomplete_days        = null
    noncurrent_days              = local.noncurrent_days
    other                        = []
  }

  rules = concat(local.class_rules, [local.abort_rule], var.versioned ? [local.noncurrent_rule] : [])

  # The same rules in the form of the MinIO provider's `minio_ilm_policy` (`expiration = "7d"`,
  # `filter = prefix`). A rule whose only action is AbortIncompleteMultipartUpload is left out:
  # the resource cannot write it (MinIO aborts stale uploads by itself).
  minio_rules = [
    for r in local.rules : {
      id     = r.id
      filter = r.prefix
      # None of the tool's rules has both a day count and the delete-marker flag.
      expiration                 = r.expiration_days != null ? "${r.expiration_days}d" : (r.expired_object_delete_marker ? "DeleteMarker" : null)
      noncurrent_expiration_days = r.noncurrent_days != null ? "${r.noncurrent_days}d" : null
    }
    if r.enabled && (r.expiration_days != null || r.expired_object_delete_marker || r.noncurrent_days != null)
  ]
}
