terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  # State holds nothing secret here, but keep it where the team can reach it, e.g.:
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "yuba"
  # }
}
