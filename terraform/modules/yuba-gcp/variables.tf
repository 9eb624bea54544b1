variable "project_id" {
  description = "GCP project that holds the replica bucket, the workload identity pool and the service accounts."
  type        = string
}

variable "location" {
  description = "Location of the replica bucket: a region (europe-west1), a dual-region or a multi-region (EU). Put it near the S3 bucket's region: every replica crosses that distance once."
  type        = string
}

variable "bucket_name" {
  description = "Name of the replica bucket (the workers' YUBA_GCS_BUCKET). Bucket names are global: pick one nobody has, and give the CDK stage the same (gcp.bucket)."
  type        = string

  # Google's bucket naming rules, one validation each, as far as a condition can say them:
  # https://cloud.google.com/storage/docs/buckets#naming (scripts/check_terraform.py holds these
  # to the same rules written in Python).
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]*[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name may contain only lower-case letters, digits, '-', '_' and '.', and must start and end with a letter or a digit (https://cloud.google.com/storage/docs/buckets#naming)."
  }

  validation {
    condition = (
      length(var.bucket_name) >= 3 &&
      length(var.bucket_name) <= (strcontains(var.bucket_name, ".") ? 222 : 63) &&
      alltrue([for part in split(".", var.bucket_name) : length(part) <= 63])
    )
    error_message = "bucket_name must be 3-63 characters, or up to 222 if it contains dots with at most 63 between two dots (https://cloud.google.com/storage/docs/buckets#naming)."
  }

  validation {
    condition     = !can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", var.bucket_name))
    error_message = "bucket_name must not be an IP address in dotted-decimal notation (https://cloud.google.com/storage/docs/buckets#naming)."
  }

  validation {
    condition = (
      !startswith(var.bucket_name, "goog") &&
      !anytrue([for spelling in ["google", "g00gle", "g0ogle", "go0gle"] : strcontains(var.bucket_name, spelling)])
    )
    error_message = "bucket_name must not begin with \"goog\" nor contain \"google\" or a close misspelling such as \"g00gle\" (https://cloud.google.com/storage/docs/buckets#naming)."
  }
}

variable "storage_class" {
  description = "Default storage class of the bucket. Nearline, Coldline and Archive charge early deletion for the temporary parts of composite uploads: set YUBA_GCS_COMPOSE_THRESHOLD_BYTES=0 on the workers with those."
  type        = string
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.storage_class)
    error_message = "storage_class must be STANDARD, NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "aws_account_id" {
  description = "The AWS account the workers and the reconciler run in. Only identities of this account can exchange tokens with the pool."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be 12 digits."
  }
}

variable "worker_role_arns" {
  description = "IAM role ARNs the workers run as: the Lambda worker's execution role and the Fargate worker's task role (arn:aws:iam::ACCOUNT:role/NAME). They get write access to the bucket."
  type        = list(string)

  validation {
    condition     = length(var.worker_role_arns) > 0
    error_message = "worker_role_arns needs at least one role: without it nothing can write the replica."
  }

  validation {
    condition     = alltrue([for arn in var.worker_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", arn))])
    error_message = "worker_role_arns must be IAM role ARNs (arn:aws:iam::ACCOUNT:role/NAME), not assumed-role or user ARNs."
  }
}

variable "reconciler_role_arns" {
  description = "IAM role ARNs the reconciler runs as: the scheduled task's role, and any role operators run yuba-reconciler under. Empty: no AWS identity can use the reconciler's service account."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.reconciler_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", arn))])
    error_message = "reconciler_role_arns must be IAM role ARNs (arn:aws:iam::ACCOUNT:role/NAME)."
  }
}

variable "serve_role_arns" {
  description = "IAM role ARNs yuba-serve runs as: the delivery origin's Lambda role (PREFIX-serve-lambda). They may read the bucket, and create objects under variants_prefix only. Empty: no AWS identity can use the serve service account."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.serve_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", arn))])
    error_message = "serve_role_arns must be IAM role ARNs (arn:aws:iam::ACCOUNT:role/NAME)."
  }
}

variable "variants_prefix" {
  description = "The literal start of every variant's object name: the variants' key_template up to its first placeholder (the default template _variants/{variant}/{key} gives _variants/). yuba-serve may create objects under it and nowhere else, so it must match the template the workers and yuba-serve are given."
  type        = string
  default     = "_variants/"
  nullable    = false

  # The prefix is the whole of yuba-serve's write access (an IAM condition on the object name,
  # main.tf): it must be a literal prefix that ends a path segment, or "_variants" would let it
  # write "_variants-anything", and an empty one the whole bucket.
  validation {
    condition     = length(var.variants_prefix) > 1 && endswith(var.variants_prefix, "/") && !startswith(var.variants_prefix, "/")
    error_message = "variants_prefix must be a non-empty object name prefix ending in '/' (such as _variants/), not starting with '/'."
  }

  validation {
    # It is spliced into the condition's CEL string literal: no quote or backslash either.
    condition     = alltrue([for c in ["{", "}", "\"", "\\"] : !strcontains(var.variants_prefix, c)])
    error_message = "variants_prefix is the literal part of the key template before its first placeholder: no '{', '}', '\"' or '\\'."
  }

  validation {
    condition     = !startswith(var.variants_prefix, "_yuba-parts/")
    error_message = "variants_prefix must not be under _yuba-parts/, where the workers keep the parts of composite uploads."
  }
}

variable "reconciler_can_write" {
  description = "Let the reconciler write and delete objects, which `backfill --inline` and `--delete-orphans` need. Off, it can list and read only, and repairs through the workers' queues."
  type        = bool
  default     = false
}

variable "versioning" {
  description = "Keep noncurrent versions of replaced and deleted objects. S3 is the source of truth, so this is off by default; on, add lifecycle_rules that expire noncurrent versions, or every overwrite is billed forever."
  type        = bool
  default     = false
}

variable "soft_delete_retention_seconds" {
  description = "Soft-delete retention of the bucket: 0 turns soft delete off, otherwise 604800 (7 days) to 7776000 (90 days). null leaves Google's default (7 days). Deleted temporary parts are billed for this long."
  type        = number
  default     = null

  validation {
    condition = (
      var.soft_delete_retention_seconds == null ? true :
      var.soft_delete_retention_seconds == 0 || (var.soft_delete_retention_seconds >= 604800 && var.soft_delete_retention_seconds <= 7776000)
    )
    error_message = "soft_delete_retention_seconds must be null, 0, or between 604800 and 7776000."
  }
}

variable "lifecycle_rules" {
  description = "Further lifecycle rules of the bucket (the rule that deletes abandoned composite-upload parts is always there). Each: action {type, storage_class} and condition with the provider's attribute names."
  type = list(object({
    action = object({
      type          = string
      storage_class = optional(string)
    })
    condition = object({
      age                        = optional(number)
      created_before             = optional(string)
      with_state                 = optional(string)
      matches_storage_class      = optional(list(string))
      matches_prefix             = optional(list(string))
      matches_suffix             = optional(list(string))
      num_newer_versions         = optional(number)
      days_since_noncurrent_time = optional(number)
      days_since_custom_time     = optional(number)
      noncurrent_time_before     = optional(string)
    })
  }))
  default = []
}

variable "reader_members" {
  description = "Principals that read objects for the delivery path (the image server behind the CDN), e.g. serviceAccount:origin@PROJECT.iam.gserviceaccount.com. Granted roles/storage.objectViewer on this bucket only."
  type        = list(string)
  default     = []

  validation {
    condition     = !anytrue([for m in var.reader_members : contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "reader_members must not make the bucket public (public access prevention is enforced); give the CDN's origin a service account."
  }
}

variable "name_prefix" {
  description = "Prefix of the service account ids (PREFIX-worker, PREFIX-reconciler, PREFIX-serve): one per deployment that shares the project, e.g. the CDK stage's prefix."
  type        = string
  default     = "yuba"
  nullable    = false

  validation {
    # The ids exactly as the service accounts below make them, against Google's rule:
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create
    condition = alltrue([
      for id in ["${var.name_prefix}-worker", "${var.name_prefix}-reconciler", "${var.name_prefix}-serve"] :
      length(id) >= 6 && length(id) <= 30 && can(regex("^[a-z]([-a-z0-9]*[a-z0-9])$", id))
    ])
    error_message = "name_prefix must make PREFIX-worker, PREFIX-reconciler and PREFIX-serve valid service account ids: 6-30 characters matching [a-z]([-a-z0-9]*[a-z0-9]) (https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create), so 1-19 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "pool_id" {
  description = "Id of the workload identity pool: one per deployment that shares the project. A deleted pool keeps its id for 30 days, so a re-created deployment may need a new one."
  type        = string
  default     = "yuba-aws"
  nullable    = false

  validation {
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools/create
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.pool_id)) && !startswith(var.pool_id, "gcp-")
    error_message = "pool_id must be 4-32 characters of a-z, 0-9 and '-', and must not begin with \"gcp-\", which Google reserves (https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools/create)."
  }
}

variable "pool_provider_id" {
  description = "Id of the AWS provider in the pool (the pool holds this one provider). A deleted provider keeps its id for 30 days."
  type        = string
  default     = "aws-account"
  nullable    = false

  validation {
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers/create
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.pool_provider_id)) && !startswith(var.pool_provider_id, "gcp-")
    error_message = "pool_provider_id must be 4-32 characters of a-z, 0-9 and '-', and must not begin with \"gcp-\", which Google reserves (https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers/create)."
  }
}

variable "enable_apis" {
  description = "Enable the APIs yuba's identities need (IAM, IAM credentials, STS, Cloud Storage). Turn off where a platform team manages the project's services."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects. Off: a replica is rebuilt only by a full backfill."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels for the bucket."
  type        = map(string)
  default     = {}
}
