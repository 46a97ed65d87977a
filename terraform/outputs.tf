output "function_urls" {
  description = "URL of each broker function; also the audience callers' ID tokens must carry."
  value       = local.function_url
}

output "runtime_service_account" {
  description = "The broker's runtime service account."
  value       = google_service_account.broker.email
}

output "key_secrets" {
  description = "Secret Manager secret of each service account's key: add versions with gcloud secrets versions add."
  value       = { for id, s in google_secret_manager_secret.key : local.secret_ids[id].email => s.id }
}

output "delegated_job_url" {
  description = "URL of the example delegated job, when enabled."
  value       = one(google_cloudfunctions2_function.job[*].url)
}
