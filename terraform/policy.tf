# How the functions get the policy (var.policy_delivery), and the size limits on each way.
#
# - "env": the JSON in BROKER_POLICY. Cloud Run allows a function 32 KiB of environment variables, counted as
#   the bytes of every name and value together; the policy shares them with the other variables.
# - "secret": the JSON in a Secret Manager secret (a version holds at most 64 KiB), mounted into every function
#   as a file (service_config.secret_volumes) at version `latest`, and named by BROKER_POLICY_FILE. Reading a
#   secret volume fetches the value from Secret Manager on every read, at `latest`, so a new version reaches
#   running functions when the broker next reads the file, without a deploy.
#
# The policy is configuration, not key material (it names accounts and callers; keys and tokens never appear in
# it), and var.policy is in plan and state anyway: the version holds it in a plain secret_data, in state, so
# that Terraform sees every change and writes a new version for it.

locals {
  policy_json = jsonencode(local.policy)
  # Bytes, not characters (Terraform's length counts characters): base64 packs 3 bytes into 4 characters,
  # less one byte for each "=" of padding.
  policy_bytes = length(base64encode(local.policy_json)) / 4 * 3 - length(regexall("=", base64encode(local.policy_json)))

  policy_in_secret  = var.policy_delivery == "secret"
  policy_mount_path = "/etc/secrets/token-broker" # Google's recommended /etc/secrets; the directory holds this secret alone
  policy_file       = "${local.policy_mount_path}/policy.json"
  policy_env        = local.policy_in_secret ? { BROKER_POLICY_FILE = local.policy_file } : { BROKER_POLICY = local.policy_json }

  # Each function's plain environment variables.
  function_env = { for t in var.targets : t => merge(
    {
      NODE_ENV                    = "production"
      GOOGLE_CLOUD_PROJECT        = var.project_id
      BROKER_AUDIENCE             = local.function_url[t]
      BROKER_REFRESH_SKEW_SECONDS = tostring(var.refresh_skew_seconds)
    },
    local.policy_env,
    local.shared_cache ? { UPSTASH_REDIS_REST_URL = local.upstash_url } : {},
  ) }

  env_limit_bytes            = 32768 # Cloud Run: 32 KiB of names and values per function
  secret_payload_limit_bytes = 65536 # Secret Manager: 64 KiB per secret version
  # What each function's environment comes to: every plain variable's name and value, and the names of the
  # secret variables (BROKER_CACHE_KEY, UPSTASH_REDIS_REST_TOKEN), whose values Cloud Run fetches at start. A
  # database created in this apply has a URL unknown until apply: its name and 128 bytes are counted for it
  # (an Upstash REST URL is https:// and a host name of about 40 characters), so that the check runs at plan.
  env_bytes = { for t, env in local.function_env : t => sum(concat(
    [for k, v in env : length(base64encode("${k}${v}")) / 4 * 3 - length(regexall("=", base64encode("${k}${v}"))) if !(k == "UPSTASH_REDIS_REST_URL" && var.create_upstash_database)],
    [length("BROKER_CACHE_KEY")],
    local.shared_cache ? [length("UPSTASH_REDIS_REST_TOKEN")] : [],
    local.shared_cache && var.create_upstash_database ? [length("UPSTASH_REDIS_REST_URL") + 128] : [],
  )) }
}

resource "google_secret_manager_secret" "policy" {
  count               = local.policy_in_secret ? 1 : 0
  project             = var.project_id
  secret_id           = "${local.prefix}-policy"
  labels              = local.labels
  version_destroy_ttl = var.secret_version_destroy_ttl
  replication {
    dynamic "auto" {
      for_each = var.secret_locations == null ? [1] : []
      content {}
    }
    dynamic "user_managed" {
      for_each = var.secret_locations == null ? [] : [var.secret_locations]
      content {
        dynamic "replicas" {
          for_each = user_managed.value
          content {
            location = replicas.value
          }
        }
      }
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "policy" {
  count           = local.policy_in_secret ? 1 : 0
  secret          = google_secret_manager_secret.policy[0].id
  secret_data     = local.policy_json
  deletion_policy = "DELETE"
  lifecycle {
    # The functions read `latest`: the new version is there before the old one is disabled.
    create_before_destroy = true
    precondition {
      condition     = local.policy_bytes <= local.secret_payload_limit_bytes
      error_message = "The policy is ${local.policy_bytes} bytes of JSON, over Secret Manager's 64 KiB (${local.secret_payload_limit_bytes} bytes) for a secret version. Serve many tenants with one service account (tenants = [\"*\"] on the account, accessBoundary on the grants; README, Large policies), or split the tenants across deployments."
    }
  }
}

# The runtime account reads this secret and no other policy.
resource "google_secret_manager_secret_iam_member" "policy_access" {
  count     = local.policy_in_secret ? 1 : 0
  project   = var.project_id
  secret_id = google_secret_manager_secret.policy[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.broker.email}"
}
