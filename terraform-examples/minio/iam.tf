# Three MinIO users, one per role, each with a least-privilege policy on this bucket and prefix
# (../access-policies, the same documents as on AWS): backup (writes sets, never deletes),
# restore (also `list` and `verify`: read only), admin (`retention show|apply` and `prune`).
# A MinIO user's name is its access key; the provider generates the secret.

module "access_policies" {
  source = "../access-policies"

  bucket_arn  = "arn:aws:s3:::${minio_s3_bucket.backup.bucket}"
  prefix      = var.prefix
  object_lock = local.object_lock
}

locals {
  roles = toset(["backup", "restore", "admin"])
}

resource "minio_iam_user" "role" {
  for_each = local.roles

  name = "${var.iam_name_prefix}-${each.key}"
}

resource "minio_iam_policy" "role" {
  for_each = local.roles

  name   = "${var.iam_name_prefix}-${each.key}"
  policy = module.access_policies.policies[each.key]
}

resource "minio_iam_user_policy_attachment" "role" {
  for_each = local.roles

  user_name   = minio_iam_user.role[each.key].id
  policy_name = minio_iam_policy.role[each.key].id
}
