variable "minio_server" {
  description = "The MinIO server as host:port, e.g. \"s3.example.com:443\"."
  type        = string
  nullable    = false
}

variable "minio_ssl" {
  description = "Reach the server over HTTPS."
  type        = bool
  default     = true
  nullable    = false
}

variable "endpoint" {
  description = "The endpoint URL the tool uses (`storage.endpoint`); null: https://<minio_server> (http:// without minio_ssl)."
  type        = string
  default     = null
}

variable "region" {
  description = "The server's region (MinIO's default is us-east-1); also the tool's `storage.region`."
  type        = string
  default     = "us-east-1"
  nullable    = false
}

variable "bucket" {
  description = "Name of the backup bucket to create."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, `.` and `-`."
  }
}

variable "prefix" {
  description = "The tool's `storage.prefix`: sets go under <prefix>/<class>/<host>/<stamp>/. \"\" = the bucket's root."
  type        = string
  default     = "seatable"
  nullable    = false
}

variable "keep_days" {
  description = "Days the sets of each class are kept (the tool's `retention.daily`, `.weekly`, `.monthly`)."
  type = object({
    daily   = optional(number, 7)
    weekly  = optional(number, 35)
    monthly = optional(number, 365)
  })
  default  = {}
  nullable = false
}

variable "versioning" {
  description = "Turn versioning on (always on with Object Lock). An expired object then only gets a delete marker; one more ILM rule removes noncurrent versions a day later, and then the markers."
  type        = bool
  default     = false
  nullable    = false
}

variable "object_lock_days" {
  description = "0 (default): no Object Lock. Otherwise the bucket is created with Object Lock (only possible at creation; it turns versioning on) and the tool locks every object of a new set for this many days (`retention.object_lock_days`). No default retention is set on the bucket: the tool sets it per object."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.object_lock_days == floor(var.object_lock_days) && var.object_lock_days >= 0 && var.object_lock_days <= 36500
    error_message = "object_lock_days must be a whole number between 0 (no Object Lock) and 36500."
  }
}

variable "object_lock_mode" {
  description = "The tool's `retention.object_lock_mode`: \"governance\" (a user with s3:BypassGovernanceRetention may still delete early) or \"compliance\" (nobody can until the date passes)."
  type        = string
  default     = "governance"
  nullable    = false

  validation {
    condition     = contains(["governance", "compliance"], var.object_lock_mode)
    error_message = "object_lock_mode must be \"governance\" or \"compliance\"."
  }
}

variable "iam_name_prefix" {
  description = "MinIO users and policies are named <iam_name_prefix>-backup, -restore and -admin."
  type        = string
  default     = "seatable"
  nullable    = false
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket with every backup in it. Leave false for real backups."
  type        = bool
  default     = false
  nullable    = false
}
