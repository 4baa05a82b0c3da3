output "bucket" {
  description = "The backup bucket."
  value       = aws_s3_bucket.backup.bucket
}

output "region" {
  description = "The bucket's region."
  value       = var.region
}

output "lifecycle_rule_ids" {
  description = "IDs of the lifecycle rules written (`seatable-backup retention show` lists them as ok)."
  value       = [for r in module.lifecycle_rules.rules : r.id]
}

output "config_toml" {
  description = "The [storage] and [retention] part of the tool's config file. Keys go in the environment, not in the file."
  value       = module.config_toml.text
}

output "backup_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `seatable-backup backup` (the scheduled job)."
  value       = aws_iam_access_key.role["backup"].id
}

output "backup_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `seatable-backup backup`."
  value       = aws_iam_access_key.role["backup"].secret
  sensitive   = true
}

output "restore_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `restore`, `list` and `verify`."
  value       = aws_iam_access_key.role["restore"].id
}

output "restore_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `restore`, `list` and `verify`."
  value       = aws_iam_access_key.role["restore"].secret
  sensitive   = true
}

output "admin_access_key_id" {
  description = "AWS_ACCESS_KEY_ID for `retention show`, `retention apply` and `prune`."
  value       = aws_iam_access_key.role["admin"].id
}

output "admin_secret_access_key" {
  description = "AWS_SECRET_ACCESS_KEY for `retention show`, `retention apply` and `prune`."
  value       = aws_iam_access_key.role["admin"].secret
  sensitive   = true
}
