output "bucket_name" {
  description = "YUBA_GCS_BUCKET for the workers and the reconciler: the CDK stage's gcp.bucket."
  value       = module.yuba_gcp.bucket_name
}

output "worker_credentials_json" {
  description = "Credential configuration of the workers: terraform output -raw worker_credentials_json > ../../../cdk/config/STAGE-worker-gcp.json"
  value       = module.yuba_gcp.worker_credentials_json
}

output "reconciler_credentials_json" {
  description = "Credential configuration of the reconciler: terraform output -raw reconciler_credentials_json > ../../../cdk/config/STAGE-reconciler-gcp.json"
  value       = module.yuba_gcp.reconciler_credentials_json
}

output "serve_credentials_json" {
  description = "Credential configuration of yuba-serve, the delivery origin: terraform output -raw serve_credentials_json > ../../../cdk/config/STAGE-serve-gcp.json"
  value       = module.yuba_gcp.serve_credentials_json
}

output "worker_service_account_email" {
  description = "The workers' service account."
  value       = module.yuba_gcp.worker_service_account_email
}

output "reconciler_service_account_email" {
  description = "The reconciler's service account."
  value       = module.yuba_gcp.reconciler_service_account_email
}

output "serve_service_account_email" {
  description = "yuba-serve's service account."
  value       = module.yuba_gcp.serve_service_account_email
}

output "workload_identity_provider" {
  description = "The stage's pool provider (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER)."
  value       = module.yuba_gcp.workload_identity_provider
}

output "worker_role_arns" {
  description = "The AWS roles that may act as the workers: the CDK stage's, which must exist by these names."
  value       = local.worker_role_arns
}

output "reconciler_role_arns" {
  description = "The AWS roles that may act as the reconciler."
  value       = local.reconciler_role_arns
}

output "serve_role_arns" {
  description = "The AWS roles that may act as yuba-serve."
  value       = local.serve_role_arns
}
