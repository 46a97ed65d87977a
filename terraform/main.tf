locals {
  prefix = var.name_prefix
  labels = merge(var.labels, { app = "token-broker", deployment = local.prefix, managed-by = "terraform" })
  # The package relative to this module's directory by default, so that the module plans the same from any
  # working directory (terraform -chdir, or as a child module): a relative var.source_dir is relative to the
  # working directory, as every path Terraform reads.
  source_dir = coalesce(var.source_dir, "${path.module}/../.tmp/package")
  # Deterministic URL of each function: it is also the audience callers' ID tokens must carry
  # (gen2 functions accept it, and Cloud Run IAM checks it), known before the function exists.
  function_url = { for t in var.targets : t => "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.prefix}-${t}" }

  keyed_accounts   = { for sa in var.service_accounts : sa.secret_id => sa if !sa.keyless }
  keyless_accounts = { for sa in var.service_accounts : sa.email => sa if sa.keyless }

  # IAM Credentials' rule for an impersonation chain: whoever calls may create tokens for the first account of
  # the chain, each delegate for the next, and the last delegate for the account. Without delegates that is one
  # grant: the broker's runtime account on the keyless account, and on nothing else.
  keyless_grants = { for g in flatten([
    for sa in local.keyless_accounts : [
      for i, account in concat(sa.delegates, [sa.email]) : {
        key     = "${sa.email}/${account}"
        account = account
        caller  = i == 0 ? "" : concat(sa.delegates, [sa.email])[i - 1]
      }
    ]
  ]) : g.key => g }

  # The policy's serviceAccounts, built from var.service_accounts (an object for-expression drops the null
  # attributes, and keeps `keyless` a JSON boolean).
  # Unset optional attributes are dropped rather than written as null (the broker takes null as absent too).
  policy = { for k, v in merge(var.policy, {
    grants  = concat(var.policy.grants, local.smoke_grants) # the smoke test's one grant, with var.smoke_test
    issuers = var.policy.issuers == null ? null : [for i in var.policy.issuers : { for k, v in i : k => v if v != null }]
    serviceAccounts = [
      for sa in var.service_accounts : { for k, v in {
        email     = sa.email
        key       = sa.keyless ? null : "projects/${var.project_id}/secrets/${sa.secret_id}/versions/latest"
        keyless   = sa.keyless ? true : null
        delegates = length(sa.delegates) > 0 ? sa.delegates : null
        tenant    = sa.tenant
        tenants   = sa.tenants
      } : k => v if v != null }
    ]
  }) : k => v if v != null }

  shared_cache = var.enable_shared_cache
  upstash_url  = var.create_upstash_database ? "https://${one(upstash_redis_database.cache[*].endpoint)}" : var.upstash_redis_rest_url
  # Ephemeral (it may come from var.upstash_redis_rest_token): used only by a write-only argument.
  upstash_token = var.create_upstash_database ? one(upstash_redis_database.cache[*].rest_token) : var.upstash_redis_rest_token

  # Who may invoke each function through Cloud Run's IAM check. sts is apart: see var.sts_invoker.
  invoker_targets   = [for t in var.targets : t if contains(["token", "jwt", "idtoken", "broker"], t)]
  admin_targets     = [for t in var.targets : t if t == "admin" || t == "broker"]
  sts_targets       = var.sts_invoker == "callers" ? [for t in var.targets : t if t == "sts"] : []
  # The token endpoint for the callers this module makes (the example job, the smoke test): `/token` on the
  # broker function, or the token function; null when neither is deployed. Terraform evaluates every local on
  # every plan, whether anything reads it or not, so an optional target is looked up, never indexed:
  # indexing function_url with "token" failed every plan that deploys no token function ("Invalid index").
  token_function = contains(var.targets, "broker") ? "broker" : contains(var.targets, "token") ? "token" : null
  token_audience = lookup(local.function_url, coalesce(local.token_function, "none"), null)
  token_url      = local.token_function == "broker" ? "${lookup(local.function_url, "broker", "")}/token" : lookup(local.function_url, "token", null)
  invoker_bindings = merge(
    { for pair in setproduct(concat(local.invoker_targets, local.sts_targets), var.callers) : "${pair[0]}/${pair[1]}" => { target = pair[0], member = "serviceAccount:${pair[1]}" } },
    { for pair in setproduct(local.admin_targets, var.admins) : "${pair[0]}/${pair[1]}" => { target = pair[0], member = "serviceAccount:${pair[1]}" } },
    var.sts_invoker == "allUsers" && contains(var.targets, "sts") ? { "sts/allUsers" = { target = "sts", member = "allUsers" } } : {},
    { for k in keys(local.smoke) : "${local.token_function}/smoke" => { target = local.token_function, member = "serviceAccount:${google_service_account.smoke[k].email}" } },
    # Callers with another identity provider's token cannot pass Cloud Run's check: the broker verifies them.
    { for t in local.external_targets : "${t}/allUsers" => { target = t, member = "allUsers" } },
  )
  external_targets = [for t in var.targets : t if contains(var.external_caller_targets, t)]
  ingress_of       = { for t in var.targets : t => contains(local.external_targets, t) ? var.external_caller_ingress : t == "sts" ? var.sts_ingress : var.ingress }
}

resource "google_project_service" "apis" {
  for_each = toset(concat(
    [
      "cloudresourcemanager.googleapis.com", # project IAM bindings (google_project_iam_member)
      "iam.googleapis.com",                  # service accounts and their IAM policies
      "iamcredentials.googleapis.com",       # keyless minting: generateAccessToken, signJwt, generateIdToken
      "cloudfunctions.googleapis.com",
      "run.googleapis.com",
      "cloudbuild.googleapis.com",
      "artifactregistry.googleapis.com",
      "storage.googleapis.com",
      "secretmanager.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
    ],
    var.delegated_job == null ? [] : [
      "cloudscheduler.googleapis.com",
      "compute.googleapis.com",   # the job's network and subnet
      "vpcaccess.googleapis.com", # the job's Serverless VPC Access connector
    ],
    length(local.smoke) == 0 ? [] : ["compute.googleapis.com"], # the smoke test's network and subnet
  ))
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity the broker runs as. It reads its key secrets and creates tokens for its keyless accounts, and
# nothing else. It needs no logging role: Cloud Run collects stdout and stderr itself.
resource "google_service_account" "broker" {
  project      = var.project_id
  account_id   = "${local.prefix}-runtime"
  display_name = "Token broker runtime"
  depends_on   = [google_project_service.apis]
}

# Keyless accounts: roles/iam.serviceAccountTokenCreator on each account (or along its delegate chain), never
# project-wide. No secret exists for them.
resource "google_service_account_iam_member" "keyless_token_creator" {
  for_each           = local.keyless_grants
  service_account_id = "projects/${regex("@([a-z0-9-]+)\\.iam\\.gserviceaccount\\.com$", each.value.account)[0]}/serviceAccounts/${each.value.account}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value.caller == "" ? "serviceAccount:${google_service_account.broker.email}" : "serviceAccount:${each.value.caller}"
  depends_on         = [google_project_service.apis]
}

# One secret per keyed service account. Versions are added out of band (gcloud secrets versions add), unless
# manage_key_versions_in_terraform is set.
resource "google_secret_manager_secret" "key" {
  for_each            = local.keyed_accounts
  project             = var.project_id
  secret_id           = each.key
  labels              = local.labels
  version_destroy_ttl = var.secret_version_destroy_ttl
  # Automatic (Google picks the locations; needs `global` allowed), or user-managed in var.secret_locations.
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

resource "google_secret_manager_secret_iam_member" "key_access" {
  for_each  = google_secret_manager_secret.key
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.broker.email}"
}

# Opt-in: the key files, through a write-only argument: sent to Secret Manager, never saved in plan or state.
resource "google_secret_manager_secret_version" "key" {
  for_each               = var.manage_key_versions_in_terraform ? nonsensitive(toset(keys(var.service_account_key_files))) : toset([])
  secret                 = google_secret_manager_secret.key[each.value].id
  secret_data_wo         = file(var.service_account_key_files[each.value])
  secret_data_wo_version = var.key_files_version
  deletion_policy        = "DELETE" # with the secret's version_destroy_ttl: disabled at once, destroyed a day later
  lifecycle {
    create_before_destroy = true # the new key is `latest` before the old version goes
  }
}

# BROKER_CACHE_KEY: 32 random bytes, made by an ephemeral resource and written through a write-only argument,
# so it is in neither plan nor state. It is written when cache_key_version changes (and on create).
ephemeral "random_bytes" "cache_key" {
  length = 32
}

resource "google_secret_manager_secret" "cache_key" {
  project             = var.project_id
  secret_id           = "${local.prefix}-cache-key"
  labels              = local.labels
  version_destroy_ttl = var.secret_version_destroy_ttl
  # Automatic (Google picks the locations; needs `global` allowed), or user-managed in var.secret_locations.
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

# Rotation (a bump of cache_key_version or upstash_token_version replaces the version): create_before_destroy
# makes Terraform create the new version, then update the functions to a revision pinned to it (Cloud Run
# moves all traffic to that revision before the update returns), and only then destroy the old version. With
# the secret's version_destroy_ttl that destroy disables the old version at once and destroys it a day later:
# the revisions still serving when it is disabled have already read their value (secret environment variables
# are resolved when an instance starts), and a rollback to an older revision within the day is one
# `gcloud secrets versions enable` away.
resource "google_secret_manager_secret_version" "cache_key" {
  secret                 = google_secret_manager_secret.cache_key.id
  secret_data_wo         = ephemeral.random_bytes.cache_key.base64
  secret_data_wo_version = var.cache_key_version
  deletion_policy        = "DELETE"
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_secret_manager_secret" "upstash_token" {
  count               = local.shared_cache ? 1 : 0
  project             = var.project_id
  secret_id           = "${local.prefix}-upstash-token"
  labels              = local.labels
  version_destroy_ttl = var.secret_version_destroy_ttl
  # Automatic (Google picks the locations; needs `global` allowed), or user-managed in var.secret_locations.
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

resource "google_secret_manager_secret_version" "upstash_token" {
  count                  = local.shared_cache ? 1 : 0
  secret                 = google_secret_manager_secret.upstash_token[0].id
  secret_data_wo         = local.upstash_token
  secret_data_wo_version = var.upstash_token_version
  deletion_policy        = "DELETE"
  lifecycle {
    create_before_destroy = true
  }
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
  labels                      = local.labels
  depends_on                  = [google_project_service.apis]
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = local.source_dir
  output_path = "${path.module}/.terraform/broker-source.zip"
  lifecycle {
    precondition {
      condition     = fileexists("${local.source_dir}/dist/bundle/index.js")
      error_message = "No packaged broker at ${local.source_dir} (dist/bundle/index.js is missing): run `npm ci && npm run package` in the repository first, or set source_dir to where the package is."
    }
  }
}

resource "google_storage_bucket_object" "source" {
  name         = "broker-${data.archive_file.source.output_md5}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

resource "google_cloudfunctions2_function" "broker" {
  for_each = toset(var.targets)
  project  = var.project_id
  location = var.region
  name     = "${local.prefix}-${each.value}"
  labels   = local.labels

  build_config {
    runtime           = "nodejs22"
    entry_point       = each.value
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
    service_account_email            = google_service_account.broker.email
    ingress_settings                 = local.ingress_of[each.value]
    max_instance_count               = var.max_instances
    min_instance_count               = var.min_instances
    max_instance_request_concurrency = 80
    available_cpu                    = "1"
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_env[each.value] # policy.tf, with its size check below
    # Pinned to the version this apply wrote, not `latest`: every instance of every function then reads
    # the same key, and a new key reaches them only through a new revision.
    secret_environment_variables {
      key        = "BROKER_CACHE_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.cache_key.secret_id
      version    = google_secret_manager_secret_version.cache_key.version
    }
    dynamic "secret_environment_variables" {
      for_each = google_secret_manager_secret_version.upstash_token
      content {
        key        = "UPSTASH_REDIS_REST_TOKEN"
        project_id = var.project_id
        secret     = google_secret_manager_secret.upstash_token[0].secret_id
        version    = secret_environment_variables.value.version
      }
    }
    # policy_delivery = "secret": the policy as a file, at `latest` (policy.tf).
    dynamic "secret_volumes" {
      for_each = google_secret_manager_secret.policy
      content {
        mount_path = local.policy_mount_path
        project_id = var.project_id
        secret     = secret_volumes.value.secret_id
        versions {
          version = "latest"
          path    = "policy.json"
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.env_bytes[each.value] <= local.env_limit_bytes
      error_message = "The ${each.value} function's environment variables come to ${local.env_bytes[each.value]} bytes of names and values (the policy in BROKER_POLICY is ${local.policy_bytes} of them), over the 32 KiB (${local.env_limit_bytes} bytes) Cloud Run allows a function. Set policy_delivery = \"secret\": the policy then goes to Secret Manager (up to 64 KiB) and is mounted as a file."
    }
  }

  depends_on = [
    google_project_service.apis,
    time_sleep.iam_propagation, # after the build grants, the secret grants and the service agents
    google_secret_manager_secret_iam_member.key_access,
    google_secret_manager_secret_iam_member.cache_secrets_access,
    google_secret_manager_secret_version.cache_key,
    google_secret_manager_secret_version.upstash_token,
    google_secret_manager_secret_version.policy,
    google_secret_manager_secret_iam_member.policy_access,
    google_service_account_iam_member.keyless_token_creator,
    google_project_iam_member.build_logs,
    google_project_iam_member.build_staged_source,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
  ]
}

# Invoker IAM on the Cloud Run service under each gen2 function: the function-level IAM resource
# fails for roles/run.invoker. Callers get the token functions; admins get the admin one; sts as var.sts_invoker says.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invoker_bindings
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.broker[each.value.target].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Two lists of callers, two gates (README, step 2): var.callers pass Cloud Run's invoker check, the policy's
# grants say what each caller may get. A caller granted something but missing from var.callers is refused by
# Cloud Run before the broker runs, unless it uses a target open to everyone. Exact emails only: a pattern
# such as *@acme.com cannot be checked here.
locals {
  module_callers = concat(
    [for k in keys(local.job) : "${local.prefix}-job@${var.project_id}.iam.gserviceaccount.com"],
    length(local.smoke) == 0 ? [] : [local.smoke_account],
  )
  uninvited_callers = sort(distinct([
    for c in flatten([for g in var.policy.grants : try(g.callers, [])]) : lower(c)
    if !strcontains(c, "*") && !contains([for x in concat(var.callers, local.module_callers) : lower(x)], lower(c))
  ]))
}

check "granted_callers_may_invoke" {
  assert {
    condition     = length(local.uninvited_callers) == 0 || length(var.external_caller_targets) > 0 || var.sts_invoker == "allUsers"
    error_message = "The policy grants tokens to callers that are not in callers, so Cloud Run refuses them before the broker runs: ${join(", ", local.uninvited_callers)}. Add them to callers (roles/run.invoker), unless they only use targets open to all (sts_invoker = \"allUsers\", external_caller_targets)."
  }
}
