terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    upstash = {
      source  = "upstash/upstash"
      version = ">= 1.5, < 2.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# Only used when create_upstash_database is true; with empty credentials it is never called.
provider "upstash" {
  email   = var.upstash_email
  api_key = var.upstash_api_key
}
