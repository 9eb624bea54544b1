variable "project_id" {
  description = "GCP project for the replica."
  type        = string
}

variable "location" {
  description = "Location of the replica bucket (a region near the S3 bucket's, or a multi-region)."
  type        = string
}

variable "bucket_name" {
  description = "Name of the replica bucket."
  type        = string
}

variable "aws_account_id" {
  description = "AWS account of yuba's AWS side."
  type        = string
}

variable "worker_role_arns" {
  description = "Role ARNs of the Lambda worker (execution role) and the Fargate worker (task role)."
  type        = list(string)
}

variable "reconciler_role_arns" {
  description = "Role ARNs the reconciler runs as (the scheduled task's task role, operators' roles)."
  type        = list(string)
  default     = []
}

variable "reconciler_can_write" {
  description = "Allow `yuba-reconciler backfill --inline` and `--delete-orphans`."
  type        = bool
  default     = false
}

variable "reader_members" {
  description = "Principals of the delivery path that read the replica (the image server's service account)."
  type        = list(string)
  default     = []
}
