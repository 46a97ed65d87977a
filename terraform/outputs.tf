output "function_urls" {
  description = "URL of each broker function; also the audience callers' ID tokens must carry (for sts: the subject token's audience)."
  value       = local.function_url
}

output "runtime_service_account" {
  description = "The broker's runtime service account: the account keyless accounts grant roles/iam.serviceAccountTokenCreator to."
  value       = google_service_account.broker.email
}

output "build_service_account" {
  description = "The account Cloud Build builds the functions as."
  value       = google_service_account.build.email
}

output "key_secrets" {
  description = "Secret Manager secret of each keyed service account: add versions with gcloud secrets versions add."
  value       = { for id, s in google_secret_manager_secret.key : local.keyed_accounts[id].email => s.id }
}

output "keyless_accounts" {
  description = "Keyless service accounts, and the grants of roles/iam.serviceAccountTokenCreator made for each."
  value       = { for email, sa in local.keyless_accounts : email => [for k, g in local.keyless_grants : "${g.caller == "" ? "broker runtime" : g.caller} -> ${g.account}" if startswith(k, "${email}/")] }
}

output "delegated_job_url" {
  description = "URL of the example delegated job, when enabled."
  value       = one([for f in google_cloudfunctions2_function.job : f.url])
}

output "dashboard" {
  description = "The Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.broker.id
}
