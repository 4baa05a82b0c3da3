variable "bucket" {
  description = "The backup bucket."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "The tool's `storage.prefix`."
  type        = string
  default     = "seatable"
  nullable    = false
}

variable "endpoint" {
  description = "`storage.endpoint`: the S3 endpoint URL; null for AWS."
  type        = string
  default     = null
}

variable "region" {
  description = "`storage.region`; null to leave it to the AWS chain (AWS_REGION, profile)."
  type        = string
  default     = null
}

variable "path_style" {
  description = "`storage.path_style`: path-style addressing, which most self-hosted stores need."
  type        = bool
  default     = false
  nullable    = false
}

variable "keep_days" {
  description = "`retention.daily`, `.weekly`, `.monthly`."
  type = object({
    daily   = optional(number, 7)
    weekly  = optional(number, 35)
    monthly = optional(number, 365)
  })
  default  = {}
  nullable = false
}

variable "object_lock_days" {
  description = "0: the bucket has no Object Lock (`retention.object_lock = \"off\"`). Otherwise the days each new set is locked (`object_lock = \"auto\"`, `object_lock_days`)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.object_lock_days == floor(var.object_lock_days) && var.object_lock_days >= 0 && var.object_lock_days <= 36500
    error_message = "object_lock_days must be a whole number between 0 (no Object Lock) and 36500."
  }
}

variable "object_lock_mode" {
  description = "`retention.object_lock_mode`: \"governance\" or \"compliance\"."
  type        = string
  default     = "governance"
  nullable    = false

  validation {
    condition     = contains(["governance", "compliance"], var.object_lock_mode)
    error_message = "object_lock_mode must be \"governance\" or \"compliance\"."
  }
}

variable "credentials_hint" {
  description = "How the keys reach the tool, printed as a comment at the top."
  type        = string
  default     = "Keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment; never put them in this file."
  nullable    = false
}
