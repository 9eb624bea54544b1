provider "google" {
  project = var.project_id
}

module "yuba_gcp" {
  source = "../../modules/yuba-gcp"

  project_id           = var.project_id
  location             = var.location
  bucket_name          = var.bucket_name
  aws_account_id       = var.aws_account_id
  worker_role_arns     = var.worker_role_arns
  reconciler_role_arns = var.reconciler_role_arns
  reconciler_can_write = var.reconciler_can_write
  reader_members       = var.reader_members

  # Variants and replicas are rewritten, not edited: a month without reads moves them to a
  # cheaper class. An example of lifecycle_rules; the parts rule is always added by the module.
  lifecycle_rules = [
    {
      action    = { type = "SetStorageClass", storage_class = "NEARLINE" }
      condition = { age = 30, matches_prefix = ["_variants/"] }
    },
  ]
}
