terraform {
  # 1.11: write-only arguments (secret_data_wo), so that the cache key, the Upstash token and opt-in key files
  # go to Secret Manager without being saved in plan or state; 1.10 brought ephemeral resources and variables,
  # 1.9 validations that read other variables (variables.tf).
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # secret_data_wo / secret_data_wo_version exist since 6.23; the module is checked against 6.50's schema
      # (test/unit/terraform-schema.test.ts), so 6.50 is the floor, and 6.50.0 is the last 6.x release: the
      # constraint allows exactly what is checked. 7.x is not allowed until its schema can be checked too:
      # no prebuilt 7.x schema exists (README, Upgrade).
      version = ">= 6.50, < 7.0"
    }
    google-beta = {
      source = "hashicorp/google-beta"
      # For google_project_service_identity alone (a beta-only resource): the same versions as google.
      version = ">= 6.50, < 7.0"
    }
    time = {
      source = "hashicorp/time"
      # time_sleep: the waits for IAM and service-agent propagation and for new log-based metrics. Checked
      # against 0.13.1's schema; 0.14.0 only adds a build target, and is allowed once its schema is checked.
      version = ">= 0.13.1, < 0.14.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.9: the ephemeral random_bytes resource, which makes the cache key without putting it in state.
      version = ">= 3.9, < 4.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    upstash = {
      source  = "upstash/upstash"
      version = ">= 2.0, < 3.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

# The upstash provider declares email and api_key required, and Terraform configures every provider that the
# configuration uses, even when its only resource has count = 0: null values would fail every plan. Without a
# database to create, placeholders satisfy the schema; the provider's configure step only builds an API client
# (no call), and with no upstash resource planned the client is never used.
provider "upstash" {
  email   = var.create_upstash_database ? var.upstash_email : "unused@example.invalid"
  api_key = var.create_upstash_database ? var.upstash_api_key : "unused"
}
