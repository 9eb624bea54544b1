# The GCP side of yuba: the replica bucket, and the identities the AWS side writes and reads it
# with. No key ever leaves Google: the workers, the reconciler and the delivery origin
# (yuba-serve) exchange their AWS role's credentials for short-lived tokens of a service account
# (workload identity federation).

locals {
  # The part of a workload's identity that the pool keeps, and that grants are made to: Google's
  # documented default mapping for AWS turns the caller's
  # arn:aws:sts::ACCOUNT:assumed-role/ROLE_NAME/SESSION into
  # arn:aws:sts::ACCOUNT:assumed-role/ROLE_NAME. A session name (a Lambda function's name, a
  # Fargate task's id) changes every time, so the role is the only stable handle.
  aws_role_mapping = "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"

  # The role ARN given (arn:aws:iam::ACCOUNT:role/PATH/NAME) as the mapping above writes it:
  # STS ARNs carry the role's name without its path.
  role_arn_parts = {
    for arn in distinct(concat(var.worker_role_arns, var.reconciler_role_arns, var.serve_role_arns)) :
    arn => regex("^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{12}):role/(?:[^/]+/)*(?P<name>[^/]+)$", arn)
  }
  assumed_roles = {
    for arn, p in local.role_arn_parts : arn => "arn:${p.partition}:sts::${p.account}:assumed-role/${p.name}"
  }

  worker_principals     = [for arn in var.worker_role_arns : local.assumed_roles[arn]]
  reconciler_principals = [for arn in var.reconciler_role_arns : local.assumed_roles[arn]]
  serve_principals      = [for arn in var.serve_role_arns : local.assumed_roles[arn]]

  parts_prefix = "_yuba-parts/"

  # Every object operation yuba makes (read, create, overwrite, compose, patch metadata, delete,
  # list) and nothing more: unlike objectAdmin, objectUser cannot change IAM policies (managed
  # folders keep their own even under uniform bucket-level access), so a compromised worker
  # cannot hand the bucket to someone else.
  writer_role = "roles/storage.objectUser"
  reader_role = "roles/storage.objectViewer"
  # yuba-serve writes a variant it rendered on a miss with ifGenerationMatch=0: a create, never an
  # overwrite, and creating needs storage.objects.create alone ("To replace an existing object,
  # both storage.objects.create and storage.objects.delete permissions are required",
  # https://cloud.google.com/storage/docs/access-control/iam-permissions; the methods' table,
  # https://cloud.google.com/storage/docs/access-control/iam-json, needs delete only to overwrite).
  # objectCreator has create and nothing else of objects: no read, delete or overwrite.
  creator_role = "roles/storage.objectCreator"

  # The services behind the token exchange (sts), the impersonation of the service accounts
  # (iamcredentials), the pool and the accounts themselves (iam), and the bucket.
  apis = var.enable_apis ? toset([
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "storage.googleapis.com",
  ]) : toset([])
}

# Enabled here because a missing iamcredentials or sts API shows up only at the first token
# exchange, as an opaque 403 inside a Lambda; never disabled on destroy, because other things in
# the project may use them.
resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_storage_bucket" "replica" {
  #checkov:skip=CKV_GCP_62:Usage logs are a legacy feature; who wrote what is in Cloud Audit Logs (Data Access logs for storage.googleapis.com), which the project owner turns on, and every replica records its source in its metadata.
  #checkov:skip=CKV_GCP_78:S3 is the versioned source of truth and the reconciler rebuilds any replica from it; versioning would keep a noncurrent copy of every overwrite. It is var.versioning, and soft delete (on by default) covers accidental deletes.
  name          = var.bucket_name
  project       = var.project_id
  location      = var.location
  storage_class = var.storage_class
  labels        = var.labels
  force_destroy = var.force_destroy

  # Access is IAM on the bucket and nothing else: no object ACLs for a replica to inherit or leak
  # through, and the bucket can never be made public, whatever an ACL or a grant says.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = var.versioning
  }

  dynamic "soft_delete_policy" {
    for_each = var.soft_delete_retention_seconds == null ? [] : [var.soft_delete_retention_seconds]
    content {
      retention_duration_seconds = soft_delete_policy.value
    }
  }

  # A worker that dies during a parallel composite upload leaves its parts here; a live upload
  # finishes in minutes, so anything a day old is abandoned. Always present, whatever
  # lifecycle_rules says: the workers rely on it.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = [local.parts_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # With versioning, a deleted part lives on as a noncurrent version: remove those too.
  dynamic "lifecycle_rule" {
    for_each = var.versioning ? [local.parts_prefix] : []
    content {
      condition {
        days_since_noncurrent_time = 1
        matches_prefix             = [lifecycle_rule.value]
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.lifecycle_rules
    content {
      action {
        type          = lifecycle_rule.value.action.type
        storage_class = lifecycle_rule.value.action.storage_class
      }
      condition {
        age                        = lifecycle_rule.value.condition.age
        created_before             = lifecycle_rule.value.condition.created_before
        with_state                 = lifecycle_rule.value.condition.with_state
        matches_storage_class      = lifecycle_rule.value.condition.matches_storage_class
        matches_prefix             = lifecycle_rule.value.condition.matches_prefix
        matches_suffix             = lifecycle_rule.value.condition.matches_suffix
        num_newer_versions         = lifecycle_rule.value.condition.num_newer_versions
        days_since_noncurrent_time = lifecycle_rule.value.condition.days_since_noncurrent_time
        days_since_custom_time     = lifecycle_rule.value.condition.days_since_custom_time
        noncurrent_time_before     = lifecycle_rule.value.condition.noncurrent_time_before
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_iam_workload_identity_pool" "aws" {
  project                   = var.project_id
  workload_identity_pool_id = var.pool_id
  display_name              = "yuba (AWS)"
  description               = "AWS roles of yuba's workers, reconciler and delivery origin"

  depends_on = [google_project_service.apis]
}

resource "google_iam_workload_identity_pool_provider" "aws" {
  #checkov:skip=CKV_GCP_125:A check of GitHub Actions OIDC providers that fails every provider without an oidc block (it indexes the missing block and fails on the exception); this is an AWS provider, restricted by attribute_condition below.
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.aws.workload_identity_pool_id
  workload_identity_pool_provider_id = var.pool_provider_id
  display_name                       = "AWS ${var.aws_account_id}"

  aws {
    account_id = var.aws_account_id
  }

  # google.subject is the role too, not Google's default (the whole assumed-role ARN): a subject
  # is limited to 127 bytes, and the ARN with a CDK-generated role name and a Lambda function's
  # name as the session is longer, which fails every token exchange. The session is still in
  # CloudTrail, on the AWS side.
  attribute_mapping = {
    "google.subject"     = local.aws_role_mapping
    "attribute.aws_role" = local.aws_role_mapping
  }

  # Only yuba's own roles get a federated token at all; the grants below then decide which
  # service account each may become. Without this, any role in the account could exchange its
  # credentials and would be stopped only by the IAM bindings.
  attribute_condition = "assertion.account == '${var.aws_account_id}' && attribute.aws_role in ${jsonencode(distinct(concat(local.worker_principals, local.reconciler_principals, local.serve_principals)))}"

  lifecycle {
    precondition {
      condition = alltrue([
        for arn in concat(var.worker_role_arns, var.reconciler_role_arns, var.serve_role_arns) :
        split(":", arn)[4] == var.aws_account_id
      ])
      error_message = "Every role in worker_role_arns, reconciler_role_arns and serve_role_arns must belong to aws_account_id: the provider accepts that account only."
    }
  }
}

resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-worker"
  display_name = "yuba worker"
  description  = "Writes replicas and variants into gs://${var.bucket_name}; impersonated by the workers' AWS roles."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "reconciler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-reconciler"
  display_name = "yuba reconciler"
  description  = "Lists and reads gs://${var.bucket_name} (and repairs it if allowed); impersonated by the reconciler's AWS roles."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "serve" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-serve"
  display_name = "yuba serve"
  description  = "Reads gs://${var.bucket_name} and creates variants under ${var.variants_prefix}; impersonated by the delivery origin's AWS roles."

  depends_on = [google_project_service.apis]
}

# Authoritative for the role on each account: a principal added by hand is removed at the next
# apply, so the accounts' users are always exactly the roles given here.
resource "google_service_account_iam_binding" "worker_federation" {
  service_account_id = google_service_account.worker.name
  role               = "roles/iam.workloadIdentityUser"
  members = [
    for p in local.worker_principals :
    "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}/attribute.aws_role/${p}"
  ]
}

resource "google_service_account_iam_binding" "reconciler_federation" {
  count = length(local.reconciler_principals) > 0 ? 1 : 0

  service_account_id = google_service_account.reconciler.name
  role               = "roles/iam.workloadIdentityUser"
  members = [
    for p in local.reconciler_principals :
    "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}/attribute.aws_role/${p}"
  ]
}

resource "google_service_account_iam_binding" "serve_federation" {
  count = length(local.serve_principals) > 0 ? 1 : 0

  service_account_id = google_service_account.serve.name
  role               = "roles/iam.workloadIdentityUser"
  members = [
    for p in local.serve_principals :
    "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}/attribute.aws_role/${p}"
  ]
}

resource "google_storage_bucket_iam_member" "worker_writes" {
  bucket = google_storage_bucket.replica.name
  role   = local.writer_role
  member = google_service_account.worker.member
}

resource "google_storage_bucket_iam_member" "reconciler_reads" {
  bucket = google_storage_bucket.replica.name
  role   = local.reader_role
  member = google_service_account.reconciler.member
}

# `backfill --inline` writes replicas with the worker's code, `--delete-orphans` deletes them.
resource "google_storage_bucket_iam_member" "reconciler_writes" {
  count = var.reconciler_can_write ? 1 : 0

  bucket = google_storage_bucket.replica.name
  role   = local.writer_role
  member = google_service_account.reconciler.member
}

# yuba-serve reads originals, variants and their records, and lists; with no condition, because
# listing is authorised on the bucket, not on an object, so a condition on object names would
# refuse every list (resource.name is the bucket's for storage.objects.list).
resource "google_storage_bucket_iam_member" "serve_reads" {
  bucket = google_storage_bucket.replica.name
  role   = local.reader_role
  member = google_service_account.serve.member
}

# yuba-serve writes back a variant it rendered on a miss: a create (see creator_role), under the
# variants' prefix only. An object's resource name in a condition is
# projects/_/buckets/BUCKET/objects/OBJECT
# (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name), and IAM
# Conditions on a bucket need uniform bucket-level access, which the bucket has
# (https://cloud.google.com/storage/docs/access-control/iam#conditions). scripts/check_terraform.py
# holds this condition to exactly that prefix.
resource "google_storage_bucket_iam_member" "serve_writes_variants" {
  bucket = google_storage_bucket.replica.name
  role   = local.creator_role
  member = google_service_account.serve.member

  condition {
    title       = "variants-only"
    description = "Create objects under ${var.variants_prefix} (variants rendered on a miss) and nowhere else"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.replica.name}/objects/${var.variants_prefix}\")"
  }
}

# The delivery path's read access, on this bucket only.
resource "google_storage_bucket_iam_member" "readers" {
  for_each = toset(var.reader_members)

  bucket = google_storage_bucket.replica.name
  role   = local.reader_role
  member = each.value
}
