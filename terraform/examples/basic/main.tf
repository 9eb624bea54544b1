provider "google" {
  project = var.project_id
}

locals {
  # The roles the CDK app gives the programs that reach GCP, by name, so that nobody types an
  # ARN: PREFIX-ROLE, where PREFIX is the stage's prefix and ROLE is programs.<program>.role in
  # cdk/lib/generated/aws-iam.json (scripts/check_terraform.py holds these to that file).
  aws_roles = "arn:aws:iam::${var.aws_account_id}:role/${var.aws_stage_prefix}"
  worker_role_arns = [
    "${local.aws_roles}-worker-lambda",
    "${local.aws_roles}-worker-task",
  ]
  reconciler_role_arns = concat(["${local.aws_roles}-reconciler-task"], var.extra_reconciler_role_arns)
  # yuba-serve's Lambda, which the stage has with delivery.enabled; trusting the name of a role
  # that does not exist (yet) grants nothing.
  serve_role_arns = ["${local.aws_roles}-serve-lambda"]

  # Named after the stage, so that dev and prod can share a GCP project. A service account id
  # has at most 30 characters and PREFIX-reconciler adds 11, so a prefix of the CDK's longest
  # (20 characters) is cut to 19 here.
  name_prefix = coalesce(var.name_prefix, substr(var.aws_stage_prefix, 0, 19))
  pool_id     = coalesce(var.pool_id, "${local.name_prefix}-aws")
}

module "yuba_gcp" {
  source = "../../modules/yuba-gcp"

  project_id           = var.project_id
  location             = var.location
  bucket_name          = var.bucket_name
  aws_account_id       = var.aws_account_id
  worker_role_arns     = local.worker_role_arns
  reconciler_role_arns = local.reconciler_role_arns
  reconciler_can_write = var.reconciler_can_write
  serve_role_arns      = local.serve_role_arns
  variants_prefix      = var.variants_prefix
  reader_members       = var.reader_members

  name_prefix      = local.name_prefix
  pool_id          = local.pool_id
  pool_provider_id = var.pool_provider_id # null: the module's default

  # Variants and replicas are rewritten, not edited: a month without reads moves them to a
  # cheaper class. An example of lifecycle_rules; the parts rule is always added by the module.
  lifecycle_rules = [
    {
      action    = { type = "SetStorageClass", storage_class = "NEARLINE" }
      condition = { age = 30, matches_prefix = ["_variants/"] }
    },
  ]
}
