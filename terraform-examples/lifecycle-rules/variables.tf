variable "prefix" {
  description = "The tool's `storage.prefix`: sets go under <prefix>/<class>/<host>/<stamp>/. \"\" = the bucket's root. Slashes at either end are dropped, as the tool does."
  type        = string
  default     = "seatable"
  nullable    = false

  validation {
    condition = trim(var.prefix, "/") == "" || alltrue([
      for s in split("/", trim(var.prefix, "/")) : can(regex("^[A-Za-z0-9._-]+$", s)) && s != "." && s != ".."
    ])
    error_message = "Each segment of prefix may hold letters, digits, `.`, `_` and `-` only (and is neither `.` nor `..`)."
  }
}

variable "keep_days" {
  description = "Days the sets of each class are kept: the tool's `retention.daily`, `retention.weekly`, `retention.monthly`."
  type = object({
    daily   = optional(number, 7)
    weekly  = optional(number, 35)
    monthly = optional(number, 365)
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for d in [var.keep_days.daily, var.keep_days.weekly, var.keep_days.monthly] : d == floor(d) && d >= 1 && d <= 36500
    ])
    error_message = "keep_days.daily, .weekly and .monthly must be whole numbers of days between 1 and 36500."
  }
}

variable "versioned" {
  description = "Whether the bucket has versioning (Object Lock requires it): an expired object then only gets a delete marker, so one more rule removes noncurrent versions and, after them, the markers."
  type        = bool
  default     = false
  nullable    = false
}
