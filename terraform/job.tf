# Optional: a scheduled job that asks the broker for a domain-wide-delegated token and calls a Google API with
# it (functions/examples/delegated-job.ts, entry point delegatedJob).
#
# How each hop gets through ingress (Google's rules for Cloud Run ingress, which gen2 functions use):
# - Cloud Scheduler -> job: requests from Cloud Scheduler in the same project count as internal, so the job's
#   ingress is ALLOW_INTERNAL_ONLY; Cloud Run's invoker IAM then checks Scheduler's OIDC token.
# - job -> broker: requests from Cloud Run or Cloud Functions count as internal only when they leave through a
#   VPC network of the project, with Private Google Access on its subnet. The job therefore sends all its egress
#   through a Serverless VPC Access connector (the only VPC egress google_cloudfunctions2_function offers) on a
#   subnet with Private Google Access, which this file creates unless delegated_job.vpc_connector names one.

locals {
  # Only with a token endpoint to call (variables.tf refuses a job without one; this keeps every index below safe).
  job                = var.delegated_job == null || local.token_function == null ? {} : { job = var.delegated_job }
  job_make_connector = { for k, j in local.job : k => j if j.vpc_connector == null }
}

resource "google_service_account" "job" {
  for_each     = local.job
  project      = var.project_id
  account_id   = "${local.prefix}-job"
  display_name = "Token broker example: delegated job"
  depends_on   = [google_project_service.apis]
}

resource "google_compute_network" "job" {
  for_each                = local.job_make_connector
  project                 = var.project_id
  name                    = "${local.prefix}-job"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "job" {
  for_each                 = local.job_make_connector
  project                  = var.project_id
  region                   = var.region
  name                     = "${local.prefix}-job-connector"
  network                  = google_compute_network.job[each.key].id
  ip_cidr_range            = each.value.connector_cidr_range
  private_ip_google_access = true
}

resource "google_vpc_access_connector" "job" {
  for_each      = local.job_make_connector
  project       = var.project_id
  region        = var.region
  name          = "${substr(local.prefix, 0, 18)}-job"
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
  subnet {
    name = google_compute_subnetwork.job[each.key].name
  }
  depends_on = [google_project_service.apis, google_project_service_identity.agents]
}

resource "google_cloudfunctions2_function" "job" {
  for_each = local.job
  project  = var.project_id
  location = var.region
  name     = "${local.prefix}-delegated-job"
  labels   = local.labels

  build_config {
    runtime           = "nodejs22"
    entry_point       = "delegatedJob"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email         = google_service_account.job[each.key].email
    ingress_settings              = "ALLOW_INTERNAL_ONLY" # Cloud Scheduler in this project counts as internal
    vpc_connector                 = each.value.vpc_connector == null ? google_vpc_access_connector.job[each.key].id : each.value.vpc_connector
    vpc_connector_egress_settings = "ALL_TRAFFIC" # so that its calls to the broker's URL are internal
    max_instance_count            = 1
    available_memory              = "256Mi"
    timeout_seconds               = 120
    environment_variables = {
      NODE_ENV            = "production"
      JOB_BROKER_URL      = local.token_url
      JOB_BROKER_AUDIENCE = local.token_audience
      JOB_SERVICE_ACCOUNT = each.value.service_account
      JOB_SUBJECT         = each.value.subject
      JOB_SCOPES          = join(" ", each.value.scopes)
    }
  }

  depends_on = [
    google_project_service.apis,
    time_sleep.iam_propagation, # after the build grants and the service agents
    google_project_iam_member.build_logs,
    google_project_iam_member.build_staged_source,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
  ]
}

# The job may call the broker's token function...
resource "google_cloud_run_v2_service_iam_member" "job_calls_broker" {
  for_each = local.job
  project  = var.project_id
  location = var.region
  # The token endpoint's function, picked out rather than indexed (local.token_function is null without one).
  name = one([for t, f in google_cloudfunctions2_function.broker : f.service_config[0].service if t == local.token_function])
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.job[each.key].email}"
}

# ...and Cloud Scheduler, acting as the job's account, may call the job.
resource "google_cloud_run_v2_service_iam_member" "scheduler_calls_job" {
  for_each = local.job
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.job[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.job[each.key].email}"
}

resource "google_cloud_scheduler_job" "delegated" {
  for_each  = local.job
  project   = var.project_id
  region    = var.region
  name      = "${local.prefix}-delegated-job"
  schedule  = each.value.schedule
  time_zone = each.value.time_zone

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.job[each.key].url
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")
    oidc_token {
      service_account_email = google_service_account.job[each.key].email
      audience              = google_cloudfunctions2_function.job[each.key].url
    }
  }

  # Scheduler's service agent mints that OIDC token as the job's account.
  depends_on = [google_project_service.apis, time_sleep.iam_propagation]
}
