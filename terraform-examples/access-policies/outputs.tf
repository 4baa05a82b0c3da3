output "policies" {
  description = "Policy documents (JSON) by role: backup, restore, admin."
  value       = local.policies
}

output "objects_arn" {
  description = "The ARN the object permissions are limited to."
  value       = local.objects_arn
}
