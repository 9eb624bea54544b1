terraform {
  # optional() object attributes (1.3) and preconditions (1.2); 1.5 is the oldest tested line.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Major version pinned: 7.x is what the resources below are written against; a new major
      # renames or removes arguments, so moving to it is a deliberate change.
      version = "~> 7.0"
    }
  }
}
