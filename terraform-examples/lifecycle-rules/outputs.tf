output "rules" {
  description = "The lifecycle rules, in order. Each: id, enabled, prefix (the filter's key prefix, \"\" = whole bucket), expiration_days, expired_object_delete_marker, abort_incomplete_days, noncurrent_days (null = not set), other (always [])."
  value       = local.rules
}

output "minio_rules" {
  description = "The rules a `minio_ilm_policy` can hold: id, filter, expiration (\"7d\" or \"DeleteMarker\"), noncurrent_expiration_days (\"1d\" or null)."
  value       = local.minio_rules
}

output "id_prefix" {
  description = "`seatable-backup:<prefix>:`, the start of every rule ID of this configuration."
  value       = local.id_prefix
}
