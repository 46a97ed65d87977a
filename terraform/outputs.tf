output "function_urls" {
  description = "URL of each broker function; also the audience callers' ID tokens must carry (for sts: the subject token's audience)."
  value       = local.function_url
}

output "token_url" {
  description = "The token endpoint: the token function's URL, or /token on the broker function (null with neither)."
  value       = local.token_url
}

output "smoke_test" {
  description = "With smoke_test: the commands that run the in-VPC smoke test and read what it logged (README, step 6)."
  value = length(local.smoke) == 0 ? null : {
    execute  = "gcloud run jobs execute ${local.prefix}-smoke --project=${var.project_id} --region=${var.region} --wait"
    read_log = "gcloud logging read 'resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${local.prefix}-smoke\" AND jsonPayload.smoke:*' --project=${var.project_id} --freshness=15m --limit=1 --format=json"
    caller   = local.smoke_account
  }
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
