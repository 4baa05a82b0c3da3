variable "bucket_arn" {
  description = "ARN of the backup bucket, `arn:aws:s3:::BUCKET` (MinIO accepts the same form)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^arn:[a-z-]+:s3:::[^/*]+$", var.bucket_arn))
    error_message = "bucket_arn must look like arn:aws:s3:::BUCKET."
  }
}

variable "prefix" {
  description = "The tool's `storage.prefix`; object permissions are limited to <prefix>/*. \"\" = the whole bucket."
  type        = string
  default     = "seatable"
  nullable    = false
}

variable "object_lock" {
  description = "Whether the bucket has Object Lock: the backup role then also needs s3:PutObjectRetention, to lock each object of a new set."
  type        = bool
  default     = false
  nullable    = false
}
