variable "project_id" {
  description = "GCP project for the replica."
  type        = string
}

variable "location" {
  description = "Location of the replica bucket (a region near the S3 bucket's, or a multi-region)."
  type        = string
}

variable "bucket_name" {
  description = "Name of the replica bucket: the CDK stage's gcp.bucket (YUBA_GCS_BUCKET). Bucket names are global, so each stage needs its own."
  type        = string
}

variable "aws_account_id" {
  description = "AWS account the CDK stage is deployed to."
  type        = string
}

variable "aws_stage_prefix" {
  description = "The CDK stage's prefix (yuba-dev, yuba-prod): its roles are PREFIX-worker-lambda, PREFIX-worker-task, PREFIX-reconciler-task and PREFIX-serve-lambda, and it names the stage's pool and service accounts here."
  type        = string
  default     = "yuba-dev"

  validation {
    # The CDK's own rule for a stage prefix (STAGE_PREFIX in cdk/lib/config.ts), which makes the
    # role names; scripts/check_terraform.py holds this condition to it.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.aws_stage_prefix)) && !startswith(var.aws_stage_prefix, "gcp")
    error_message = "aws_stage_prefix is the CDK stage's prefix: a lower-case letter, then lower-case letters, digits and '-', 1-20 in all, not starting with \"gcp\" (STAGE_PREFIX in cdk/lib/config.ts)."
  }
}

variable "extra_reconciler_role_arns" {
  description = "Further IAM role ARNs that may act as the reconciler: operators who run yuba-reconciler by hand."
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of the service account ids (PREFIX-worker, PREFIX-reconciler, PREFIX-serve). null: aws_stage_prefix (its first 19 characters)."
  type        = string
  default     = null
}

variable "pool_id" {
  description = "Id of the stage's workload identity pool. null: NAME_PREFIX-aws. A deleted pool keeps its id for 30 days: set another to re-create the stage sooner."
  type        = string
  default     = null
}

variable "pool_provider_id" {
  description = "Id of the AWS provider in the pool. null: the module's default (aws-account)."
  type        = string
  default     = null
}

variable "reconciler_can_write" {
  description = "Allow `yuba-reconciler backfill --inline` and `--delete-orphans`."
  type        = bool
  default     = false
}

variable "variants_prefix" {
  description = "The literal start of the variants' object names, before the first placeholder of their key_template (_variants/ for the default _variants/{variant}/{key}): where yuba-serve may create variants. null: the module's default."
  type        = string
  default     = null
}

variable "reader_members" {
  description = "Principals of the delivery path that read the replica (the image server's service account)."
  type        = list(string)
  default     = []
}
