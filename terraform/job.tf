# Optional: a scheduled job that asks the broker for a domain-wide-delegated token and calls a
# Google API with it (functions/examples/delegated-job.ts, entry point delegatedJob).

resource "google_service_account" "job" {
  count        = var.delegated_job == null ? 0 : 1
  project      = var.project_id
  account_id   = "${local.prefix}-job"
  display_name = "Token broker example: delegated job"
}

resource "google_cloudfunctions2_function" "job" {
  count    = var.delegated_job == null ? 0 : 1
  project  = var.project_id
  location = var.region
  name     = "${local.prefix}-delegated-job"

  build_config {
    runtime     = "nodejs22"
    entry_point = "delegatedJob"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.job[0].email
    ingress_settings      = "ALLOW_ALL" # Cloud Scheduler calls from outside the VPC; invoker IAM guards it
    max_instance_count    = 1
    available_memory      = "256Mi"
    timeout_seconds       = 120
    environment_variables = {
      NODE_ENV          = "production"
      JOB_BROKER_URL    = local.token_url_for_job
      JOB_BROKER_AUDIENCE = local.function_url[local.token_function]
      JOB_SERVICE_ACCOUNT = var.delegated_job.service_account
      JOB_SUBJECT         = var.delegated_job.subject
      JOB_SCOPES          = join(" ", var.delegated_job.scopes)
    }
  }
}

# The job may call the broker's token function...
resource "google_cloud_run_v2_service_iam_member" "job_calls_broker" {
  count    = var.delegated_job == null ? 0 : 1
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.broker[local.token_function].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.job[0].email}"
}

# ...and Cloud Scheduler, acting as the job's account, may call the job.
resource "google_cloud_run_v2_service_iam_member" "scheduler_calls_job" {
  count    = var.delegated_job == null ? 0 : 1
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.job[0].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.job[0].email}"
}

resource "google_cloud_scheduler_job" "delegated" {
  count     = var.delegated_job == null ? 0 : 1
  project   = var.project_id
  region    = var.region
  name      = "${local.prefix}-delegated-job"
  schedule  = var.delegated_job.schedule
  time_zone = var.delegated_job.time_zone

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.job[0].url
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")
    oidc_token {
      service_account_email = google_service_account.job[0].email
      audience              = google_cloudfunctions2_function.job[0].url
    }
  }

  depends_on = [google_project_service.apis]
}
