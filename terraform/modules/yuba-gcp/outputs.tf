locals {
  audience = "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.aws.name}"

  # What `gcloud iam workload-identity-pools create-cred-config --aws --enable-imdsv2` writes.
  # yuba never contacts the metadata URLs (AWS keys from the environment on Lambda, the SDK's
  # credential chain on Fargate); they are there for other clients given the same file.
  credential_source = {
    environment_id                 = "aws1"
    region_url                     = "http://169.254.169.254/latest/meta-data/placement/availability-zone"
    url                            = "http://169.254.169.254/latest/meta-data/iam/security-credentials"
    regional_cred_verification_url = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    imdsv2_session_token_url       = "http://169.254.169.254/latest/api/token"
  }

  credential_configs = {
    for role, sa in {
      worker     = google_service_account.worker.email
      reconciler = google_service_account.reconciler.email
      serve      = google_service_account.serve.email
    } :
    role => jsonencode({
      universe_domain                   = "googleapis.com"
      type                              = "external_account"
      audience                          = local.audience
      subject_token_type                = "urn:ietf:params:aws:token-type:aws4_request"
      token_url                         = "https://sts.googleapis.com/v1/token"
      credential_source                 = local.credential_source
      service_account_impersonation_url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${sa}:generateAccessToken"
    })
  }
}

output "bucket_name" {
  description = "The replica bucket: YUBA_GCS_BUCKET of the workers, the reconciler and yuba-serve."
  value       = google_storage_bucket.replica.name
}

output "bucket_url" {
  description = "gs:// URL of the replica bucket."
  value       = google_storage_bucket.replica.url
}

output "worker_service_account_email" {
  description = "The service account the workers act as."
  value       = google_service_account.worker.email
}

output "reconciler_service_account_email" {
  description = "The service account the reconciler acts as."
  value       = google_service_account.reconciler.email
}

output "serve_service_account_email" {
  description = "The service account yuba-serve (the delivery origin) acts as."
  value       = google_service_account.serve.email
}

output "workload_identity_provider" {
  description = "Full name of the pool's AWS provider (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER)."
  value       = google_iam_workload_identity_pool_provider.aws.name
}

output "audience" {
  description = "Audience of the token exchange, as it appears in the credential configurations."
  value       = local.audience
}

# Not secrets: they name a pool and a service account, and are worth nothing without the AWS
# role's own credentials. They can go into a Lambda's bundle, an environment variable or SSM.
output "worker_credentials_json" {
  description = "external_account credential configuration for the workers (Lambda and Fargate): YUBA_GCS_CREDENTIALS, or the file GOOGLE_APPLICATION_CREDENTIALS names."
  value       = local.credential_configs["worker"]
}

output "reconciler_credentials_json" {
  description = "external_account credential configuration for the reconciler: YUBA_GCS_CREDENTIALS, or the file GOOGLE_APPLICATION_CREDENTIALS names."
  value       = local.credential_configs["reconciler"]
}

output "serve_credentials_json" {
  description = "external_account credential configuration for yuba-serve, the delivery origin (its Lambda): YUBA_GCS_CREDENTIALS, or the file GOOGLE_APPLICATION_CREDENTIALS names."
  value       = local.credential_configs["serve"]
}
