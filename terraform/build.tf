# The account Cloud Build runs as when it builds the functions (build_config.service_account).
#
# Since Cloud Build's 2024 change, a new project's default build account is the Compute Engine default
# account, which organisations commonly strip of roles (iam.automaticIamGrantsForDefaultServiceAccounts):
# builds then fail. This account has exactly what a gen2 function build does, and nothing else:
# - roles/logging.logWriter on the project: the build writes its logs (logs are project resources);
# - roles/artifactregistry.writer on one repository of ours: it pushes the function image (and its build cache)
#   there, through build_config.docker_repository, instead of the shared gcf-artifacts repository;
# - roles/storage.objectViewer on our source bucket, and on the gcf-v2-sources-* buckets alone (an IAM
#   condition), where Cloud Functions stages the source it hands to the build.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${local.prefix}-build"
  display_name = "Token broker: builds its functions"
  depends_on   = [google_project_service.apis]
}

# Every deploy pushes an image per function (and a build cache image): without a cleanup policy they pile up
# and are billed as storage. Keep the var.images_to_keep newest versions of each image (the live one among
# them), and delete other versions once they are older than 30 days. Cloud Run keeps its own copy of the image
# of every serving revision ("Cloud Run keeps this copy while a serving revision uses it"), so a deletion never
# stops what serves; only a rollback to a revision whose image is gone would fail.
resource "google_artifact_registry_repository" "functions" {
  project                = var.project_id
  location               = var.region
  repository_id          = "${local.prefix}-functions"
  format                 = "DOCKER"
  description            = "Images of the token broker's functions."
  labels                 = local.labels
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.images_to_keep
    }
  }
  cleanup_policies {
    id     = "delete-older-than-30-days"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "build_staged_source" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"
  condition {
    title      = "gcf-v2-sources buckets only"
    expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}
