# Optional (var.smoke_test): a caller inside the VPC that proves a deployment end to end, from a laptop
# (README, step 6). The broker's functions are internal-only, so a laptop cannot call them; this Cloud Run job
# can. It runs only when executed (`gcloud run jobs execute`, so it costs nothing idle), as an account of its
# own, and asks the token endpoint for a token for one served account; smoke-test.mjs then prints what
# Google's tokeninfo endpoint says about that token (account, scopes, expiry) to the job's log, never the token.
#
# - Network: Direct VPC egress (no connector, no idle cost) with ALL_TRAFFIC, on a subnet with Private Google
#   Access, so that its calls to the function URL count as internal (README, The scheduled job).
# - Access: roles/run.invoker on the token function (main.tf, local.invoker_bindings), and one grant appended
#   to the policy: this account may get var.smoke_test.scopes for var.smoke_test.service_account, nothing more.
#   Whoever may execute the job (run.jobs.run) may have that token minted, and can read its tokeninfo only.

locals {
  smoke              = var.smoke_test == null || local.token_function == null ? {} : { smoke = var.smoke_test }
  smoke_make_network = { for k, s in local.smoke : k => s if s.subnetwork == null }
  smoke_account      = "${local.prefix}-smoke@${var.project_id}.iam.gserviceaccount.com"
  smoke_grants = [for s in values(local.smoke) : {
    callers         = [local.smoke_account]
    serviceAccounts = [s.service_account]
    scopes          = s.scopes
  }]
}

resource "google_service_account" "smoke" {
  for_each     = local.smoke
  project      = var.project_id
  account_id   = "${local.prefix}-smoke"
  display_name = "Token broker: smoke test caller"
  depends_on   = [google_project_service.apis]
}

resource "google_compute_network" "smoke" {
  for_each                = local.smoke_make_network
  project                 = var.project_id
  name                    = "${local.prefix}-smoke"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "smoke" {
  for_each                 = local.smoke_make_network
  project                  = var.project_id
  region                   = var.region
  name                     = "${local.prefix}-smoke"
  network                  = google_compute_network.smoke[each.key].id
  ip_cidr_range            = each.value.subnet_cidr_range # Direct VPC egress needs a /26 or larger
  private_ip_google_access = true
}

resource "google_cloud_run_v2_job" "smoke" {
  for_each            = local.smoke
  project             = var.project_id
  location            = var.region
  name                = "${local.prefix}-smoke"
  labels              = local.labels
  deletion_protection = false # the provider's default (true) would make terraform destroy fail

  template {
    task_count = 1
    template {
      service_account = google_service_account.smoke[each.key].email
      timeout         = "120s"
      max_retries     = 0
      containers {
        image   = each.value.image
        command = ["node", "--input-type=module", "-e"]
        args    = [file("${path.module}/smoke-test.mjs")]
        env {
          name  = "BROKER_URL"
          value = local.token_url
        }
        env {
          name  = "BROKER_AUDIENCE"
          value = local.token_audience
        }
        env {
          name  = "SMOKE_REQUEST"
          value = jsonencode({ serviceAccount = each.value.service_account, scopes = each.value.scopes })
        }
      }
      vpc_access {
        egress = "ALL_TRAFFIC"
        network_interfaces {
          network    = each.value.subnetwork == null ? google_compute_network.smoke[each.key].id : null
          subnetwork = each.value.subnetwork == null ? google_compute_subnetwork.smoke[each.key].id : each.value.subnetwork
        }
      }
    }
  }

  depends_on = [google_project_service.apis, time_sleep.iam_propagation]
}
