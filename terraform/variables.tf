variable "project_id" {
  type        = string
  description = "The Google Cloud project the broker runs in."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, e.g. europe-west1."
  default     = "europe-west1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "token-broker"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix: lower-case letters, digits and dashes, at most 21 characters."
  }
}

variable "source_dir" {
  type        = string
  description = "The packaged broker (`npm run package` writes it to .tmp/package)."
  default     = "../.tmp/package"
}

variable "targets" {
  type        = list(string)
  description = "Function targets to deploy, one Cloud Function each: token, jwt, idtoken, admin; or just broker (all paths in one function)."
  default     = ["token", "jwt", "idtoken", "admin"]
  validation {
    condition     = length(var.targets) > 0 && alltrue([for t in var.targets : contains(["token", "jwt", "idtoken", "admin", "broker"], t)])
    error_message = "targets must be a non-empty subset of token, jwt, idtoken, admin, broker."
  }
}

variable "ingress" {
  type        = string
  description = "Who can reach the functions on the network. ALLOW_INTERNAL_ONLY needs callers to send their egress through a VPC in this project."
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "max_instances" {
  type        = number
  description = "Most instances of each function."
  default     = 20
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be from 1 to 1000."
  }
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (0 allows cold starts)."
  default     = 0
  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100
    error_message = "min_instances must be from 0 to 100."
  }
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout of each function; the broker's own deadline to Google is 10 s."
  default     = 30
  validation {
    condition     = var.timeout_seconds >= 15 && var.timeout_seconds <= 300
    error_message = "timeout_seconds must be from 15 to 300."
  }
}

variable "memory" {
  type        = string
  description = "Memory of each function instance."
  default     = "256Mi"
}

variable "refresh_skew_seconds" {
  type        = number
  description = "BROKER_REFRESH_SKEW_SECONDS: a cached token with less life left is re-minted."
  default     = 300
  validation {
    condition     = var.refresh_skew_seconds >= 0 && var.refresh_skew_seconds <= 3300
    error_message = "refresh_skew_seconds must be from 0 to 3300."
  }
}

variable "service_accounts" {
  type = list(object({
    email     = string
    secret_id = string
    tenant    = optional(string)
  }))
  description = "Service accounts whose keys the broker holds: each gets a Secret Manager secret named secret_id (versions are added out of band)."
  validation {
    condition     = length(var.service_accounts) > 0 && alltrue([for sa in var.service_accounts : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", sa.email))])
    error_message = "service_accounts needs at least one entry, each with a valid email."
  }
  validation {
    condition     = alltrue([for sa in var.service_accounts : can(regex("^[A-Za-z0-9_-]{1,255}$", sa.secret_id))])
    error_message = "secret_id: letters, digits, _ and -."
  }
}

variable "policy" {
  type = object({
    grants     = list(any)
    admins     = optional(list(string), [])
    rateLimit  = optional(object({ requests = number, windowSeconds = number }))
    rateLimits = optional(map(object({ requests = number, windowSeconds = number })))
  })
  description = "The broker policy without serviceAccounts (built from var.service_accounts); see the README's Policy section."
}

variable "callers" {
  type        = list(string)
  description = "Service-account emails allowed to invoke the token, jwt and idtoken functions (roles/run.invoker). The policy still decides what each may get."
  default     = []
  validation {
    condition     = alltrue([for c in var.callers : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", c))])
    error_message = "callers must be emails."
  }
}

variable "admins" {
  type        = list(string)
  description = "Service-account emails allowed to invoke the admin function."
  default     = []
  validation {
    condition     = alltrue([for c in var.admins : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", c))])
    error_message = "admins must be emails."
  }
}

variable "enable_shared_cache" {
  type        = bool
  description = "Use an Upstash Redis database as the shared cache (L2). Without it each instance caches alone."
  default     = true
}

variable "create_upstash_database" {
  type        = bool
  description = "Create the Upstash database with the upstash provider; otherwise pass an existing one's REST URL and token."
  default     = false
}

variable "upstash_email" {
  type        = string
  description = "Upstash account email, only with create_upstash_database."
  default     = ""
}

variable "upstash_api_key" {
  type        = string
  description = "Upstash management API key, only with create_upstash_database."
  sensitive   = true
  default     = null
}

variable "upstash_region" {
  type        = string
  description = "Upstash primary region for a created database, close to var.region (e.g. eu-west-1)."
  default     = "eu-west-1"
}

variable "upstash_redis_rest_url" {
  type        = string
  description = "REST URL of an existing Upstash database (https://...upstash.io)."
  default     = ""
  validation {
    condition     = var.upstash_redis_rest_url == "" || startswith(var.upstash_redis_rest_url, "https://")
    error_message = "upstash_redis_rest_url must be https."
  }
}

variable "upstash_redis_rest_token" {
  type        = string
  description = "REST token of an existing Upstash database. Stored in Secret Manager (and so in state)."
  sensitive   = true
  default     = null
}

variable "manage_key_versions_in_terraform" {
  type        = bool
  description = "Opt-in: add service-account key versions from var.service_account_key_files. The keys then live in Terraform state; leave false and add versions with gcloud."
  default     = false
}

variable "service_account_key_files" {
  type        = map(string)
  description = "secret_id => path of a key file, used only with manage_key_versions_in_terraform."
  sensitive   = true
  default     = null
}

variable "delegated_job" {
  type = object({
    schedule        = string
    time_zone       = optional(string, "Etc/UTC")
    service_account = string
    subject         = string
    scopes          = list(string)
  })
  description = "An optional scheduled job that asks the broker for a domain-wide-delegated token and calls a Google API with it."
  default     = null
}
