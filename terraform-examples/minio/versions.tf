terraform {
  required_version = ">= 1.3"

  required_providers {
    minio = {
      source = "aminueza/minio"
      # 3.0 brought the `noncurrent_expiration` block of minio_ilm_policy rules.
      version = ">= 3.0"
    }
  }
}

# The admin credentials come from the environment: MINIO_USER and MINIO_PASSWORD.
provider "minio" {
  minio_server = var.minio_server
  minio_region = var.region
  minio_ssl    = var.minio_ssl
}
