locals {
  prefix = var.name_prefix
  # Deterministic URL of each function: it is also the audience callers' ID tokens must carry
  # (gen2 functions accept it, and Cloud Run IAM checks it), known before the function exists.
  function_url = { for t in var.targets : t => "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.prefix}-${t}" }

  secret_ids = { for sa in var.service_accounts : sa.secret_id => sa }
  policy = merge(var.policy, {
    serviceAccounts = [
      for sa in var.service_accounts : merge(
        { email = sa.email, key = "projects/${var.project_id}/secrets/${sa.secret_id}/versions/latest" },
        sa.tenant == null ? {} : { tenant = sa.tenant },
      )
    ]
  })

  shared_cache      = var.enable_shared_cache
  upstash_url       = var.create_upstash_database ? "https://${one(upstash_redis_database.cache[*].endpoint)}" : var.upstash_redis_rest_url
  upstash_token     = var.create_upstash_database ? one(upstash_redis_database.cache[*].rest_token) : var.upstash_redis_rest_token
  invoker_targets   = [for t in var.targets : t if t != "admin"]
  admin_targets     = [for t in var.targets : t if t == "admin" || t == "broker"]
  token_function    = contains(var.targets, "broker") ? "broker" : "token"
  token_url_for_job = contains(var.targets, "broker") ? "${local.function_url["broker"]}/token" : local.function_url["token"]
  invoker_bindings = merge(
    { for pair in setproduct(local.invoker_targets, var.callers) : "${pair[0]}/${pair[1]}" => { target = pair[0], member = pair[1] } },
    { for pair in setproduct(local.admin_targets, var.admins) : "${pair[0]}/${pair[1]}" => { target = pair[0], member = pair[1] } },
  )
}

resource "google_project_service" "apis" {
  for_each = toset([
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iamcredentials.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity the broker runs as: it reads its key secrets and writes logs, nothing else.
resource "google_service_account" "broker" {
  project      = var.project_id
  account_id   = "${local.prefix}-runtime"
  display_name = "Token broker runtime"
}

resource "google_project_iam_member" "broker_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.broker.email}"
}

# One secret per service-account key. Versions are added out of band (gcloud secrets versions add),
# so key material never passes through Terraform state, unless manage_key_versions_in_terraform is set.
resource "google_secret_manager_secret" "key" {
  for_each  = local.secret_ids
  project   = var.project_id
  secret_id = each.key
  labels    = { "managed-by" = "token-broker" }
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "key_access" {
  for_each  = google_secret_manager_secret.key
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.broker.email}"
}

resource "google_secret_manager_secret_version" "key" {
  for_each    = var.manage_key_versions_in_terraform ? nonsensitive(toset(keys(var.service_account_key_files))) : toset([])
  secret      = google_secret_manager_secret.key[each.value].id
  secret_data = file(var.service_account_key_files[each.value])
}

# BROKER_CACHE_KEY: 32 random bytes. Generated here, so it is in state: treat the state as secret,
# or create the version out of band and drop random_bytes.
resource "random_bytes" "cache_key" {
  length = 32
}

resource "google_secret_manager_secret" "cache_key" {
  project   = var.project_id
  secret_id = "${local.prefix}-cache-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "cache_key" {
  secret      = google_secret_manager_secret.cache_key.id
  secret_data = random_bytes.cache_key.base64
}

resource "google_secret_manager_secret" "upstash_token" {
  count     = local.shared_cache ? 1 : 0
  project   = var.project_id
  secret_id = "${local.prefix}-upstash-token"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "upstash_token" {
  count       = local.shared_cache ? 1 : 0
  secret      = google_secret_manager_secret.upstash_token[0].id
  secret_data = local.upstash_token
}

resource "google_secret_manager_secret_iam_member" "cache_secrets_access" {
  for_each = merge(
    { cache_key = google_secret_manager_secret.cache_key.secret_id },
    local.shared_cache ? { upstash_token = google_secret_manager_secret.upstash_token[0].secret_id } : {},
  )
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.broker.email}"
}

# The built package (`npm run package`), uploaded for Cloud Build.
resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${local.prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = var.source_dir
  output_path = "${path.module}/.terraform/broker-source.zip"
}

resource "google_storage_bucket_object" "source" {
  name   = "broker-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

resource "google_cloudfunctions2_function" "broker" {
  for_each = toset(var.targets)
  project  = var.project_id
  location = var.region
  name     = "${local.prefix}-${each.value}"

  build_config {
    runtime     = "nodejs22"
    entry_point = each.value
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.broker.email
    ingress_settings                 = var.ingress
    max_instance_count               = var.max_instances
    min_instance_count               = var.min_instances
    max_instance_request_concurrency = 80
    available_cpu                    = "1"
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    all_traffic_on_latest_revision   = true
    environment_variables = merge(
      {
        NODE_ENV                    = "production"
        GOOGLE_CLOUD_PROJECT        = var.project_id
        BROKER_POLICY               = jsonencode(local.policy)
        BROKER_AUDIENCE             = local.function_url[each.value]
        BROKER_REFRESH_SKEW_SECONDS = tostring(var.refresh_skew_seconds)
      },
      local.shared_cache ? { UPSTASH_REDIS_REST_URL = local.upstash_url } : {},
    )
    secret_environment_variables {
      key        = "BROKER_CACHE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.cache_key.secret_id
      version    = "latest"
    }
    dynamic "secret_environment_variables" {
      for_each = local.shared_cache ? [google_secret_manager_secret.upstash_token[0].secret_id] : []
      content {
        key        = "UPSTASH_REDIS_REST_TOKEN"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.key_access,
    google_secret_manager_secret_iam_member.cache_secrets_access,
    google_secret_manager_secret_version.cache_key,
  ]
}

# Invoker IAM on the Cloud Run service under each gen2 function: the function-level IAM resource
# fails for roles/run.invoker. Callers get the token functions; admins get the admin one.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invoker_bindings
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.broker[each.value.target].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${each.value.member}"
}
