output "text" {
  description = "TOML text: the [storage] and [retention] tables of the tool's config."
  value       = local.text
}
