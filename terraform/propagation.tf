# Service agents and IAM propagation: nothing builds, deploys or schedules as a new account before Google's
# side has caught up.
#
# - Service agents (Google-managed accounts such as service-PROJECT_NUMBER@gcf-admin-robot.iam.gserviceaccount.com)
#   are created lazily, some time after their API is enabled: a first deploy can fail with "service account
#   ... does not exist". google_project_service_identity creates each one the module relies on, now
#   (generateServiceIdentity; a google-beta resource, hence the google-beta provider).
# - IAM is eventually consistent: "changes to allow policies typically propagate in 2 minutes, but could
#   potentially take 7 minutes or longer" (https://cloud.google.com/iam/docs/access-change-propagation).
#   A function build runs as the build account with the roles granted in build.tf, and Cloud Run checks at
#   deploy time that the runtime account may read the secrets a function mounts (main.tf): both are granted
#   in this same apply. time_sleep.iam_propagation waits var.iam_propagation_wait after the last of those
#   grants and agents, and again whenever one of them is replaced (triggers).

locals {
  service_agents = toset(concat(
    [
      "cloudbuild.googleapis.com",     # runs each build as the build account
      "cloudfunctions.googleapis.com", # creates the functions' Cloud Run services and their builds
      "run.googleapis.com",            # pulls the images from our repository; Direct VPC egress of the smoke test
    ],
    length(local.job) == 0 ? [] : ["cloudscheduler.googleapis.com"],    # mints the OIDC token Scheduler sends the job
    length(local.job_make_connector) == 0 ? [] : ["vpcaccess.googleapis.com"], # runs the job's connector
  ))
}

resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = local.service_agents
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.apis]
}

resource "time_sleep" "iam_propagation" {
  create_duration = var.iam_propagation_wait
  triggers = {
    service_agents = join(",", [for a in google_project_service_identity.agents : a.id])
    build_grants = join(",", [
      google_project_iam_member.build_logs.id,
      google_project_iam_member.build_staged_source.id,
      google_artifact_registry_repository_iam_member.build_writer.id,
      google_storage_bucket_iam_member.build_source_reader.id,
    ])
    runtime_secret_grants = join(",", concat(
      [for g in google_secret_manager_secret_iam_member.cache_secrets_access : g.id],
      [for g in google_secret_manager_secret_iam_member.policy_access : g.id],
    ))
  }
}
