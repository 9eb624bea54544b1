output "bucket_name" {
  description = "YUBA_GCS_BUCKET for the workers and the reconciler."
  value       = module.yuba_gcp.bucket_name
}

output "worker_credentials_json" {
  description = "Credential configuration of the workers (terraform output -raw worker_credentials_json > worker-gcp.json)."
  value       = module.yuba_gcp.worker_credentials_json
}

output "reconciler_credentials_json" {
  description = "Credential configuration of the reconciler."
  value       = module.yuba_gcp.reconciler_credentials_json
}

output "worker_service_account_email" {
  description = "The workers' service account."
  value       = module.yuba_gcp.worker_service_account_email
}

output "reconciler_service_account_email" {
  description = "The reconciler's service account."
  value       = module.yuba_gcp.reconciler_service_account_email
}
