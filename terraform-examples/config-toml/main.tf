# The [storage] and [retention] part of the tool's config file, for the bucket an example made.
# Strings are written with jsonencode: a JSON string is a valid TOML basic string.
# tests/terraform_examples.rs loads the result with the tool's own config parser.

locals {
  prefix = trim(var.prefix, "/")
  locked = var.object_lock_days > 0

  storage = concat(
    [
      "[storage]",
      "destination = ${jsonencode("s3://${var.bucket}")}",
      "prefix = ${jsonencode(local.prefix)}",
    ],
    var.endpoint != null ? ["endpoint = ${jsonencode(var.endpoint)}"] : [],
    var.region != null ? ["region = ${jsonencode(var.region)}"] : [],
    var.path_style ? ["path_style = true"] : [],
  )

  retention = concat(
    [
      "[retention]",
      "daily = ${var.keep_days.daily}",
      "weekly = ${var.keep_days.weekly}",
      "monthly = ${var.keep_days.monthly}",
    ],
    local.locked ? [
      "object_lock = \"auto\"",
      "object_lock_mode = ${jsonencode(var.object_lock_mode)}",
      "object_lock_days = ${var.object_lock_days}",
      ] : [
      "# The bucket has no Object Lock.",
      "object_lock = \"off\"",
    ],
  )

  text = join("\n", concat(
    ["# seatable-backup: merge into the config file (default /etc/seatable-backup/config.toml).", "# ${var.credentials_hint}", ""],
    local.storage,
    [""],
    local.retention,
    [""],
  ))
}
