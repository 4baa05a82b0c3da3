terraform {
  # optional() attributes with defaults need 1.3. This module uses no provider, so it can be
  # evaluated without `terraform init`.
  required_version = ">= 1.3"
}
