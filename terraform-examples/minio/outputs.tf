output "bucket" {
  description = "The backup bucket."
  value       = minio_s3_bucket.backup.bucket
}

output "endpoint" {
  description = "The endpoint URL in the tool's config."
  value       = local.endpoint
}

output "region" {
  description = "The region in the tool's config."
  value       = var.region
}

output "lifecycle_rule_ids" {
  description = "IDs of the ILM rules written."
  value       = [for r in module.lifecycle_rules.minio_rules : r.id]
}

output "config_toml" {
  description = "The [storage] and [retention] part of the tool's config file. Keys go in the environment, not in the file."
  value       = module.config_toml.text
}

output "backup_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `seatable-backup backup` (the scheduled job)."
  value       = minio_iam_user.role["backup"].id
}

output "backup_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `seatable-backup backup`."
  value       = minio_iam_user.role["backup"].secret
  sensitive   = true
}

output "restore_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `restore`, `list` and `verify`."
  value       = minio_iam_user.role["restore"].id
}

output "restore_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `restore`, `list` and `verify`."
  value       = minio_iam_user.role["restore"].secret
  sensitive   = true
}

output "admin_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `retention show`, `retention apply` and `prune`."
  value       = minio_iam_user.role["admin"].id
}

output "admin_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `retention show`, `retention apply` and `prune`."
  value       = minio_iam_user.role["admin"].secret
  sensitive   = true
}
