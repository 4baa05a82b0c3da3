# Three IAM users, one per role, each with a least-privilege policy on this bucket and prefix
# (../access-policies): backup (writes sets, never deletes), restore (also `list` and
# `verify`: read only), admin (`retention show|apply` and `prune`).

module "access_policies" {
  source = "../access-policies"

  bucket_arn  = aws_s3_bucket.backup.arn
  prefix      = var.prefix
  object_lock = var.object_lock_days > 0
}

locals {
  roles = {
    backup  = "seatable-backup backup: writes new sets, reads earlier manifests; no delete"
    restore = "seatable-backup restore, list, verify: read only"
    admin   = "seatable-backup retention show/apply and prune"
  }
}

resource "aws_iam_user" "role" {
  for_each = local.roles

  name = "${var.iam_name_prefix}-${each.key}"
}

resource "aws_iam_policy" "role" {
  for_each = local.roles

  name        = "${var.iam_name_prefix}-${each.key}"
  description = "${each.value} (bucket ${var.bucket})"
  policy      = module.access_policies.policies[each.key]
}

resource "aws_iam_user_policy_attachment" "role" {
  for_each = local.roles

  user       = aws_iam_user.role[each.key].name
  policy_arn = aws_iam_policy.role[each.key].arn
}

resource "aws_iam_access_key" "role" {
  for_each = local.roles

  user = aws_iam_user.role[each.key].name
}
